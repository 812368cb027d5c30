// The prompt text is the single source of truth for LoRAs: these pure functions read its
// `<lora:NAME:TE:UNET>` tags (A1111's syntax: one weight for both, `te=` / `unet=` / `dyn=` named)
// and rewrite them; panels and cards never keep a copy.

const TAG = /<(lora|lyco):([^>]+)>/g;

/** Every LoRA tag of the text: { name, te, unet, dyn, start, end, raw }. */
export function loraTags(text) {
  const tags = [];
  for (const m of text.matchAll(TAG)) {
    const positional = [];
    const named = {};
    for (const part of m[2].split(":")) {
      const eq = part.indexOf("=");
      if (eq > 0) named[part.slice(0, eq).trim()] = part.slice(eq + 1).trim();
      else positional.push(part.trim());
    }
    const name = positional[0] ?? "";
    if (!name) continue;
    const num = (v, fallback) => (v === undefined || v === "" || Number.isNaN(Number(v)) ? fallback : Number(v));
    const te = num(named.te ?? positional[1], 1);
    const unet = num(named.unet ?? positional[2], te);
    const dyn = named.dyn ?? positional[3];
    tags.push({ kind: m[1], name, te, unet, dyn: dyn === undefined ? null : dyn, start: m.index, end: m.index + m[0].length, raw: m[0] });
  }
  return tags;
}

/** A weight as A1111 writes it: at most two decimals, no trailing zeros. */
export const formatWeight = (w) => String(Number(Number(w).toFixed(2)));

/** `<lora:NAME:W>` when both strengths agree, else `<lora:NAME:TE:UNET>` (A1111's order). */
export function formatTag(name, te, unet = te, dyn = null, kind = "lora") {
  const weights = formatWeight(te) === formatWeight(unet) ? formatWeight(te) : `${formatWeight(te)}:${formatWeight(unet)}`;
  return `<${kind}:${name}:${weights}${dyn !== null && dyn !== undefined ? `:dyn=${dyn}` : ""}>`;
}

export const hasLora = (text, name) => loraTags(text).some((t) => t.name === name);

/** The text with every tag of `name` set to these strengths (the Active LoRAs sliders). */
export function setWeights(text, name, te, unet) {
  let out = "";
  let at = 0;
  for (const t of loraTags(text)) {
    if (t.name !== name) continue;
    out += text.slice(at, t.start) + formatTag(name, te, unet, t.dyn, t.kind);
    at = t.end;
  }
  return out + text.slice(at);
}

/** Removes `piece` at [start, end) with the blank (and a separating comma) before it. */
function cut(text, start, end) {
  let s = start;
  while (s > 0 && /[ \t]/.test(text[s - 1])) s--;
  if (s > 0 && text[s - 1] === "," && end === text.length) s--;
  let e = end;
  if (s === 0) while (e < text.length && /[ ,\t]/.test(text[e])) e++;
  return text.slice(0, s) + text.slice(e);
}

function removeText(text, piece) {
  if (!piece) return text;
  const i = text.indexOf(piece);
  return i < 0 ? text : cut(text, i, i + piece.length);
}

/** Appends `piece` with one blank between it and what is there. */
export function append(text, piece) {
  if (!piece) return text;
  if (!text.trim()) return piece;
  return /\s$/.test(text) ? text + piece : `${text} ${piece}`;
}

/** The text without the tags of `name` (and its activation text when given). */
export function removeLora(text, name, activation = "") {
  let tags = loraTags(text).filter((t) => t.name === name);
  while (tags.length) {
    text = cut(text, tags[0].start, tags[0].end);
    tags = loraTags(text).filter((t) => t.name === name);
  }
  return removeText(text, activation?.trim());
}

/** A card click: adds `<lora:NAME:W>` and the activation text, or removes them when present. */
export function toggleLora(text, name, weight = 1, activation = "") {
  if (hasLora(text, name)) return { text: removeLora(text, name, activation), added: false };
  let piece = formatTag(name, weight);
  if (activation?.trim() && !text.includes(activation.trim())) piece += ` ${activation.trim()}`;
  return { text: append(text, piece), added: true };
}

const escape = (s) => s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");

/** The text as HTML with each LoRA tag marked (weight 0: marked off), for the prompt's backdrop. */
export function highlight(text, words = []) {
  let html = "";
  let at = 0;
  for (const t of loraTags(text)) {
    html += markWords(text.slice(at, t.start), words);
    const off = t.te === 0 && t.unet === 0 ? " class=\"off\"" : "";
    html += `<mark${off}>${escape(t.raw)}</mark>`;
    at = t.end;
  }
  html += markWords(text.slice(at), words);
  // a trailing newline needs a line box of its own to keep the mirror's height
  return html + (text.endsWith("\n") ? " " : "");
}

/** Marks whole-word occurrences of embedding names. */
function markWords(text, words) {
  if (!words.length) return escape(text);
  const rx = new RegExp(`(^|[^\\w-])(${words.map((w) => w.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")).join("|")})(?![\\w-])`, "g");
  let html = "";
  let at = 0;
  for (const m of text.matchAll(rx)) {
    const start = m.index + m[1].length;
    html += escape(text.slice(at, start)) + `<mark class="emb">${escape(m[2])}</mark>`;
    at = start + m[2].length;
  }
  return html + escape(text.slice(at));
}

/** Sets a prompt field's text and tells every listener (highlight, panels, cards). */
export function setText(field, text) {
  if (field.value === text) return;
  field.value = text;
  field.dispatchEvent(new Event("input", { bubbles: true }));
}

/** Keeps a prompt textarea's highlighting backdrop in step with its text and scroll. */
export function attachHighlight(textarea, words = () => []) {
  const backdrop = textarea.parentElement.querySelector(".backdrop");
  const update = () => {
    backdrop.innerHTML = highlight(textarea.value, words());
    backdrop.scrollTop = textarea.scrollTop;
  };
  textarea.addEventListener("input", update);
  textarea.addEventListener("scroll", () => { backdrop.scrollTop = textarea.scrollTop; });
  update();
  return update;
}
