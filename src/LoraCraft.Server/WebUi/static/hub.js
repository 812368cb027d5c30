// Getting LoRAs from Civitai and Hugging Face, in the LoRA tab: paste a link or id (a download
// job with a progress bar; the new card appears with its preview and trigger words when done),
// search both sites and download a result, and "fetch info" (trigger words, preview) by hash for
// the whole folder or for the LoRA whose details are open. The server holds the tokens.

import * as api from "./api.js";
import * as loras from "./loras.js";
import { openDetails } from "./loradetails.js";
import { $, el, emit } from "./ui.js";


/** Follows a hub job's events (download, fetch, message, completed, failed, cancelled) to its end. */
function follow(id, on) {
  return new Promise((resolve) => {
    const source = new EventSource(api.jobEventsUrl(id));
    const end = (type, data) => { source.close(); resolve({ type, data }); };
    for (const type of ["queued", "started", "download", "fetch", "message"]) source.addEventListener(type, (e) => on[type]?.(JSON.parse(e.data)));
    for (const type of ["completed", "failed", "cancelled"]) source.addEventListener(type, (e) => end(type, JSON.parse(e.data)));
    source.onerror = () => end("failed", { message: "the connection to the server was lost" });
  });
}

const mb = (bytes) => `${(bytes / 1048576).toFixed(bytes < 10485760 ? 1 : 0)} MB`;

function status(text) { $("hub-status").textContent = text; }

/** Runs one download to its end with the progress bar; resolves with the installed LoRA's name, or null. */
async function download(urlOrId, name) {
  const bar = $("hub-progress");
  const buttons = [$("hub-get"), ...document.querySelectorAll("#hub-results button")];
  buttons.forEach((b) => { b.disabled = true; });
  bar.hidden = false;
  bar.removeAttribute("value");
  status(`Starting ${urlOrId} …`);
  const warnings = [];
  try {
    const { id } = await api.hubGet(urlOrId, name);
    const end = await follow(id, {
      queued: (d) => { if (d.position > 0) status(`Waiting: ${d.position} job${d.position > 1 ? "s" : ""} before this one …`); },
      download: (d) => {
        if (d.total) { bar.max = 1; bar.value = d.fraction ?? d.bytes / d.total; }
        status(`Downloading ${d.file}: ${mb(d.bytes)}${d.total ? ` of ${mb(d.total)}` : ""}`);
      },
      message: (d) => { if (d.warning) warnings.push(d.text); },
    });
    if (end.type !== "completed") {
      status(end.type === "cancelled" ? "Cancelled." : `Not installed: ${end.data.message}`);
      return null;
    }
    const r = end.data.result;
    bar.max = 1;
    bar.value = 1;
    status(`${r.already_present ? "Already there" : "Installed"}: ${r.name}` +
      (r.trigger_words?.length ? ` (trigger words: ${r.trigger_words.join(", ")})` : "") +
      (warnings.length ? `. Note: ${warnings.join("; ")}` : ""));
    await loras.load();
    emit("lora-installed", r.name);
    const card = document.querySelector(`#lora-cards .card[data-lora="${CSS.escape(r.name)}"]`);
    card?.classList.add("new");
    card?.scrollIntoView({ block: "nearest" });
    return r.name;
  } catch (error) {
    status(`Not installed: ${error.message}`);
    return null;
  } finally {
    buttons.forEach((b) => { b.disabled = false; });
  }
}

async function runFetchInfo(names, where) {
  where.textContent = names ? "Looking it up on Civitai …" : "Looking up every LoRA of the folder on Civitai …";
  try {
    const { id } = await api.hubFetchInfo(names, !!names);
    const end = await follow(id, { fetch: (d) => { where.textContent = `Looked up ${d.index + 1} of ${d.count}: ${d.name} (${d.status.replace("_", " ")})`; } });
    if (end.type !== "completed") { where.textContent = `Fetch info failed: ${end.data.message}`; return; }
    const r = end.data.result;
    const failed = r.results.filter((x) => x.status === "failed").map((x) => `${x.name}: ${x.error}`);
    where.textContent = names
      ? (r.found ? `Found on Civitai: ${r.results[0].model ?? ""} ${r.results[0].version ?? ""}`.trim() : r.not_found ? "Civitai does not know this file." : failed.join("; "))
      : `${r.found} found, ${r.not_found} not found on Civitai, ${r.skipped} skipped (info already there), ${r.failed} failed` +
        (failed.length ? `: ${failed.join("; ")}` : ".");
    await loras.load();
  } catch (error) {
    where.textContent = `Fetch info failed: ${error.message}`;
  }
}

function hit(h) {
  const facts = [h.site === "hf" ? "Hugging Face" : "Civitai", h.base_model, h.downloads != null ? `${h.downloads.toLocaleString("en")} downloads` : null]
    .filter(Boolean).join(" · ");
  return el("li", { dataset: { id: h.id } },
    el("div", { class: "hit" },
      el("a", { href: h.page_url, target: "_blank", rel: "noopener noreferrer" }, h.name + (h.version ? ` (${h.version})` : "")),
      el("span", { class: "hint" }, facts), el("code", {}, h.id)),
    h.installed
      ? el("span", { class: "installed" }, `installed as ${h.installed}`)
      : el("button", { type: "button", "aria-label": `Download ${h.name}`, onclick: () => download(h.id) }, "Download"));
}

async function runSearch(e) {
  e.preventDefault();
  const q = $("hub-query").value.trim();
  if (!q) return;
  const list = $("hub-results");
  $("hub-search-status").textContent = "Searching …";
  list.replaceChildren();
  try {
    const r = await api.hubSearch(q, $("hub-base").value, $("hub-site").value);
    list.replaceChildren(...r.results.map(hit));
    $("hub-search-status").textContent = `${r.results.length} result${r.results.length === 1 ? "" : "s"}` +
      (r.errors.length ? ` (${r.errors.join("; ")})` : "");
  } catch (error) {
    $("hub-search-status").textContent = error.message;
  }
}

$("hub-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const source = $("hub-source").value.trim();
  if (!source) { status("Paste a Civitai or Hugging Face link, or an id such as civitai:12345 or hf:owner/repo."); return; }
  if (await download(source, $("hub-name").value.trim())) { $("hub-source").value = ""; $("hub-name").value = ""; }
});
$("hub-search-form").addEventListener("submit", runSearch);
$("hub-fetch-all").addEventListener("click", () => runFetchInfo(null, $("hub-fetch-status")));
$("lora-fetch-info").addEventListener("click", async () => {
  const name = $("lora-dialog-title").textContent;
  await runFetchInfo([name], $("lora-fetch-status"));
  const said = $("lora-fetch-status").textContent;
  await openDetails(name); // the trigger words and preview just written
  $("lora-fetch-status").textContent = said;
});
$("lora-dialog").addEventListener("close", () => { $("lora-fetch-status").textContent = ""; });
