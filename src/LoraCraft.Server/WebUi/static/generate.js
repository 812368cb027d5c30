// The Generate screen: txt2img / img2img / inpaint, the form as a native generate request, the
// run (progress with step, s/it, ETA and live preview from the job's events), the results.

import * as api from "./api.js";
import * as inpaint from "./inpaint.js";
import { setText } from "./prompt.js";
import { $, duration, el, fetchDataUrl, notice } from "./ui.js";

let mode = "txt2img";
let running = null; // the job id being followed
let lastSeed = null;
let results = []; // images of the last generation: { url, infotext, seed, width, height }

export const currentMode = () => mode;

/** Switches txt2img / img2img / inpaint (the URL says which: #generate/img2img). */
export function setMode(m) {
  mode = ["txt2img", "img2img", "inpaint"].includes(m) ? m : "txt2img";
  for (const tab of document.querySelectorAll(".modes [role=tab]")) {
    const selected = tab.dataset.mode === mode;
    tab.setAttribute("aria-selected", String(selected));
    tab.tabIndex = selected ? 0 : -1;
  }
  $("generate-form").setAttribute("aria-labelledby", `mode-${mode}`);
  $("image-panel").hidden = mode === "txt2img";
  inpaint.setMode(mode);
}

export function fillSamplers(samplers, schedulers) {
  const sampler = $("sampler");
  sampler.replaceChildren(...samplers.map((s) => el("option", { value: s.name }, s.a1111_name ?? s.name)));
  sampler.value = samplers.some((s) => s.name === "euler_ancestral") ? "euler_ancestral" : samplers[0]?.name ?? "";
  $("scheduler").replaceChildren(el("option", { value: "" }, "Automatic"),
    ...schedulers.map((s) => el("option", { value: s.name }, s.label ?? s.name)));
}

const int = (id) => Number.parseInt($(id).value, 10);
const num = (id) => Number($(id).value);

/** A seed field as the API takes it: a string of digits (JSON numbers lose digits past 2^53), or -1. */
function seedOf(id) {
  const text = $(id).value.trim();
  if (text === "" || text === "-1") return -1;
  if (!/^\d+$/.test(text)) throw new Error(`${id === "seed" ? "Seed" : "Variation seed"} must be -1 (random) or a whole number, got '${text}'`);
  return text;
}

/** The form as a native generate request (snake_case, see NativeGenerateRequest) for mode `m`. */
export function request(m = mode) {
  const r = {
    model: $("model").value || null,
    prompt: $("prompt").value,
    negative: $("negative").value,
    sampler: $("sampler").value,
    scheduler: $("scheduler").value || null,
    steps: int("steps"),
    cfg: num("cfg"),
    seed: seedOf("seed"),
    width: int("width"),
    height: int("height"),
    batch_count: int("batch-count"),
    clip_skip: int("clip-skip"),
    noise: $("noise").value,
    preview_every: 1,
  };
  const strength = num("subseed-strength");
  if (strength > 0) { r.subseed = seedOf("subseed"); r.subseed_strength = strength; }
  const hashes = $("known-lora-hashes").value;
  if (hashes) r.known_lora_hashes = JSON.parse(hashes);
  if (m !== "txt2img") {
    if (!inpaint.hasImage()) throw new Error(`${m}: load an init image first`);
    r.init_image = inpaint.imageDataUrl();
    r.denoise = num("denoise");
  }
  if (m === "inpaint") {
    if (!inpaint.hasMask()) throw new Error("inpaint: paint the part to regenerate on the image first");
    r.mask = inpaint.maskDataUrl();
    r.inpaint = {
      only_masked: $("only-masked").checked, padding: int("padding"), mask_blur: int("mask-blur"),
      masked_content: $("masked-content").value,
    };
  }
  return r;
}

/** Fills the form from a native request (PNG Info's "send to generate"); absent fields stay. */
export function fill(r) {
  const set = (id, v) => { if (v !== null && v !== undefined) $(id).value = String(v); };
  if (r.model && [...$("model").options].some((o) => o.value === r.model)) {
    $("model").value = r.model;
    $("model").dispatchEvent(new Event("change"));
  }
  setText($("prompt"), r.prompt ?? "");
  setText($("negative"), r.negative ?? "");
  if ([...$("sampler").options].some((o) => o.value === r.sampler)) set("sampler", r.sampler);
  $("scheduler").value = [...$("scheduler").options].some((o) => o.value === r.scheduler) ? r.scheduler : "";
  set("steps", r.steps); set("cfg", r.cfg); set("seed", r.seed); set("width", r.width); set("height", r.height);
  set("clip-skip", r.clip_skip ?? 1); set("noise", r.noise ?? "cpu");
  set("subseed", r.subseed ?? -1); set("subseed-strength", r.subseed_strength ?? 0);
  if (r.denoise !== null && r.denoise !== undefined) { set("denoise", r.denoise); $("denoise-value").value = Number(r.denoise).toFixed(2); }
  $("known-lora-hashes").value = r.known_lora_hashes && Object.keys(r.known_lora_hashes).length ? JSON.stringify(r.known_lora_hashes) : "";
}

function progress(step) {
  const box = $("progress");
  box.hidden = false;
  box.dataset.steps = String(Number(box.dataset.steps ?? 0) + 1); // how many step events this run showed
  if (step.preview) box.dataset.previews = String(Number(box.dataset.previews ?? 0) + 1);
  const bar = $("progress-bar");
  bar.value = step.fraction ?? 0;
  const image = step.images > 1 ? `image ${step.image + 1}/${step.images} · ` : "";
  $("progress-text").textContent =
    `${image}step ${step.step}/${step.steps} · ${step.seconds_per_step ? step.seconds_per_step.toFixed(2) : "–"} s/it · ETA ${duration(step.eta_seconds)}`;
  if (step.preview) {
    const img = $("live-preview");
    img.src = step.preview;
    img.hidden = false;
    $("result-image").hidden = true;
    $("stage-empty").hidden = true;
  }
}

function showResult(index) {
  const image = results[index];
  if (!image) return;
  const img = $("result-image");
  img.src = image.url;
  img.hidden = false;
  img.dataset.seed = String(image.seed);
  $("live-preview").hidden = true;
  $("stage-empty").hidden = true;
  $("infotext").textContent = image.infotext ?? "";
  $("infotext").hidden = !image.infotext;
  $("download").href = image.url;
  $("download").download = `loracraft-${image.seed}.png`;
  $("result-actions").hidden = false;
  for (const [i, b] of [...$("result-thumbs").children].entries()) b.setAttribute("aria-pressed", String(i === index));
  $("result-thumbs").dataset.selected = String(index);
}

function showResults(status) {
  const result = status.result ?? {};
  results = (result.images ?? []).map((i) => ({ url: i.url, infotext: i.infotext, seed: i.seed, width: i.width, height: i.height }));
  if (results.length) lastSeed = results[0].seed;
  $("result-thumbs").replaceChildren(...results.map((image, i) => el("button", {
    type: "button", "aria-label": `Show image ${i + 1} (seed ${image.seed})`, onclick: () => showResult(i),
  }, el("img", { src: image.url, alt: "" }))));
  $("result-thumbs").hidden = results.length < 2;
  showResult(0);
  const messages = [...(result.notes ?? []).map((n) => ({ text: n })), ...(result.warnings ?? []).map((w) => ({ text: w, warning: true }))];
  $("messages").replaceChildren(...messages.map((m) => el("li", { class: m.warning ? "warning" : null }, m.text)));
  $("progress-text").textContent = `done in ${duration(result.seconds)}${result.interrupted ? " (interrupted)" : ""}`;
  $("progress-bar").value = 1;
}

function setRunning(id) {
  running = id;
  $("generate").disabled = id !== null;
  $("generate").textContent = id !== null ? "Generating…" : "Generate";
  $("interrupt").disabled = id === null;
  $("skip").disabled = id === null;
  document.body.dataset.busy = id !== null ? "true" : "false";
}

export async function run() {
  if (running) return;
  let req;
  try { req = request(); } catch (e) { notice(e.message); return; }
  notice("");
  $("messages").replaceChildren();
  $("progress").hidden = false;
  $("progress").dataset.steps = "0";
  $("progress").dataset.previews = "0";
  $("progress-bar").value = 0;
  $("progress-text").textContent = "queued";
  setRunning("pending");
  try {
    const status = await api.run(req, {
      submitted: (id) => setRunning(id),
      queued: (q) => { $("progress-text").textContent = q.position > 0 ? `queued (${q.position} ahead)` : "starting"; },
      phase: (p) => { $("progress-text").textContent = `${p.phase}${p.detail ? `: ${p.detail}` : ""}`; },
      step: progress,
      message: (m) => $("messages").append(el("li", { class: m.warning ? "warning" : null }, m.text)),
    });
    showResults(status);
    document.dispatchEvent(new CustomEvent("loracraft:generated", { detail: status }));
  } catch (e) {
    notice(e.message);
    $("progress-text").textContent = "failed";
  } finally {
    setRunning(null);
  }
}

async function sendTo(target) {
  const index = Number($("result-thumbs").dataset.selected ?? 0);
  const image = results[index];
  if (!image) return;
  try {
    await inpaint.setImage(await fetchDataUrl(image.url));
    location.hash = `#generate/${target}`;
  } catch (e) { notice(e.message); }
}

$("generate-form").addEventListener("submit", (e) => { e.preventDefault(); run(); });
document.addEventListener("keydown", (e) => {
  if (e.key === "Enter" && (e.ctrlKey || e.metaKey) && !$("screen-generate").hidden) { e.preventDefault(); run(); }
});
$("interrupt").addEventListener("click", () => { if (running && running !== "pending") api.interrupt(running).catch((e) => notice(e.message)); });
$("skip").addEventListener("click", () => { if (running && running !== "pending") api.skip(running).catch((e) => notice(e.message)); });
$("seed-random").addEventListener("click", () => { $("seed").value = "-1"; });
$("seed-reuse").addEventListener("click", () => { if (lastSeed !== null) $("seed").value = String(lastSeed); });
$("send-img2img").addEventListener("click", () => sendTo("img2img"));
$("send-inpaint").addEventListener("click", () => sendTo("inpaint"));
for (const tab of document.querySelectorAll(".modes [role=tab]")) {
  tab.addEventListener("click", () => { location.hash = `#generate/${tab.dataset.mode}`; });
  tab.addEventListener("keydown", (e) => {
    if (e.key !== "ArrowRight" && e.key !== "ArrowLeft") return;
    const tabs = [...document.querySelectorAll(".modes [role=tab]")];
    const next = tabs[(tabs.indexOf(tab) + (e.key === "ArrowRight" ? 1 : tabs.length - 1)) % tabs.length];
    next.focus();
    next.click();
  });
}
// an init image sets the size (multiples of 8, as the models need)
inpaint.onImageLoaded((w, h) => {
  $("width").value = String(Math.max(64, Math.round(w / 8) * 8));
  $("height").value = String(Math.max(64, Math.round(h / 8) * 8));
});
