// Compare: an X/Y grid, the experiment every LoRA tutorial does by hand. X is one LoRA's
// strength (its tag rewritten in the prompt), Y is steps or seed; every cell is an ordinary job
// (same queue, same infotext), and the browser draws the labelled grid on a canvas.
// Why in the browser: the cells already come back as PNGs with their infotext, a canvas draws text
// with the system's fonts (the server has no font renderer), and the grid is one click to save.

import * as api from "./api.js";
import * as generate from "./generate.js";
import * as loras from "./loras.js";
import { append, formatTag, hasLora, loraTags, setWeights } from "./prompt.js";
import { $, el, loadImage, notice, on } from "./ui.js";

let stopping = false;
let runningJob = null;

/** "0, 0.5, 1" -> [0, 0.5, 1]; refuses anything that is not a number. */
export function parseValues(text, what, integer) {
  const values = text.split(/[,\s]+/).filter(Boolean).map((v) => {
    const n = Number(v);
    if (!Number.isFinite(n) || (integer && !Number.isInteger(n))) throw new Error(`${what}: '${v}' is not ${integer ? "a whole number" : "a number"}`);
    return n;
  });
  if (!values.length) throw new Error(`${what}: give at least one value`);
  if (values.length > 8) throw new Error(`${what}: at most 8 values`);
  return values;
}

function fillLoras() {
  const select = $("xy-lora");
  const chosen = select.value;
  const inPrompt = [...new Set(loraTags($("prompt").value).map((t) => t.name))];
  const others = loras.list().map((l) => l.name).filter((n) => !inPrompt.includes(n));
  select.replaceChildren(...inPrompt.map((n) => el("option", { value: n }, `${n} (in the prompt)`)), ...others.map((n) => el("option", { value: n }, n)));
  if ([...select.options].some((o) => o.value === chosen)) select.value = chosen;
}

/** The prompt with the LoRA at this strength (its tag added when the prompt has none). */
function withStrength(prompt, name, w) {
  return hasLora(prompt, name) ? setWeights(prompt, name, w, w) : append(prompt, formatTag(name, w));
}

async function draw(cells, xs, ys, name, yLabel) {
  const images = await Promise.all(cells.map((c) => loadImage(c.url)));
  const canvas = $("xy-canvas");
  const ctx = canvas.getContext("2d");
  const iw = images[0].naturalWidth, ih = images[0].naturalHeight;
  const scale = Math.max(1, Math.ceil(128 / Math.min(iw, ih)));
  const cw = iw * scale, ch = ih * scale;
  ctx.font = "14px system-ui, sans-serif";
  const rowLabels = ys.map((y) => `${yLabel}: ${y}`);
  const left = Math.ceil(Math.max(...rowLabels.map((t) => ctx.measureText(t).width))) + 16;
  const top = 30, gap = 4;
  canvas.width = left + xs.length * (cw + gap);
  canvas.height = top + ys.length * (ch + gap);
  ctx.fillStyle = "#ffffff";
  ctx.fillRect(0, 0, canvas.width, canvas.height);
  ctx.fillStyle = "#111111";
  ctx.font = "14px system-ui, sans-serif";
  ctx.textBaseline = "middle";
  ctx.textAlign = "center";
  xs.forEach((x, i) => ctx.fillText(`${name}: ${x}`, left + i * (cw + gap) + cw / 2, top / 2, cw));
  ctx.textAlign = "right";
  ys.forEach((y, j) => ctx.fillText(rowLabels[j], left - 8, top + j * (ch + gap) + ch / 2));
  ctx.imageSmoothingEnabled = scale === 1;
  cells.forEach((c, k) => ctx.drawImage(images[k], left + c.col * (cw + gap), top + c.row * (ch + gap), cw, ch));
  Object.assign(canvas.dataset, { cells: String(cells.length), columns: String(xs.length), rows: String(ys.length) });
  canvas.setAttribute("aria-label", `X/Y grid: ${name} strength ${xs.join(", ")} across, ${yLabel.toLowerCase()} ${ys.join(", ")} down`);
  canvas.hidden = false;
  $("xy-download").href = canvas.toDataURL("image/png");
  $("xy-download").hidden = false;
}

async function runGrid() {
  notice("");
  let base, xs, ys;
  const name = $("xy-lora").value;
  const axis = $("xy-y-axis").value;
  try {
    if (!name) throw new Error("Compare: choose a LoRA (none in the folder?)");
    base = generate.request("txt2img");
    xs = parseValues($("xy-x-values").value, "Strengths", false);
    ys = parseValues($("xy-y-values").value, axis === "steps" ? "Steps" : "Seeds", true);
  } catch (e) { notice(e.message); return; }
  // one seed for the whole grid, so that only the axes change
  if (base.seed === -1) base.seed = String(Math.floor(Math.random() * 4294967295));
  base.batch_count = 1;
  const cells = [];
  stopping = false;
  $("xy-run").disabled = true;
  $("xy-stop").disabled = false;
  $("xy-canvas").hidden = true;
  $("xy-download").hidden = true;
  try {
    for (const [row, y] of ys.entries()) {
      for (const [col, x] of xs.entries()) {
        if (stopping) throw new Error("stopped");
        $("xy-status").textContent = `cell ${cells.length + 1} of ${xs.length * ys.length}: ${name} ${x}, ${axis} ${y}`;
        const req = { ...base, prompt: withStrength(base.prompt, name, x), save: false };
        if (axis === "steps") req.steps = y; else req.seed = String(y);
        const status = await api.run(req, { submitted: (id) => { runningJob = id; } });
        runningJob = null;
        cells.push({ row, col, url: status.result.images[0].url, infotext: status.result.images[0].infotext });
      }
    }
    await draw(cells, xs, ys, name, axis === "steps" ? "Steps" : "Seed");
    $("xy-status").textContent = `done: ${cells.length} cells (seed ${axis === "seed" ? "per row" : base.seed})`;
  } catch (e) {
    $("xy-status").textContent = `grid not finished: ${e.message}`;
    if (e.message !== "stopped") notice(e.message);
  } finally {
    $("xy-run").disabled = false;
    $("xy-stop").disabled = true;
  }
}

$("compare-form").addEventListener("submit", (e) => { e.preventDefault(); runGrid(); });
$("xy-stop").addEventListener("click", () => {
  stopping = true;
  if (runningJob) api.interrupt(runningJob).catch(() => {});
});
$("prompt").addEventListener("input", fillLoras);
on("loras", fillLoras);
export const show = fillLoras;
