// Drives `loracraft serve` with a third-party A1111 client, used unchanged: a1111-webui-api
// (MIT, https://github.com/EternalC0der/a1111-webui-api), as a Node bot or script would.
// Usage: node check.mjs BASE_URL OUT_DIR LORA_NAME
// Prints one JSON line describing what it did; the images it got are written to OUT_DIR.
import { writeFile } from "node:fs/promises";
import path from "node:path";
import sharp from "sharp";
import StableDiffusionApi from "a1111-webui-api";

const [baseUrl, outDir, loraName] = process.argv.slice(2);
if (!baseUrl || !outDir || !loraName) {
  console.error("usage: node check.mjs BASE_URL OUT_DIR LORA_NAME");
  process.exit(2);
}
const Api = StableDiffusionApi.default ?? StableDiffusionApi;
const api = new Api({ baseUrl, defaultSampler: "Euler", defaultStepCount: 2, timeout: 120000 });
const report = {};

const models = await api.getSdModels();
report.models = models.map((m) => m.model_name);
await api.setModel("tiny-sd15");
report.current = await api.getCurrentModel();
report.samplers = (await api.getSamplers()).map((s) => s.name);
// the client has no LoRA listing of its own: its axios instance reaches A1111's route
report.loras = (await api.api.get("/sdapi/v1/loras")).data.map((l) => l.name);

const prompt = `a lighthouse at dusk <lora:${loraName}:0.8>`;
const t2i = await api.txt2img({ prompt, negative_prompt: "blurry", seed: 77, steps: 2, cfg_scale: 5, width: 64, height: 64, sampler_name: "Euler" });
await t2i.image.toFile(path.join(outDir, "txt2img.png"));
// A1111 sends `info` as a JSON string; the client passes it on as it came
const parse = (info) => (typeof info === "string" ? JSON.parse(info) : info);
report.txt2img = { images: t2i.images.length, seed: parse(t2i.info).seed, infotexts: parse(t2i.info).infotexts?.length };

// inpaint the middle of that picture: a white square on black, as A1111's mask
const mask = sharp({ create: { width: 64, height: 64, channels: 3, background: "#000" } })
  .composite([{ input: await sharp({ create: { width: 24, height: 24, channels: 3, background: "#fff" } }).png().toBuffer(), left: 20, top: 20 }]);
const i2i = await api.img2img({
  init_images: [sharp(path.join(outDir, "txt2img.png"))], mask_image: mask, prompt: "a red door", negative_prompt: "blurry",
  seed: 5, steps: 2, cfg_scale: 5, width: 64, height: 64, denoising_strength: 0.6, inpaint_full_res: false, mask_blur: 0,
  sampler_name: "Euler",
});
await i2i.image.toFile(path.join(outDir, "inpaint.png"));
report.inpaint = { images: i2i.images.length, seed: parse(i2i.info).seed };

// png-info with the client's payload (a data URL; sharp's re-encoding drops the text chunk, so
// A1111 and we both answer with empty parameters)
const info = await api.pngInfo(sharp(path.join(outDir, "txt2img.png")));
report.pngInfo = { info: typeof info.info, status: info.response.status };
const progress = await api.getProgress();
report.progress = { progress: progress.progress, job_count: progress.state.job_count };
console.log(JSON.stringify(report));
