// The Tools tab: the LoRA tools (merge into a checkpoint, extract, resize, merge LoRAs, convert,
// bake block weights), one form each built from the list below. Inputs are chosen from the LoRA
// and checkpoint lists; the output is a name in the LoRA folder (merge-into: the checkpoints
// folder). Each run is a job; its report (per module ranks, the Frobenius norm kept …) is shown
// as tables, and the lists are reloaded so the new file can be used at once.

import * as api from "./api.js";
import * as loras from "./loras.js";
import { $, checkpoints, el, notice, on } from "./ui.js";

const dtypes = [["", "as the input"], ["fp16", "fp16"], ["bf16", "bf16"], ["fp32", "fp32"]];
const dynamic = [["", "fixed rank"], ["sv_fro", "sv_fro (Frobenius share)"], ["sv_ratio", "sv_ratio"], ["sv_cumulative", "sv_cumulative"]];
const families = [["", "from the LoRA"], ["sd1", "SD1"], ["sd2", "SD2"], ["sdxl", "SDXL"]];

// kind: lora | model | number | text | select (options) | loras (rows of name + weights)
const tools = [
  { id: "merge-into", label: "Merge into checkpoint", suffix: "-merged", output: "model",
    about: "Bakes LoRAs into a copy of a checkpoint (same keys and layout); the new checkpoint appears in the checkpoint list.",
    fields: [
      { key: "model", label: "Checkpoint", kind: "model" },
      { key: "loras", label: "LoRAs", kind: "loras", rows: 2, weights: ["unet", "te"] },
      { key: "dtype", label: "Weights type", kind: "select", options: dtypes },
    ] },
  { id: "extract", label: "Extract", suffix: "-extracted", output: "tuned",
    about: "A LoRA from the difference of a fine-tuned checkpoint and its base (kohya's SVD extraction).",
    fields: [
      { key: "base", label: "Base checkpoint", kind: "model" },
      { key: "tuned", label: "Tuned checkpoint", kind: "model" },
      { key: "rank", label: "Rank", kind: "number", value: 16, min: 1 },
      { key: "conv_rank", label: "Conv rank (3×3 layers)", kind: "number", min: 1 },
      { key: "dynamic_method", label: "Dynamic rank", kind: "select", options: dynamic },
      { key: "dynamic_param", label: "Dynamic parameter", kind: "number", step: "any" },
      { key: "dtype", label: "Weights type", kind: "select", options: [["fp32", "fp32"], ["fp16", "fp16"], ["bf16", "bf16"]] },
    ] },
  { id: "resize", label: "Resize", suffix: "-resized", output: "lora",
    about: "A LoRA refactored to a lower rank (kohya's resize_lora); the report says how much of each module is kept.",
    fields: [
      { key: "lora", label: "LoRA", kind: "lora" },
      { key: "rank", label: "New rank", kind: "number", value: 8, min: 1 },
      { key: "conv_rank", label: "New conv rank", kind: "number", min: 1 },
      { key: "dynamic_method", label: "Dynamic rank", kind: "select", options: dynamic },
      { key: "dynamic_param", label: "Dynamic parameter", kind: "number", step: "any" },
      { key: "dtype", label: "Weights type", kind: "select", options: dtypes },
    ] },
  { id: "merge", label: "Merge LoRAs", suffix: "-mix", output: "loras",
    about: "Several LoRAs into one: concatenated (exact, the ranks add) or, with an SVD rank, re-factored.",
    fields: [
      { key: "loras", label: "LoRAs", kind: "loras", rows: 3, weights: ["weight"] },
      { key: "svd_rank", label: "SVD rank (empty: concatenate)", kind: "number", min: 1 },
      { key: "dtype", label: "Weights type", kind: "select", options: [["fp16", "fp16"], ["bf16", "bf16"], ["fp32", "fp32"]] },
    ] },
  { id: "convert", label: "Convert", suffix: "-converted", output: "lora",
    about: "kohya/A1111 ↔ peft/diffusers key names, alphas kept.",
    fields: [
      { key: "lora", label: "LoRA", kind: "lora" },
      { key: "to", label: "To", kind: "select", options: [["kohya", "kohya (A1111, ComfyUI)"], ["peft", "peft (diffusers)"]] },
      { key: "family", label: "Family", kind: "select", options: families },
    ] },
  { id: "bake-blocks", label: "Bake block weights", suffix: "-blocks", output: "lora",
    about: "Block weights (the lbw= syntax: a preset such as MIDD, or 17/26 or 12/20 values) multiplied into the LoRA.",
    fields: [
      { key: "lora", label: "LoRA", kind: "lora" },
      { key: "blocks", label: "Blocks", kind: "text", value: "MIDD" },
      { key: "elements", label: "Elements (lbwe=, optional)", kind: "text" },
      { key: "family", label: "Family", kind: "select", options: families },
    ] },
];

let tool = tools[0];
let running = false;

const fieldId = (key, i = null, part = null) => `tool-${key}${i === null ? "" : `-${i}`}${part ? `-${part}` : ""}`;
const options = (pairs) => pairs.map(([value, text]) => el("option", { value }, text));
const loraOptions = (blank) => [...(blank ? [el("option", { value: "" }, "–")] : []), ...loras.list().filter((l) => !l.error).map((l) => el("option", { value: l.name }, l.name))];
const modelOptions = () => checkpoints.list.filter((m) => m.kind === "single_file" || m.kind === "singlefile").map((m) => el("option", { value: m.name }, m.name));

function control(f) {
  const id = fieldId(f.key);
  switch (f.kind) {
    case "lora": return el("div", { class: "field" }, el("label", { for: id }, f.label), el("select", { id }, loraOptions(false)));
    case "model": return el("div", { class: "field" }, el("label", { for: id }, f.label), el("select", { id }, modelOptions()));
    case "select": return el("div", { class: "field" }, el("label", { for: id }, f.label), el("select", { id }, options(f.options)));
    case "number": return el("div", { class: "field" }, el("label", { for: id }, f.label),
      el("input", { type: "number", id, min: f.min, step: f.step ?? 1, value: f.value }));
    case "text": return el("div", { class: "field" }, el("label", { for: id }, f.label), el("input", { type: "text", id, value: f.value }));
    case "loras": return el("fieldset", { class: "tool-loras" }, el("legend", {}, f.label),
      Array.from({ length: f.rows }, (_, i) => el("div", { class: "tool-lora-row" },
        el("div", { class: "field" }, el("label", { for: fieldId(f.key, i) }, `LoRA ${i + 1}`), el("select", { id: fieldId(f.key, i) }, loraOptions(i >= (tool.id === "merge" ? 2 : 1)))),
        f.weights.map((w) => el("div", { class: "field" }, el("label", { for: fieldId(f.key, i, w) }, `LoRA ${i + 1} ${w === "te" ? "text encoder" : w === "unet" ? "UNet" : "weight"}`),
          el("input", { type: "number", id: fieldId(f.key, i, w), step: "0.05", value: w === "weight" ? (1 / f.rows).toFixed(2) : "1" }))))));
    default: return null;
  }
}

function render() {
  $("tool-tabs").replaceChildren(...tools.map((t) => el("button", {
    type: "button", role: "tab", id: `tool-tab-${t.id}`, "aria-selected": String(t === tool), "aria-controls": "tool-form",
    dataset: { tool: t.id }, onclick: () => { tool = t; render(); },
  }, t.label)));
  $("tool-form").setAttribute("aria-labelledby", `tool-tab-${tool.id}`);
  $("tool-about").textContent = tool.about;
  $("tool-fields").replaceChildren(...tool.fields.map(control));
  // a second LoRA preselected where two are needed
  preselect();
  suggestOutput();
}

/** Merge needs two LoRAs: the second row starts on the second of the list. */
function preselect() {
  const second = $(fieldId("loras", 1));
  if (second && tool.id === "merge" && second.options.length > 1 && second.selectedIndex === 0) second.selectedIndex = 1;
}

function suggestOutput() {
  const source = { model: "model", tuned: "tuned", lora: "lora", loras: fieldId("loras", 0) }[tool.output];
  const input = $(source === "model" || source === "tuned" || source === "lora" ? fieldId(source) : source);
  if (input?.value) $("tool-output").value = input.value.split("/").pop() + tool.suffix;
}

function value(f) {
  if (f.kind === "loras") {
    const rows = [];
    for (let i = 0; i < f.rows; i++) {
      const name = $(fieldId(f.key, i)).value;
      if (!name) continue;
      const row = { name };
      for (const w of f.weights) { const v = $(fieldId(f.key, i, w)).value; if (v !== "") row[w] = Number(v); }
      rows.push(row);
    }
    return rows;
  }
  const v = $(fieldId(f.key)).value.trim();
  if (v === "") return undefined;
  return f.kind === "number" ? Number(v) : v;
}

function request() {
  const body = { output: $("tool-output").value.trim(), force: $("tool-force").checked };
  for (const f of tool.fields) { const v = value(f); if (v !== undefined) body[f.key] = v; }
  return body;
}

const fmt = (v) => typeof v === "number" ? (Number.isInteger(v) ? String(v) : v.toPrecision(4)) : Array.isArray(v) ? v.join(", ") : String(v ?? "–");

/** The report: its plain values as a table, each list of objects as a table of its own (in a disclosure when long). */
function showReport(result) {
  const report = result.report ?? {};
  const plain = Object.entries(report).filter(([, v]) => !Array.isArray(v) || v.every((x) => typeof x !== "object"));
  const lists = Object.entries(report).filter(([, v]) => Array.isArray(v) && v.some((x) => typeof x === "object"));
  const summary = [["written", `${result.name} (${result.file} in the ${result.folder === "checkpoint" ? "checkpoints" : "LoRA"} folder)`],
    ["seconds", result.seconds], ...plain];
  const body = [el("table", { class: "kv", id: "tool-summary" }, el("caption", {}, tool.label),
    el("tbody", {}, summary.map(([k, v]) => el("tr", {}, el("th", { scope: "row" }, k.replaceAll("_", " ")), el("td", {}, fmt(v))))))];
  for (const [key, rows] of lists) {
    const columns = [...new Set(rows.flatMap((r) => Object.keys(r)))];
    const table = el("div", { class: "table-wrap" }, el("table", { class: "kv" }, el("caption", { class: "visually-hidden" }, key),
      el("thead", {}, el("tr", {}, columns.map((c) => el("th", { scope: "col" }, c.replaceAll("_", " "))))),
      el("tbody", {}, rows.map((r) => el("tr", {}, columns.map((c) => el("td", {}, fmt(r[c]))))))));
    body.push(rows.length > 8 ? el("details", {}, el("summary", {}, `${key.replaceAll("_", " ")} (${rows.length})`), table)
      : el("div", {}, el("h4", {}, key.replaceAll("_", " ")), table));
  }
  $("tool-report-body").replaceChildren(...body);
  $("tool-report").hidden = false;
}

async function run(e) {
  e.preventDefault();
  if (running) return;
  notice("");
  running = true;
  $("tool-run").disabled = true;
  $("tool-status").textContent = "queued";
  $("tool-report").hidden = true;
  try {
    const { id } = await api.loraTool(tool.id, request());
    const end = await api.follow(id, {
      started: () => { $("tool-status").textContent = "running"; },
      message: (m) => { $("tool-status").textContent = m.text; },
    });
    if (end.type === "failed") throw new Error(end.data.message ?? "the tool failed");
    if (end.type === "cancelled") throw new Error("cancelled");
    $("tool-status").textContent = `done in ${Number(end.data.result.seconds).toFixed(1)} s`;
    showReport(end.data.result);
    if (end.data.result.folder === "checkpoint") $("refresh-models").click(); // app.js rescans and refills the checkpoint list
    else await loras.load();
  } catch (error) {
    $("tool-status").textContent = "failed";
    notice(error.message);
  } finally {
    running = false;
    $("tool-run").disabled = false;
  }
}

$("tool-form").addEventListener("submit", run);
$("tool-fields").addEventListener("change", (e) => {
  if (["tool-model", "tool-tuned", "tool-lora", "tool-loras-0"].includes(e.target.id)) suggestOutput();
});
/** New LoRA or checkpoint lists: the choices are refilled, what was chosen stays chosen. */
function refreshLists() {
  for (const f of tool.fields) {
    const selects = f.kind === "loras" ? Array.from({ length: f.rows }, (_, i) => [$(fieldId(f.key, i)), i >= (tool.id === "merge" ? 2 : 1)])
      : f.kind === "lora" || f.kind === "model" ? [[$(fieldId(f.key)), false]] : [];
    for (const [select, blank] of selects) {
      const keep = select.value;
      select.replaceChildren(...(f.kind === "model" ? modelOptions() : loraOptions(blank)));
      if ([...select.options].some((o) => o.value === keep)) select.value = keep;
    }
  }
  preselect();
  if (!$("tool-output").value) suggestOutput();
}

on("loras", refreshLists);
on("model", refreshLists);
render();
