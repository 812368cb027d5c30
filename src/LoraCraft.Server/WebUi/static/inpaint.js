// The init image of img2img and inpaint, and the inpaint mask painted over it: a brush (size
// slider), an eraser, clear and invert. The mask canvas has the image's own size; painted pixels
// become white in the mask sent to the server (white = regenerate, as A1111 and ComfyUI take it).

import { $, dataUrl, dropTarget, fetchDataUrl, loadImage, notice } from "./ui.js";

const image = $("image-canvas");
const mask = $("mask-canvas");
const paint = mask.getContext("2d");
let source = null; // the init image's original bytes as a data: URL (sent as is, never re-encoded)
let painted = false;
let erasing = false;
let onImage = () => {};
let mode = "txt2img";

/** Whether an init image is loaded, its size, its data: URL. */
export const hasImage = () => source !== null;
export const imageSize = () => ({ width: image.width, height: image.height });
export const imageDataUrl = () => source;
export const hasMask = () => painted;

/** Called with (width, height) whenever a new image is loaded. */
export function onImageLoaded(handler) { onImage = handler; }

/** Shows the mask tools (inpaint) or only the image (img2img). */
export function setMode(m) {
  mode = m;
  const inpaint = mode === "inpaint";
  $("mask-tools").hidden = !inpaint;
  image.hidden = !source;
  mask.hidden = !inpaint || !source;
  $("image-legend").textContent = inpaint ? "Image and mask" : "Init image";
}

/** Loads an image from a URL (a result, a saved output) or a data: URL. */
export async function setImage(url) {
  const bytes = url.startsWith("data:") ? url : await fetchDataUrl(url);
  const img = await loadImage(bytes);
  source = bytes;
  for (const c of [image, mask]) { c.width = img.naturalWidth; c.height = img.naturalHeight; }
  image.getContext("2d").drawImage(img, 0, 0);
  clear();
  const brush = $("brush-size");
  brush.max = String(Math.max(8, Math.max(img.naturalWidth, img.naturalHeight)));
  if (Number(brush.value) > Number(brush.max)) brush.value = brush.max;
  $("brush-size-value").value = brush.value;
  $("image-empty").hidden = true;
  setMode(mode);
  onImage(img.naturalWidth, img.naturalHeight);
}

async function loadFile(file) {
  try { await setImage(await dataUrl(file)); } catch (e) { notice(`${file.name}: ${e.message}`); }
}

export function clear() {
  paint.clearRect(0, 0, mask.width, mask.height);
  painted = false;
}

/** Painted becomes unpainted and the other way round. */
export function invert() {
  const data = paint.getImageData(0, 0, mask.width, mask.height);
  const px = data.data;
  for (let i = 0; i < px.length; i += 4) {
    const on = px[i + 3] < 128;
    px[i] = 230; px[i + 1] = 20; px[i + 2] = 90; px[i + 3] = on ? 255 : 0;
  }
  paint.putImageData(data, 0, 0);
  painted = true;
}

/** The mask as a black-and-white PNG data: URL of the image's size. */
export function maskDataUrl() {
  const out = document.createElement("canvas");
  out.width = mask.width; out.height = mask.height;
  const ctx = out.getContext("2d");
  const data = paint.getImageData(0, 0, mask.width, mask.height);
  const px = data.data;
  for (let i = 0; i < px.length; i += 4) {
    const v = px[i + 3] >= 128 ? 255 : 0;
    px[i] = v; px[i + 1] = v; px[i + 2] = v; px[i + 3] = 255;
  }
  ctx.putImageData(data, 0, 0);
  return out.toDataURL("image/png");
}

function point(e) {
  const r = mask.getBoundingClientRect();
  return { x: (e.clientX - r.left) * (mask.width / r.width), y: (e.clientY - r.top) * (mask.height / r.height) };
}

let last = null;
function stroke(from, to) {
  paint.globalCompositeOperation = erasing ? "destination-out" : "source-over";
  paint.strokeStyle = paint.fillStyle = "rgb(230, 20, 90)";
  paint.lineWidth = Number($("brush-size").value);
  paint.lineCap = paint.lineJoin = "round";
  paint.beginPath();
  paint.moveTo(from.x, from.y);
  paint.lineTo(to.x + 0.01, to.y);
  paint.stroke();
  if (!erasing) painted = true;
}

mask.addEventListener("pointerdown", (e) => {
  if (!source) return;
  mask.setPointerCapture(e.pointerId);
  last = point(e);
  stroke(last, last);
});
mask.addEventListener("pointermove", (e) => {
  if (!last) return;
  const p = point(e);
  stroke(last, p);
  last = p;
});
for (const type of ["pointerup", "pointercancel"]) mask.addEventListener(type, () => { last = null; });

function setTool(eraser) {
  erasing = eraser;
  $("tool-brush").setAttribute("aria-pressed", String(!eraser));
  $("tool-eraser").setAttribute("aria-pressed", String(eraser));
}

$("tool-brush").addEventListener("click", () => setTool(false));
$("tool-eraser").addEventListener("click", () => setTool(true));
$("mask-clear").addEventListener("click", clear);
$("mask-invert").addEventListener("click", invert);
$("brush-size").addEventListener("input", (e) => { $("brush-size-value").value = e.target.value; });
$("denoise").addEventListener("input", (e) => { $("denoise-value").value = Number(e.target.value).toFixed(2); });
$("init-file").addEventListener("change", (e) => { if (e.target.files[0]) loadFile(e.target.files[0]); });
dropTarget($("mask-editor"), loadFile);
