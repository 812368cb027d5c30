// Starts the page: loads the lists (checkpoints, samplers, schedulers, LoRAs, embeddings), shows
// the screen the URL names (#generate/img2img, #pnginfo, #compare, #history) and wires the
// checkpoint selector. Each screen lives in its own module.

import * as api from "./api.js";
import * as generate from "./generate.js";
import * as loras from "./loras.js";
import * as active from "./activeloras.js";
import * as compare from "./compare.js";
import * as history from "./history.js";
import "./pnginfo.js";
import "./train.js";
import "./tools.js";
import "./hub.js";
import { append, attachHighlight, setText } from "./prompt.js";
import { $, checkpoints, el, emit, notice } from "./ui.js";

const screens = ["generate", "pnginfo", "compare", "history"];
let embeddingNames = [];
screens.push("train", "tools"); // #train and #tools: train.js and tools.js load their lists when shown

function route() {
  const [screen, sub] = (location.hash.replace(/^#\/?/, "") || "generate").split("/");
  const current = screens.includes(screen) ? screen : "generate";
  for (const s of screens) $(`screen-${s}`).hidden = s !== current;
  for (const a of document.querySelectorAll(".screens a")) {
    if (a.dataset.screen === current) a.setAttribute("aria-current", "page"); else a.removeAttribute("aria-current");
  }
  document.body.dataset.screen = current;
  if (current === "generate") generate.setMode(sub);
  if (current === "history") history.load();
  if (current === "compare") compare.show();
}

async function loadModels(keep) {
  const select = $("model");
  try {
    checkpoints.list = await api.models();
  } catch (e) {
    notice(`Checkpoints: ${e.message}`);
    checkpoints.list = [];
  }
  const label = (m) => `${m.name}${m.family ? ` (${({ sd1: "SD1", sd2: "SD2", sdxl: "SDXL" })[m.family] ?? m.family})` : ""}`;
  select.replaceChildren(...checkpoints.list.filter((m) => m.kind !== "pickle").map((m) => el("option", { value: m.name }, label(m))));
  if (!select.options.length) {
    select.append(el("option", { value: "" }, "no checkpoints"));
    notice("No checkpoints: put .safetensors files in the server's checkpoints folder (or run `loracraft serve --demo`).");
  }
  const want = keep ?? checkpoints.list.find((m) => m.current)?.name;
  if (want && [...select.options].some((o) => o.value === want)) select.value = want;
  emit("model", select.value);
}

async function loadEmbeddings() {
  let list = [];
  try { list = await api.embeddings(); } catch { list = []; }
  embeddingNames = list.filter((e) => !e.problem).map((e) => e.name);
  $("embedding-list").replaceChildren(...(list.length ? list.map((e) => el("button", {
    type: "button", disabled: !!e.problem, title: e.problem ?? `${e.vectors} vectors${e.family ? `, ${e.family}` : ""}`,
    "aria-label": `Add embedding ${e.name} to the prompt`, onclick: () => setText($("prompt"), append($("prompt").value, e.name)),
  }, e.name)) : [el("p", { class: "empty" }, "No embeddings in the server's embeddings folder.")]));
}

async function start() {
  const highlightPrompt = attachHighlight($("prompt"), () => embeddingNames);
  attachHighlight($("negative"), () => embeddingNames);
  $("model").addEventListener("change", () => emit("model", $("model").value));
  $("refresh-models").addEventListener("click", async () => {
    try { await api.refreshModels(); } catch (e) { notice(e.message); }
    await loadModels($("model").value);
  });
  window.addEventListener("hashchange", route);
  route();
  const [samplers, schedulers] = await Promise.all([api.samplers(), api.schedulers()]).catch((e) => { notice(e.message); return [[], []]; });
  generate.fillSamplers(samplers, schedulers);
  await loadModels();
  await Promise.all([loras.load(), loadEmbeddings()]);
  highlightPrompt();
  active.update();
  document.body.dataset.ready = "true";
}

window.addEventListener("unhandledrejection", (e) => notice(e.reason?.message ?? String(e.reason)));
start();
