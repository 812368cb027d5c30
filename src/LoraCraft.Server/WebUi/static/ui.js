// Small DOM helpers shared by the screens, and the few facts they share (the checkpoint list).

export const $ = (id) => document.getElementById(id);

/** Creates an element: el("button", { type: "button", class: "x", onclick }, "text", child …). */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") node.addEventListener(key.slice(2), value);
    else if (key === "class") node.className = value;
    else if (key === "dataset") Object.assign(node.dataset, value);
    else if (value === true) node.setAttribute(key, "");
    else node.setAttribute(key, String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

/** Shows a one-line problem at the top of the page (the server's message as is). */
export function notice(message) {
  const box = $("notice");
  if (!message) { box.hidden = true; box.textContent = ""; return; }
  box.textContent = message;
  box.hidden = false;
}

/** Events between screens: "model" (checkpoint chosen), "loras" (LoRA list reloaded). */
const bus = new EventTarget();
export const emit = (type, detail) => bus.dispatchEvent(new CustomEvent(type, { detail }));
export const on = (type, handler) => bus.addEventListener(type, (e) => handler(e.detail));

/** The checkpoints as the API lists them (api.models); filled by app.js. */
export const checkpoints = { list: [] };

/** The chosen checkpoint's entry (name, family …), or null. */
export function currentCheckpoint() {
  const name = $("model").value;
  return checkpoints.list.find((m) => m.name === name) ?? null;
}

/** A file or blob as a data: URL. */
export const dataUrl = (blob) => new Promise((resolve, reject) => {
  const reader = new FileReader();
  reader.onload = () => resolve(reader.result);
  reader.onerror = () => reject(reader.error ?? new Error("cannot read the file"));
  reader.readAsDataURL(blob);
});

/** An image URL (same origin) as a data: URL of its bytes, unchanged. */
export async function fetchDataUrl(url) {
  const response = await fetch(url);
  if (!response.ok) throw new Error(`cannot load ${url}: HTTP ${response.status}`);
  return dataUrl(await response.blob());
}

/** Loads an image element from a URL. */
export const loadImage = (src) => new Promise((resolve, reject) => {
  const img = new Image();
  img.onload = () => resolve(img);
  img.onerror = () => reject(new Error("the image cannot be decoded"));
  img.src = src;
});

/** Seconds as "3.2 s" or "1 min 05 s". */
export function duration(seconds) {
  if (seconds === null || seconds === undefined || !Number.isFinite(seconds)) return "–";
  if (seconds < 60) return `${seconds.toFixed(seconds < 10 ? 1 : 0)} s`;
  const m = Math.floor(seconds / 60);
  return `${m} min ${String(Math.round(seconds % 60)).padStart(2, "0")} s`;
}

/** Lets a drop zone take image files. */
export function dropTarget(node, handle) {
  node.addEventListener("dragover", (e) => { e.preventDefault(); node.classList.add("over"); });
  node.addEventListener("dragleave", () => node.classList.remove("over"));
  node.addEventListener("drop", (e) => {
    e.preventDefault();
    node.classList.remove("over");
    const file = [...(e.dataTransfer?.files ?? [])].find((f) => f.type.startsWith("image/"));
    if (file) handle(file);
  });
}
