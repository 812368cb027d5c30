// The Train tab: a LoRA trained on the chosen checkpoint from a dataset folder of the server's
// training-data root (kohya layout: N_class subfolders; or images directly with a repeat count).
// The run is a job: its events drive the progress bar, the loss chart (drawn here from the step
// events), the sample images and the list of saved files; Stop cancels it. The finished LoRA is in
// the LoRA folder at once: a link opens its details, another puts it into the Generate prompt.

import * as api from "./api.js";
import * as loras from "./loras.js";
import { openDetails } from "./loradetails.js";
import { append, setText } from "./prompt.js";
import { $, duration, el, notice } from "./ui.js";

let datasets = [];
let current = null; // the job followed: { id, stream }
let points = []; // { step, loss, avg }
let total = 0;

const visible = () => !$("screen-train").hidden;

async function loadDatasets() {
  const keep = $("train-dataset").value;
  let listing = { root: "", datasets: [] };
  try { listing = await api.trainDatasets(); } catch (e) { notice(`Datasets: ${e.message}`); }
  datasets = listing.datasets ?? [];
  $("train-root-hint").textContent = `Trains on the checkpoint chosen at the top right. Datasets are the folders in ${listing.root || "the server's training-data folder"}: ` +
    "each with kohya subfolders named N_class (e.g. 10_mychar woman) holding images and .txt captions, or with the images directly in it (then set Repeats).";
  const select = $("train-dataset");
  select.replaceChildren(...(datasets.length
    ? datasets.map((d) => el("option", { value: d.name }, `${d.name} (${d.images} images)`))
    : [el("option", { value: "" }, "no dataset folders")]));
  if (keep && datasets.some((d) => d.name === keep)) select.value = keep;
  describe();
}

function describe() {
  const d = datasets.find((x) => x.name === $("train-dataset").value);
  if (!d) { $("train-dataset-info").textContent = ""; return; }
  const parts = d.subsets.map((s) => s.folder
    ? `${s.folder}: ${s.images} images, ${s.captions} captions${s.repeats ? `, ${s.repeats} repeats` : ""}`
    : `${s.images} images in the folder itself, ${s.captions} captions`);
  $("train-dataset-info").textContent = (d.problem ? `Problem: ${d.problem}. ` : "") + parts.join(" · ");
  if (!$("train-output").value) $("train-output").value = d.name.replace(/\s+/g, "_");
}

const num = (id) => { const v = $(id).value.trim(); return v === "" ? undefined : Number(v); };

function request() {
  const seed = $("train-seed").value.trim();
  const sample = $("train-sample-prompt").value.trim();
  return {
    model: $("model").value || undefined,
    dataset: $("train-dataset").value,
    output_name: $("train-output").value.trim(),
    steps: num("train-steps"), epochs: num("train-epochs"),
    rank: num("train-rank"), alpha: num("train-alpha"), learning_rate: num("train-lr"),
    resolution: num("train-resolution"), batch_size: num("train-batch"), repeats: num("train-repeats"),
    seed: seed === "" || seed === "-1" ? undefined : Number(seed),
    optimizer: $("train-optimizer").value, lr_scheduler: $("train-scheduler").value, lr_warmup_steps: num("train-warmup"),
    mixed_precision: $("train-precision").value, save_every_n_epochs: num("train-save-every"), chart_every: num("train-chart-every"),
    cache_latents: $("train-cache").checked, gradient_checkpointing: $("train-checkpointing").checked,
    shuffle_caption: $("train-shuffle").checked, flip_aug: $("train-flip").checked, train_unet_only: $("train-unet-only").checked,
    force: $("train-force").checked,
    sample_prompts: sample || undefined, sample_every_n_steps: sample ? num("train-sample-every") : undefined,
  };
}

function message(text, warning = false) {
  $("train-messages").append(el("li", { class: warning ? "warning" : undefined }, text));
}

function setRunning(running) {
  $("train-start").disabled = running;
  $("train-stop").disabled = !running;
}

function reset() {
  points = [];
  total = 0;
  $("train-messages").replaceChildren();
  $("train-samples").replaceChildren();
  $("train-result").hidden = true;
  $("train-result").replaceChildren();
  $("train-bar").value = 0;
  $("train-progress").dataset.step = "0";
  $("train-status").textContent = "queued";
  $("train-progress").hidden = false;
  $("train-empty").hidden = true;
  draw();
}

/** The loss per step (faint) and its moving average (accent), on a canvas sized to its box. */
function draw() {
  const canvas = $("train-chart");
  canvas.hidden = points.length === 0;
  canvas.dataset.points = String(points.length);
  if (!points.length) return;
  const ctx = canvas.getContext("2d");
  const style = getComputedStyle(document.documentElement);
  const [w, h, pad] = [canvas.width, canvas.height, 34];
  ctx.clearRect(0, 0, w, h);
  const losses = points.flatMap((p) => [p.loss, p.avg]).filter((v) => v !== null && Number.isFinite(v));
  const lo = Math.min(...losses), hi = Math.max(...losses);
  const span = hi - lo || 1;
  const steps = Math.max(total, points[points.length - 1].step, 2);
  const x = (s) => pad + ((s - 1) / (steps - 1)) * (w - pad - 8);
  const y = (v) => h - pad + 8 - ((v - lo) / span) * (h - pad - 8);
  ctx.strokeStyle = style.getPropertyValue("--line");
  ctx.fillStyle = style.getPropertyValue("--muted");
  ctx.font = "11px system-ui, sans-serif";
  ctx.beginPath(); ctx.moveTo(pad, 4); ctx.lineTo(pad, h - pad + 8); ctx.lineTo(w - 4, h - pad + 8); ctx.stroke();
  ctx.fillText(hi.toPrecision(3), 2, 12);
  ctx.fillText(lo.toPrecision(3), 2, h - pad + 8);
  ctx.fillText(`step ${steps}`, w - 60, h - 6);
  ctx.fillText("loss", pad + 4, h - 6);
  const line = (key, color, width) => {
    ctx.strokeStyle = color; ctx.lineWidth = width; ctx.beginPath();
    let started = false;
    for (const p of points) {
      if (p[key] === null || !Number.isFinite(p[key])) continue;
      if (started) ctx.lineTo(x(p.step), y(p[key])); else { ctx.moveTo(x(p.step), y(p[key])); started = true; }
    }
    if (points.length === 1) ctx.arc(x(points[0].step), y(points[0][key] ?? lo), 2, 0, 2 * Math.PI);
    ctx.stroke();
    ctx.lineWidth = 1;
  };
  line("loss", style.getPropertyValue("--line"), 1);
  line("avg", style.getPropertyValue("--accent"), 2);
}

function finished(status) {
  const r = status.result;
  setRunning(false);
  current = null;
  $("train-bar").value = 1;
  $("train-status").textContent = `done: ${r.steps} steps, average loss ${Number(r.average_loss).toFixed(4)}, seed ${r.seed}`;
  const box = $("train-result");
  box.replaceChildren(
    el("span", {}, "LoRA "),
    el("a", { href: `#train`, id: "train-lora-link", onclick: (e) => { e.preventDefault(); openDetails(r.lora); } }, r.lora),
    el("span", {}, ` (${r.file} in the LoRA folder) `),
    el("button", { type: "button", id: "train-use", onclick: () => {
      setText($("prompt"), append($("prompt").value, `<lora:${r.lora}:1>`));
      location.hash = "#generate";
    } }, "Use in Generate"),
    r.chart ? el("a", { class: "button", href: r.chart, target: "_blank", rel: "noopener" }, "Loss chart (PNG)") : null);
  box.hidden = false;
  loras.load();
}

/** Follows a training job (from its start: the events are replayed, so a reloaded page catches up). */
function followJob(id) {
  current = { id };
  setRunning(true);
  current.stream = api.follow(id, {
    queued: () => reset(),
    started: () => { $("train-status").textContent = "starting"; },
    phase: (p) => { $("train-status").textContent = `${p.phase.replace(/^train:/, "")}${p.detail ? `: ${p.detail}` : ""}`; },
    message: (m) => message(m.text, m.warning),
    train_planned: (p) => {
      total = p.total_steps;
      message(`${p.total_steps} steps in ${p.epochs} epoch${p.epochs === 1 ? "" : "s"}; ${p.train_images} image uses per epoch; ${p.modules} modules; seed ${p.seed}`);
    },
    train_preparing: (p) => { $("train-status").textContent = `${p.phase}: ${p.done}/${p.total}`; },
    train_step: (s) => {
      total = s.steps;
      points.push({ step: s.step, loss: s.loss, avg: s.average_loss });
      $("train-bar").value = s.fraction;
      $("train-progress").dataset.step = String(s.step);
      $("train-status").textContent = `step ${s.step}/${s.steps} · epoch ${s.epoch}/${s.epochs} · loss ${s.loss?.toFixed(4) ?? "–"} ` +
        `(avg ${s.average_loss?.toFixed(4) ?? "–"}) · lr ${Number(s.lr).toExponential(2)} · ${s.seconds_per_step.toFixed(2)} s/it · ETA ${duration(s.eta_seconds)}`;
      draw();
    },
    train_samples: (s) => {
      for (const url of s.urls) {
        $("train-samples").append(el("a", { href: url, target: "_blank", rel: "noopener" },
          el("img", { src: url, alt: `Sample at step ${s.step}`, title: `step ${s.step}` })));
      }
    },
    train_saved: (s) => message(`saved ${s.name} (${s.file}) at step ${s.step}${s.final ? "" : ", an intermediate file"}`),
    completed: finished,
    failed: (f) => {
      setRunning(false);
      current = null;
      $("train-status").textContent = "failed";
      message(f.message ?? "the training failed", true);
      notice(f.message);
    },
    cancelled: () => {
      setRunning(false);
      current = null;
      $("train-status").textContent = "stopped";
    },
  });
}

async function start(e) {
  e.preventDefault();
  notice("");
  try {
    const { id } = await api.train(request());
    followJob(id);
  } catch (error) {
    notice(error.message);
    if (error.field) {
      const field = { dataset: "train-dataset", output_name: "train-output", model: "model" }[error.field];
      if (field) $(field).focus();
    }
  }
}

/** On showing the tab: the dataset list, and a run already going (another tab, a reload) is followed. */
async function show() {
  await loadDatasets();
  if (current) return;
  try {
    const list = await api.jobs();
    const job = [...list.running, ...list.pending].find((j) => j.kind === "train");
    if (job) followJob(job.id);
  } catch { /* the list is a convenience */ }
}

$("train-form").addEventListener("submit", start);
$("train-dataset").addEventListener("change", describe);
$("train-datasets-refresh").addEventListener("click", loadDatasets);
$("train-stop").addEventListener("click", async () => {
  if (!current) return;
  $("train-status").textContent = "stopping after this step";
  try { await api.cancel(current.id); } catch (error) { notice(error.message); }
});
const onRoute = () => { if (visible()) show(); };
window.addEventListener("hashchange", () => setTimeout(onRoute));
setTimeout(onRoute);
