#!/usr/bin/env python3
"""Server overhead and LoRA switching, measured on a running `loracraft serve` (a benchmark: it
prints numbers, it asserts nothing).

    ./loracraft serve --ckpt-dir DIR --lora-dir DIR --port 7871 --dtype auto --quiet &
    tools/bench-serve.py http://127.0.0.1:7871 MODEL LORA_A LORA_B [--size 512] [--steps 4] [--runs 3]

Overhead: each run sends the same generation through A1111's /sdapi/v1/txt2img and through the
native /api/v1/generate; the native job reports the seconds GenerationService.Run took (what
`loracraft generate` runs after loading the model), so wall time / job seconds - 1 is what the
server adds (queue, JSON, base64, HTTP). Switching: native jobs alternating two LoRAs against
jobs repeating one; the difference of their job seconds is the cost of a switch.
"""
import argparse, json, os, statistics, sys, time, urllib.request

def post(base, path, body):
    req = urllib.request.Request(base + path, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=3600) as r:
        return json.load(r)

def get(base, path):
    with urllib.request.urlopen(base + path, timeout=60) as r:
        return json.load(r)

def native(base, job):
    t0 = time.perf_counter()
    jid = post(base, "/api/v1/generate", dict(job, save=False, preview_every=0))["id"]
    while True:
        s = get(base, f"/api/v1/jobs/{jid}")
        if s["state"] in ("completed", "failed", "cancelled"):
            break
        time.sleep(0.05)
    wall = time.perf_counter() - t0
    if s["state"] != "completed":
        sys.exit(f"job {jid}: {s['state']}: {s.get('error')}")
    return wall, s["result"]["seconds"]

def main():
    p = argparse.ArgumentParser()
    p.add_argument("base"); p.add_argument("model"); p.add_argument("lora_a"); p.add_argument("lora_b")
    p.add_argument("--size", type=int, default=512); p.add_argument("--steps", type=int, default=4); p.add_argument("--runs", type=int, default=3)
    a = p.parse_args()
    common = dict(steps=a.steps, width=a.size, height=a.size, seed=1)
    post(a.base, "/sdapi/v1/options", {"sd_model_checkpoint": a.model})
    # warm: model loaded, both LoRAs read once
    for lora in (a.lora_a, a.lora_b, a.lora_a):
        native(a.base, dict(common, model=a.model, prompt=f"a lighthouse <lora:{lora}:0.8>"))
    rows = []
    for i in range(a.runs):
        prompt = f"a lighthouse <lora:{a.lora_a}:0.8>"
        t0 = time.perf_counter()
        post(a.base, "/sdapi/v1/txt2img", dict(common, prompt=prompt, sampler_name="Euler", cfg_scale=7, save_images=False))
        a1111 = time.perf_counter() - t0
        wall, secs = native(a.base, dict(common, model=a.model, prompt=prompt, sampler="euler", cfg=7))
        rows.append((a1111, wall, secs))
        print(f"run {i + 1}: a1111 txt2img {a1111:.2f} s, native {wall:.2f} s wall / {secs:.2f} s in the job "
              f"(native overhead {100 * (wall / secs - 1):+.2f}%, a1111 vs job {100 * (a1111 / secs - 1):+.2f}%)", flush=True)
    med = lambda k: statistics.median(r[k] for r in rows)
    print(f"median: a1111 {med(0):.2f} s, native {med(1):.2f} s, job {med(2):.2f} s; "
          f"native overhead {100 * (med(1) / med(2) - 1):+.2f}%, a1111 vs job {100 * (med(0) / med(2) - 1):+.2f}%")
    same, switch = [], []
    for i in range(a.runs):
        job = lambda lora: dict(common, model=a.model, prompt=f"a cat <lora:{lora}:0.8>")
        native(a.base, job(a.lora_a))                     # A is applied
        same.append(native(a.base, job(a.lora_a))[1])     # A again: nothing to patch
        switch.append(native(a.base, job(a.lora_b))[1])   # A -> B: restore A's layers, patch B's
    print(f"LoRA: same as before {statistics.median(same):.2f} s, switched {statistics.median(switch):.2f} s per job "
          f"(a switch costs {statistics.median(switch) - statistics.median(same):+.2f} s); load average {os.getloadavg()[0]:.1f}")

main()
