namespace LoraCraft.Cli;

/// <summary>`loracraft COMMAND --help`: the options of one command.</summary>
public static class CommandHelp
{
    public static string? For(string command) => command switch
    {
        "generate" => """
            loracraft generate --model PATH --prompt TEXT --out FILE.png [options]
            loracraft generate --demo --out FILE.png          (tiny RANDOM model + LoRA, no download)

              --model PATH            .safetensors checkpoint or diffusers folder
              --config DIR            diffusers-style config folder for a single file
              --tokenizer DIR         CLIP vocab.json + merges.txt (else config, HF cache)
              --prompt TEXT           with <lora:NAME:W> / <lora:NAME:TE:UNET> tags
              --negative TEXT
              --seed N                random when omitted (printed); image i of a batch: N + i
              --steps N (20)  --cfg F (7)
              --sampler NAME          euler_ancestral (default), euler, heun, dpm_2, dpm_2_ancestral,
                                      lms, dpmpp_2s_ancestral, dpmpp_2m, ddim, uni_pc, uni_pc_bh2,
                                      or A1111 names: "Euler a", "DPM++ 2M Karras", ...
              --scheduler NAME        normal, karras, exponential, sgm_uniform, simple, ddim_uniform
              --width W --height H    multiples of 8 (512; SDXL 1024; SD2-v 768)
              --clip-skip N (1)
              --init-image PNG --denoise F (0.75)          img2img
              --mask PNG              inpainting, white = repaint
              --inpaint-crop [--crop-context PX] [--crop-size PX]   crop-and-stitch inpainting
              --lora FILE_OR_NAME[:UNET[:TE]]   repeatable (ComfyUI LoraLoader strengths; a strength
                                      may be keyframes, 0@0,1@0.5)
              --lora-dir DIR          where <lora:NAME> is looked up (./models/Lora)
              --lora-mode auto|merge|bypass   merge into the weights, or run beside them (auto:
                                      bypass only for LoRAs whose strength changes per step)
              --batch-count N (1)     FILE-1.png, FILE-2.png, ...
              --save-latent FILE      final latent as safetensors (tensor 'latent')
              --from-png FILE         rerun the parameters stored in a PNG
              --prediction eps|v      override (SD2-768 single files)
              --dtype fp32|bf16|auto  --threads N  --device cpu|cuda|auto  --vae-tiling auto|on|off
              --quiet                 no progress bar
            """,
        "bench" => """
            loracraft bench [--family sd15|sdxl] [--width W --height H] [--steps N (4)]
                            [--dtype fp32|bf16|auto] [--lora-rank R (32, 0 = none)] [--threads N]
                            [--cache DIR] [--size full|tiny] [--json]
            Builds (once) a full-size RANDOM checkpoint and reports load, text, per-step, VAE decode,
            peak RSS and LoRA apply/switch times.
            """,
        "make-model" => """
            loracraft make-model --family sd15|sd15-inpaint|sd2|sdxl --size full|tiny [--seed N] --out FILE
            A RANDOM-weight checkpoint in the original layout (fp16); tiny also writes FILE.config/.
            """,
        "make-lora" => """
            loracraft make-lora --model CKPT [--config DIR] [--tokenizer DIR] --rank R [--alpha A]
                                [--seed N] [--targets attention|all] --out FILE.safetensors
            A RANDOM kohya-format LoRA for that model (demos and benchmarks).
            """,
        "lora" => """
            loracraft lora list [--dir DIR] [--json]
            loracraft lora info FILE|NAME [--dir DIR] [--json]
            loracraft lora check FILE|NAME --model CKPT [--config DIR] [--tokenizer DIR] [--json]
            loracraft lora merge-into --model CKPT --lora FILE[:UNET[:TE]]... [--te-strength X]
                                      [--dtype fp16|bf16|fp32] --out NEW.safetensors [--force]
                a checkpoint with the LoRAs baked in (same keys, layout and, unless --dtype, types)
            loracraft lora extract --base CKPT0 --tuned CKPT1 --rank R [--conv-rank R]
                                   [--sv-ratio X | --sv-fro X | --sv-cumulative X] [--clamp-quantile 0.99]
                                   [--min-diff 0.01] [--dtype fp32|fp16|bf16] --out LORA [--force]
                kohya's extract_lora_from_models: SVD of tuned - base per layer
            loracraft lora resize IN (--new-rank R | --dynamic-method sv_fro|sv_ratio|sv_cumulative
                                  --dynamic-param P [--new-rank MAX]) [--new-conv-rank R] [--verbose]
                                  [--dtype ...] --out OUT [--force]
                kohya's resize_lora, with the Frobenius norm kept per module (--verbose) and on average
            loracraft lora merge A[:W] B[:W]... (--concat | --svd-rank R) [--dtype fp16|bf16|fp32] --out C [--force]
                several LoRAs into one: concat is exact (ranks add), SVD re-factors to rank R
            loracraft lora convert IN --to kohya|peft [--model CKPT | --family sd1|sd2|sdxl] --out OUT [--force]
                peft/diffusers <-> kohya names (SDXL diffusers <-> SGM too), alphas kept
            loracraft lora bake-blocks IN --blocks SPEC [--elements RULES] [--model CKPT | --family F] --out OUT [--force]
                block weights made permanent; SPEC as lbw= in prompt tags (ALL, MIDD, 17/26/12/20 values)
            """,
        "debug" => """
            loracraft debug unet --model PATH [--config DIR] [--tokenizer DIR] [--lora FILE:MULT]...
                                 --inputs IN.safetensors --timestep T --out OUT.safetensors
                                 [--lora-mode merge|bypass] [--dtype fp32|bf16] [--device cpu|cuda]
            One UNet call: IN holds 'sample' and 'context' (and 'y' for SDXL); OUT gets 'eps' in float32.
            LoRAs apply to the UNet only, at MULT. float32 unless --dtype says otherwise.
            """,
        "tokenize" => "loracraft tokenize --tokenizer DIR [--json] TEXT\n  CLIP ids, start and end tokens included, no padding.",
        "tokenizer" => "loracraft tokenizer download [--to DIR] [--base-url URL]\n  Fetches openai/clip-vit-large-patch14's vocab.json and merges.txt (default: the Hugging Face cache).",
        "inspect" => "loracraft inspect FILE [--json]\n  Tensors, parameters, dtypes, metadata and (for a checkpoint) family and inpainting.",
        "png-info" => "loracraft png-info FILE\n  The A1111 'parameters' text stored in a PNG.",
        _ => null,
    };
}
