// History: the images saved in this server's outputs folder, newest first, each one a click away
// from PNG Info or img2img.

import * as api from "./api.js";
import * as inpaint from "./inpaint.js";
import * as pnginfo from "./pnginfo.js";
import { $, el, notice } from "./ui.js";

export async function load() {
  let items = [];
  try { items = await api.outputs(60); } catch (e) { notice(e.message); }
  $("history-empty").hidden = items.length > 0;
  $("history-list").replaceChildren(...items.map((o) => el("figure", { role: "listitem" },
    el("a", { href: o.url, target: "_blank", rel: "noopener" }, el("img", { src: o.url, alt: `Saved image ${o.path}`, loading: "lazy" })),
    el("figcaption", {}, `${o.path} · ${new Date(o.created).toLocaleString()}`),
    el("div", { class: "row" },
      el("button", { type: "button", "aria-label": `PNG Info of ${o.path}`, onclick: () => { location.hash = "#pnginfo"; pnginfo.read(o.url); } }, "PNG Info"),
      el("button", { type: "button", "aria-label": `Send ${o.path} to img2img`, onclick: async () => {
        try { await inpaint.setImage(o.url); location.hash = "#generate/img2img"; } catch (e) { notice(e.message); }
      } }, "img2img"),
      el("a", { class: "button", href: o.url, download: o.path.split("/").pop(), "aria-label": `Download ${o.path}` }, "Download")))));
}

$("history-refresh").addEventListener("click", load);
document.addEventListener("loracraft:generated", () => { if (!$("screen-history").hidden) load(); });
