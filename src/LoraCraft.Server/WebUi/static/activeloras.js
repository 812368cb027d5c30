// Active LoRAs: every LoRA tag of the prompt with UNet and text-encoder strength sliders (−2…2)
// that rewrite its tag in the prompt text (the text stays the only truth), and the coverage
// report (modules matched, keys unmatched, made for another family) for the chosen checkpoint.

import * as api from "./api.js";
import * as loras from "./loras.js";
import { formatWeight, loraTags, removeLora, setText, setWeights } from "./prompt.js";
import { $, el, on } from "./ui.js";

const rows = new Map(); // name -> { row, unet, te, coverage }
const coverageCache = new Map(); // "model|lora" -> promise of the report

function slider(label, id, value, onchange) {
  const range = el("input", { type: "range", id, min: "-2", max: "2", step: "0.05", value: String(value), "aria-label": label });
  const number = el("input", { type: "number", min: "-2", max: "2", step: "0.05", value: formatWeight(value), "aria-label": `${label} value` });
  range.addEventListener("input", () => { number.value = formatWeight(range.value); onchange(); });
  number.addEventListener("change", () => { range.value = number.value; onchange(); });
  return { node: el("div", { class: "slider" }, el("label", { for: id }, label), range, number), range, number };
}

function makeRow(name, index) {
  const key = name.replace(/[^\w-]/g, "_") + "-" + index;
  const apply = () => {
    const te = Number(entry.te.number.value), unet = Number(entry.unet.number.value);
    setText($("prompt"), setWeights($("prompt").value, name, te, unet));
  };
  const entry = {
    unet: slider("UNet strength", `lora-unet-${key}`, 1, apply),
    te: slider("Text encoder strength", `lora-te-${key}`, 1, apply),
    coverage: el("div", { class: "coverage", "aria-live": "polite" }),
    badge: el("span", { class: "badge unknown" }),
  };
  entry.row = el("li", { class: "active-lora", dataset: { lora: name } },
    el("div", { class: "name" }, el("span", {}, name), entry.badge,
      el("button", { type: "button", class: "icon", "aria-label": `Remove ${name} from the prompt`,
        onclick: () => setText($("prompt"), removeLora($("prompt").value, name, loras.find(name)?.user?.activation_text ?? "")) }, "✕")),
    entry.unet.node, entry.te.node, entry.coverage);
  return entry;
}

function showCoverage(name, entry) {
  const known = loras.find(name);
  const f = known?.family ?? "unknown";
  entry.badge.className = `badge ${f}`;
  entry.badge.textContent = loras.familyLabel(known?.family);
  if (!known) {
    entry.coverage.className = "coverage bad";
    entry.coverage.textContent = loras.list().length ? "not in the LoRA folder (a PNG's hash may still find it)" : "";
    return;
  }
  const model = $("model").value;
  if (!model) return;
  const key = `${model}|${name}`;
  if (!coverageCache.has(key)) coverageCache.set(key, api.coverage(name, model).catch((e) => ({ error: e.message })));
  entry.coverage.textContent = "checking coverage…";
  coverageCache.get(key).then((c) => {
    if ($("model").value !== model) return;
    if (c.error) { entry.coverage.className = "coverage bad"; entry.coverage.textContent = c.error; return; }
    if (!c.fits) {
      entry.coverage.className = "coverage bad";
      entry.coverage.textContent = `does not fit ${c.model} (${c.family}): ${c.problem}`;
      return;
    }
    entry.coverage.className = c.unmatched ? "coverage bad" : "coverage";
    const parts = [`UNet ${c.unet}`, `text encoder ${c.text_encoder}`];
    if (c.text_encoder_2) parts.push(`text encoder 2 ${c.text_encoder_2}`);
    const text = `coverage on ${c.model}: ${c.matched} modules matched (${parts.join(", ")}), ${c.unmatched} unmatched`;
    if (c.unmatched && c.unmatched_keys?.length) {
      entry.coverage.replaceChildren(el("details", {}, el("summary", {}, text),
        el("code", {}, c.unmatched_keys.join(", "))));
    } else entry.coverage.textContent = text;
  });
}

/** Brings the panel in line with the prompt's tags (rows kept while their LoRA stays). */
export function update() {
  const tags = loraTags($("prompt").value);
  const names = [...new Set(tags.map((t) => t.name))];
  for (const [name, entry] of rows) if (!names.includes(name)) { entry.row.remove(); rows.delete(name); }
  const list = $("active-loras-list");
  names.forEach((name, i) => {
    let entry = rows.get(name);
    if (!entry) {
      entry = makeRow(name, rows.size + i);
      rows.set(name, entry);
      showCoverage(name, entry);
    }
    list.append(entry.row); // keeps the prompt's order
    const tag = tags.find((t) => t.name === name);
    for (const [s, v] of [[entry.unet, tag.unet], [entry.te, tag.te]]) {
      if (document.activeElement !== s.number && formatWeight(s.number.value) !== formatWeight(v)) s.number.value = formatWeight(v);
      if (document.activeElement !== s.range && Number(s.range.value) !== v) s.range.value = String(v);
    }
  });
  $("active-loras-empty").hidden = names.length > 0;
}

function recheck() {
  for (const [name, entry] of rows) showCoverage(name, entry);
}

$("prompt").addEventListener("input", update);
on("model", recheck);
on("loras", () => { coverageCache.clear(); recheck(); });
