// The LoRA tab (A1111's extra networks): a card per file of the LoRA folder with its preview (or a
// placeholder), name, family badge, rank and trigger words; search by name and tags, folder
// filters, LoRAs of another family than the checkpoint hidden unless "show all". A click puts
// `<lora:NAME:W>` and the activation text into the prompt; a second click takes them out.

import * as api from "./api.js";
import { openDetails, typeLabel } from "./loradetails.js";
import { hasLora, setText, toggleLora } from "./prompt.js";
import { $, currentCheckpoint, el, emit, notice, on } from "./ui.js";

let all = [];
let folder = ""; // "" = every folder

export const list = () => all;
export const find = (name) => all.find((l) => l.name === name) ?? null;

export const familyLabel = (f) => ({ sd1: "SD1", sd2: "SD2", sdxl: "SDXL" })[f] ?? "unknown";

export async function load() {
  try {
    all = await api.loras();
  } catch (e) {
    notice(`LoRAs: ${e.message}`);
    all = [];
  }
  render();
  emit("loras", all);
}

function matches(l, words) {
  const hay = [l.name, l.title, l.file, l.base_model, ...(l.triggers ?? []), ...(l.tags ?? []), l.user?.activation_text, l.user?.notes]
    .filter(Boolean).join(" ").toLowerCase();
  return words.every((w) => hay.includes(w));
}

function visible() {
  const words = $("lora-search").value.toLowerCase().split(/\s+/).filter(Boolean);
  const family = currentCheckpoint()?.family ?? null;
  const showAll = $("lora-show-all").checked;
  let hidden = 0;
  const shown = all.filter((l) => {
    if (folder && !(l.folder === folder || l.folder.startsWith(folder + "/"))) return false;
    if (!matches(l, words)) return false;
    if (!showAll && family && l.family && l.family !== family) { hidden++; return false; }
    return true;
  });
  return { shown, hidden, family };
}

function folders() {
  const set = new Set();
  for (const l of all) {
    const parts = (l.folder ?? "").split("/").filter(Boolean);
    for (let i = 1; i <= parts.length; i++) set.add(parts.slice(0, i).join("/"));
  }
  return [...set].sort();
}

function card(l) {
  const prompt = $("prompt").value;
  const active = hasLora(prompt, l.name);
  const family = l.family ?? "unknown";
  const picture = l.preview
    ? el("img", { class: "thumb", src: l.preview, alt: "", loading: "lazy" })
    : el("div", { class: "placeholder", "aria-hidden": "true" }, (l.name[0] ?? "?").toUpperCase());
  const facts = el("div", { class: "facts" },
    el("span", { class: `badge ${family}`, title: "base model family" }, familyLabel(l.family)),
    l.rank ? el("span", {}, `rank ${l.rank}`) : null,
    l.algorithm ? el("span", { class: "type", title: "adapter type" }, typeLabel(l)) : null,
    l.error ? el("span", { class: "warning" }, "unreadable") : null);
  const triggers = (l.triggers ?? []).slice(0, 4).join(", ");
  const pick = el("button", {
    type: "button", class: "pick", "aria-pressed": String(active),
    "aria-label": `${active ? "Remove" : "Add"} LoRA ${l.name}${l.family ? ` (${familyLabel(l.family)})` : ""}`,
    title: l.error ?? (l.title && l.title !== l.name ? l.title : l.file),
    onclick: () => toggle(l),
  }, picture, el("div", { class: "body" },
    el("span", { class: "title" }, l.name), facts,
    triggers ? el("span", { class: "triggers" }, `triggers: ${triggers}`) : null));
  return el("div", { class: `card${active ? " active" : ""}`, role: "listitem", dataset: { lora: l.name, family } },
    pick,
    el("button", { type: "button", class: "details", "aria-label": `Details of ${l.name}`, onclick: () => openDetails(l.name) }, "Info"));
}

export function render() {
  const { shown, hidden, family } = visible();
  const cards = $("lora-cards");
  cards.replaceChildren(...shown.map(card));
  if (!all.length) cards.replaceChildren(el("p", { class: "empty" }, "No LoRAs: put .safetensors files in the server's LoRA folder, then Refresh."));
  else if (!shown.length) cards.replaceChildren(el("p", { class: "empty" }, "No LoRA matches."));
  $("lora-hidden-note").textContent = hidden
    ? `${hidden} LoRA${hidden > 1 ? "s" : ""} made for another family than ${familyLabel(family)} hidden (tick "Show all families" to see them).`
    : "";
  const names = folders();
  $("lora-folders").hidden = names.length === 0;
  $("lora-folders").replaceChildren(...["", ...names].map((f) => el("button", {
    type: "button", "aria-pressed": String(f === folder), onclick: () => { folder = f; render(); },
  }, f === "" ? "All folders" : f)));
}

/** Marks the cards whose LoRA is in the prompt (after any edit of the prompt). */
function markActive() {
  const prompt = $("prompt").value;
  for (const c of $("lora-cards").querySelectorAll(".card")) {
    const active = hasLora(prompt, c.dataset.lora);
    c.classList.toggle("active", active);
    const pick = c.querySelector(".pick");
    pick.setAttribute("aria-pressed", String(active));
    pick.setAttribute("aria-label", pick.getAttribute("aria-label").replace(/^(Add|Remove)/, active ? "Remove" : "Add"));
  }
}

function toggle(l) {
  const weight = l.user?.preferred_weight || 1;
  const { text, added } = toggleLora($("prompt").value, l.name, weight, l.user?.activation_text ?? "");
  setText($("prompt"), text);
  const negative = l.user?.negative_text?.trim();
  if (negative) {
    const n = $("negative").value;
    if (added && !n.includes(negative)) setText($("negative"), n.trim() ? `${n.trimEnd()}, ${negative}` : negative);
    if (!added && n.includes(negative)) setText($("negative"), n.replace(negative, "").replace(/,\s*,/g, ",").replace(/^[\s,]+|[\s,]+$/g, ""));
  }
}

$("lora-search").addEventListener("input", render);
$("lora-show-all").addEventListener("change", render);
$("lora-refresh").addEventListener("click", async () => {
  try { await api.refreshLoras(); } catch (e) { notice(e.message); }
  await load();
});
$("prompt").addEventListener("input", markActive);
on("model", render);
on("lora-changed", load);
