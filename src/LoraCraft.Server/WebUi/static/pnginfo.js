// PNG Info: drop a PNG, read its A1111 parameters, and "send to generate" every field, LoRA tags
// included (the server finds renamed LoRAs by their `Lora hashes` and rewrites the tags).

import * as api from "./api.js";
import * as generate from "./generate.js";
import { $, dataUrl, dropTarget, el, fetchDataUrl, notice } from "./ui.js";

let info = null;

/** Reads a PNG given as a data: URL or a same-origin URL. */
export async function read(url) {
  const data = url.startsWith("data:") ? url : await fetchDataUrl(url);
  $("png-image").src = data;
  $("png-image").hidden = false;
  try {
    info = await api.pngInfo(data);
  } catch (e) {
    info = null;
    notice(e.message);
  }
  show();
}

function show() {
  const parameters = info?.parameters;
  $("png-empty").hidden = !!parameters;
  $("png-empty").textContent = info ? "This PNG has no generation parameters." : "No parameters yet.";
  $("png-parameters").hidden = !parameters;
  $("png-parameters").textContent = parameters ?? "";
  const settings = Object.entries(info?.settings ?? {});
  const extra = Object.entries(info?.items ?? {});
  $("png-table").hidden = settings.length + extra.length === 0;
  $("png-table").querySelector("tbody").replaceChildren(...[...settings, ...extra].map(([k, v]) =>
    el("tr", {}, el("th", { scope: "row" }, k), el("td", {}, v))));
  $("png-loras").replaceChildren(...(info?.loras ?? []).map((l) => el("li", { class: l.found ? null : "warning" },
    l.found === null ? `LoRA ${l.name} (hash ${l.hash}): not in the LoRA folder`
      : l.renamed ? `LoRA ${l.name} (hash ${l.hash}) is here as ${l.found}: its tags are rewritten`
        : `LoRA ${l.name} (hash ${l.hash}): found`)));
  $("png-send").disabled = !info?.generate;
}

$("png-file").addEventListener("change", async (e) => {
  const file = e.target.files[0];
  if (file) await read(await dataUrl(file));
});
dropTarget($("png-drop"), async (file) => read(await dataUrl(file)));
$("png-send").addEventListener("click", () => {
  if (!info?.generate) return;
  generate.fill(info.generate);
  location.hash = "#generate/txt2img";
});
