// LoRA details: what the file says (ss_* and modelspec.* metadata, the most frequent training
// tags, a click on one adds it to the prompt) and A1111's user metadata (activation text,
// preferred weight, negative text, notes), saved beside the file as NAME.json.

import * as api from "./api.js";
import { append, setText } from "./prompt.js";
import { $, el, emit, notice } from "./ui.js";

const dialog = $("lora-dialog");
let current = null;

const typeNames = { lora: "LoRA", locon: "LoCon", loha: "LoHa", lokr: "LoKr", ia3: "(IA)³", full: "full diff", norm: "norm", glora: "GLoRA", oft: "OFT", boft: "BOFT" };
/** The adapter type as people write it: LoRA, LoCon, LoHa, LoKr, (IA)³, OFT … with "+DoRA" when it carries magnitudes. */
export const typeLabel = (l) => (typeNames[l.algorithm] ?? l.algorithm ?? "?") + (l.dora ? "+DoRA" : "");

const label = (f) => ({ sd1: "SD1", sd2: "SD2", sdxl: "SDXL" })[f] ?? "unknown";

/** Metadata keys in the order a reader wants them: modelspec.*, then ss_*, then the rest. */
function ordered(metadata) {
  const rank = (k) => (k.startsWith("modelspec.") ? 0 : k.startsWith("ss_") ? 1 : 2);
  return Object.entries(metadata ?? {}).sort(([a], [b]) => rank(a) - rank(b) || a.localeCompare(b));
}

function summary(l) {
  const facts = [
    ["File", l.file], ["Family", label(l.family)], ["Type", typeLabel(l)],
    ["Modules by type", l.algorithms && Object.keys(l.algorithms).length > 1 ? Object.entries(l.algorithms).map(([a, n]) => `${n} ${a}`).join(", ") : null],
    ["Rank", l.rank], ["Alpha", l.alpha],
    ["Modules", l.modules ? `UNet ${l.modules.u_net ?? l.modules.unet ?? 0}, text encoder ${(l.modules.text_encoder1 ?? 0) + (l.modules.text_encoder2 ?? 0)}` : null],
    ["Hash", l.hash], ["Trigger words", (l.triggers ?? []).join(", ") || null], ["Title", l.title], ["Base model", l.base_model],
  ].filter(([, v]) => v !== null && v !== undefined && v !== "");
  return [
    l.preview ? el("img", { src: l.preview, alt: `Preview of ${l.name}` }) : el("div", { class: "placeholder", "aria-hidden": "true" }, (l.name[0] ?? "?").toUpperCase()),
    el("table", { class: "kv" }, el("caption", { class: "visually-hidden" }, "Summary"),
      el("tbody", {}, facts.map(([k, v]) => el("tr", {}, el("th", { scope: "row" }, k), el("td", {}, String(v)))))),
  ];
}

export async function openDetails(name) {
  let l;
  try { l = await api.lora(name); } catch (e) { notice(e.message); return; }
  current = l;
  $("lora-dialog-title").textContent = l.name;
  $("lora-summary").replaceChildren(...summary(l));
  const tags = l.tag_frequency ?? [];
  $("lora-tags").replaceChildren(...(tags.length ? tags.map((t) => el("button", {
    type: "button", "aria-label": `Add tag ${t.tag} to the prompt (${t.count} images)`,
    onclick: () => setText($("prompt"), append($("prompt").value, t.tag)),
  }, `${t.tag} (${t.count})`)) : [el("p", { class: "empty" }, "This file has no ss_tag_frequency.")]));
  const u = l.user ?? {};
  $("um-activation").value = u.activation_text ?? "";
  $("um-weight").value = u.preferred_weight ?? "";
  $("um-negative").value = u.negative_text ?? "";
  $("um-notes").value = u.notes ?? "";
  $("um-sd-version").value = u.sd_version ?? "";
  $("um-status").textContent = "";
  const rows = ordered(l.metadata).map(([k, v]) => el("tr", {}, el("th", { scope: "row" }, k),
    el("td", {}, v.length > 400 ? `${v.slice(0, 400)}… (${v.length} characters)` : v)));
  $("lora-meta").querySelector("tbody").replaceChildren(...(rows.length ? rows : [el("tr", {}, el("td", {}, "No metadata in this file."))]));
  if (!dialog.open) dialog.showModal();
}

$("lora-user-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  if (!current) return;
  const weight = $("um-weight").value.trim();
  const fields = {
    activation_text: $("um-activation").value, negative_text: $("um-negative").value, notes: $("um-notes").value,
    sd_version: $("um-sd-version").value, preferred_weight: weight === "" ? null : Number(weight),
  };
  try {
    current = await api.saveUserMetadata(current.name, fields);
    $("um-status").textContent = "Saved.";
    emit("lora-changed", current.name);
  } catch (error) {
    $("um-status").textContent = error.message;
  }
});
