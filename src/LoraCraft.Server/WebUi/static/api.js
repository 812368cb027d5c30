// The native API (/api/v1), and the only module that knows its URLs. Every call returns parsed
// JSON or throws an Error whose message is the server's one-line explanation.

const base = "/api/v1";

async function call(method, path, body) {
  const init = { method, headers: {} };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch(base + path, init);
  const text = await response.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = null; }
  if (!response.ok) {
    const message = data?.error?.message ?? `${method} ${path}: HTTP ${response.status}`;
    const error = new Error(message);
    error.status = response.status;
    error.field = data?.error?.field;
    throw error;
  }
  return data;
}

const enc = encodeURIComponent;

export const models = () => call("GET", "/models");
export const refreshModels = () => call("POST", "/models/refresh");
export const samplers = () => call("GET", "/samplers");
export const schedulers = () => call("GET", "/schedulers");
export const loras = () => call("GET", "/loras");
export const refreshLoras = () => call("POST", "/loras/refresh");
export const lora = (name) => call("GET", `/loras/${enc(name)}`);
export const saveUserMetadata = (name, fields) => call("PUT", `/loras/${enc(name)}/user-metadata`, fields);
export const coverage = (name, model) => call("GET", `/loras/${enc(name)}/coverage` + (model ? `?model=${enc(model)}` : ""));
export const embeddings = () => call("GET", "/embeddings");
export const outputs = (limit = 100) => call("GET", `/outputs?limit=${limit}`);
export const pngInfo = (dataUrl) => call("POST", "/png-info", { image: dataUrl });
export const status = () => call("GET", "/status");

/** Queues a generation (the native request, snake_case); resolves to { id, state, position }. */
export const generate = (request) => call("POST", "/generate", request);
export const job = (id) => call("GET", `/jobs/${enc(id)}`);
export const interrupt = (id) => call("POST", `/jobs/${enc(id)}/interrupt`);
export const skip = (id) => call("POST", `/jobs/${enc(id)}/skip`);
export const cancel = (id) => call("POST", `/jobs/${enc(id)}/cancel`);
export const jobs = () => call("GET", "/jobs");

/** Training: the dataset folders of the server's training-data root, and a run (resolves to { id }). */
export const trainDatasets = () => call("GET", "/train/datasets");
export const train = (request) => call("POST", "/train", request);
/** A LoRA tool (merge-into, extract, resize, merge, convert, bake-blocks) as a job: resolves to { id }. */
export const loraTool = (tool, request) => call("POST", `/lora/tools/${enc(tool)}`, request);

/**
 * Follows a job's Server-Sent Events until it ends. `on` maps event names (queued, started, phase,
 * step, message, image, completed, failed, cancelled, or a job kind's own) to handlers of the parsed data. Resolves with
 * the final event's name and data. `stop()` on the returned promise closes the stream.
 */
export function follow(id, on = {}) {
  let source, finished = false;
  const done = new Promise((resolve) => {
    source = new EventSource(`${base}/jobs/${enc(id)}/events`);
    const finals = new Set(["completed", "failed", "cancelled"]);
    // the standard events, and any other a caller handles (training's train_step, train_chart …)
    for (const type of new Set(["queued", "started", "phase", "step", "message", "image", "completed", "failed", "cancelled", ...Object.keys(on)])) {
      source.addEventListener(type, (e) => {
        const data = JSON.parse(e.data);
        on[type]?.(data);
        if (finals.has(type)) {
          finished = true;
          source.close(); // the stream ends here; EventSource would otherwise reconnect and replay
          resolve({ type, data });
        }
      });
    }
    // a dropped stream: ask for the job's state once instead of reconnecting
    source.onerror = async () => {
      if (finished) return;
      finished = true;
      source.close();
      try {
        const s = await job(id);
        if (s.state === "completed") { on.completed?.(s); resolve({ type: "completed", data: s }); }
        else if (s.state === "failed") { const f = { id, ...s.error }; on.failed?.(f); resolve({ type: "failed", data: f }); }
        else if (s.state === "cancelled") { on.cancelled?.({ id }); resolve({ type: "cancelled", data: { id } }); }
        else setTimeout(() => follow(id, on).then(resolve), 500);
      } catch (error) {
        const f = { id, message: error.message };
        on.failed?.(f);
        resolve({ type: "failed", data: f });
      }
    };
  });
  done.stop = () => { finished = true; source?.close(); };
  return done;
}

/** Runs one generation to its end: resolves with the completed job status (images with infotext). */
export async function run(request, on = {}) {
  const { id } = await generate(request);
  on.submitted?.(id);
  const end = await follow(id, on);
  if (end.type === "failed") throw new Error(end.data.message ?? "the job failed");
  if (end.type === "cancelled") throw new Error("cancelled");
  return end.data;
}

// Getting LoRAs from Civitai / Hugging Face (hub.js): get and fetch-info are jobs, followed by their events.
export const hubGet = (urlOrId, name, force) => call("POST", "/lora/get", { url_or_id: urlOrId, name: name || null, force: !!force });
export const hubFetchInfo = (names, force) => call("POST", "/lora/fetch-info", { names: names ?? null, force: !!force });
export const hubSearch = (q, base, source) =>
  call("GET", `/lora/search?q=${enc(q)}${base ? `&base=${enc(base)}` : ""}${source ? `&source=${enc(source)}` : ""}`);
export const jobEventsUrl = (id) => `${base}/jobs/${enc(id)}/events`;
