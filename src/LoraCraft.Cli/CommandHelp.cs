namespace LoraCraft.Cli;

/// <summary>`loracraft COMMAND --help`: the options of one command.</summary>
public static class CommandHelp
{
    public static string? For(string command) => command switch
    {
        "generate" => $$"""
            loracraft generate --model PATH --prompt TEXT --out FILE.png [options]
            loracraft generate --demo --out FILE.png          (tiny RANDOM model + LoRA, no download)

              --model PATH            .safetensors checkpoint or diffusers folder
              --config DIR            diffusers-style config folder for a single file
              --tokenizer DIR         CLIP vocab.json + merges.txt (else config, HF cache)
              --prompt TEXT           with <lora:NAME:W> / <lora:NAME:TE:UNET> tags; A1111's language:
                                      (x) (x:1.3) [x] \( BREAK [from:to:when] [a|b] AND ... :W
              --negative TEXT
              --prompt-style a1111|comfy   a1111 (default) or ComfyUI's CLIPTextEncode weighting
              --old-scheduling        A1111's old prompt-editing timelines
              --embeddings-dir DIR    textual inversions named in prompts (./models/embeddings)
              --seed N                0 ... 2^64-1; -1 or omitted: random (printed); image i of a batch: N + i
              --noise cpu|nv          cpu (default) or A1111's NV (Philox: CUDA's randn on any machine)
              --noise-convention comfy|a1111   how the seed drives the noise (nv, subseed: a1111)
              --subseed N --subseed-strength F   A1111's variation seed
              --steps N (20)  --cfg F (7)
              --sampler NAME          {{string.Join(", ", Sampling.SamplerRegistry.SamplerIds)}}
                                      (default euler_ancestral), or A1111 names: "Euler a", "DPM++ 2M Karras", ...
              --scheduler NAME        {{string.Join(", ", Sampling.SamplerRegistry.SchedulerIds)}}
              --width W --height H    multiples of 8 up to 16384 (512; SDXL 1024; SD2-v 768; img2img: the image's)
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
              --memory-limit SIZE     e.g. 8G: refuse (or tile) what would need more memory than that
              --quiet                 no progress bar
            """,
        "bench" => """
            loracraft bench [--family sd15|sdxl] [--width W --height H] [--steps N (4)]
                            [--dtype fp32|bf16|auto] [--lora-rank R (32, 0 = none)] [--threads N]
                            [--cache DIR] [--size full|tiny] [--json]
            Builds (once) a full-size RANDOM checkpoint and reports load, text, per-step (median after
            one warm-up step), VAE decode, peak RSS and LoRA apply/switch times, and a step's GFLOP as a
            share of this machine's matrix-multiply rate (measured with a 2048³ product).
            --train [--no-gradient-checkpointing]: LoRA training steps instead (rank --lora-rank, 16; --steps, 3;
            one random image, latents cached), per-step time and peak RSS next to one cfg sampling step's UNet pass.
            """,
        "serve" => """
            loracraft serve [--demo] [--host H (127.0.0.1)] [--port N (7860)] [--ckpt-dir DIR] [--lora-dir DIR]
                            [--embeddings-dir DIR] [--outputs DIR (outputs)] [--data-dir DIR (user)]
                            [--dtype fp32|bf16|auto] [--threads N] [--device cpu|cuda|auto]
                            [--queue-limit N (64)] [--max-models N (1)] [--max-body-mb N (50)]
                            [--api-auth USER:PASS[,USER:PASS]] [--cors-allow-origin ORIGIN[,ORIGIN]]
                            [--comfy-frontend DIR] [--civitai-url URL] [--hf-url URL] [--allow-url-downloads]
                            [--train-dir DIR (DATA-DIR/train)] [--queue redis://...] [--quiet]
            The web UI at /, the native API at /api/v1 (OpenAPI: /openapi/v1.json), AUTOMATIC1111's API at
            /sdapi/v1, ComfyUI's API at / and /api (websocket /ws); with --comfy-frontend, ComfyUI's editor
            at /comfy/. --demo serves tiny random models and LoRAs (offline). Ctrl-C stops it.
            LoRA downloads (/api/v1/lora/get, the LoRA tab) go to --civitai-url / --hf-url (default: the sites)
            with the tokens in CIVITAI_TOKEN / HF_TOKEN; plain URLs only with --allow-url-downloads.
            Folders default to ./models/Stable-diffusion (or ./models/checkpoints), ./models/Lora,
            ./models/embeddings; training data (the Train tab, /api/v1/train) comes from --train-dir.
              --queue redis://[[USER]:PASSWORD@]HOST:PORT[/DB][?ssl=true&prefix=NAME]   (rediss:// = TLS)
                                      generations from every API go to Redis; 'loracraft worker' processes
                                      (any number, any machine) run them. Without it: this process runs them.
                                      Keep Redis private (bind to a private network, set a password).
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
            loracraft lora get URL_OR_ID [--dir DIR] [--name NAME] [--force] [--json] [--quiet]
            loracraft lora fetch-info [--dir DIR] [--force] [--json]
            loracraft lora search QUERY [--base sd1|sd2|sdxl] [--source civitai|hf] [--limit N (20)] [--json]

              --dir DIR            the LoRA folder (./models/Lora)
              URL_OR_ID            civitai:VERSION_ID, a Civitai page (civitai.com/models/ID[?modelVersionId=V]),
                                   hf:OWNER/REPO[/FILE][@REV], a Hugging Face repo or resolve URL, or an https
                                   URL to a .safetensors; pickles (.ckpt/.pt/.bin) are refused
              --name NAME          save as NAME.safetensors (default: the site's file name)
              --force              get: replace a different file of that name; fetch-info: look up
                                   files that have a NAME.civitai.info already
              --token TOKEN        API token for the site (else CIVITAI_TOKEN / HF_TOKEN); sent as an
                                   Authorization header to that site only, never printed
              --civitai-url URL    Civitai or a mirror (https://civitai.com)
              --hf-url URL         Hugging Face or a mirror (HF_ENDPOINT, else https://huggingface.co)
            get writes NAME.civitai.info (Civitai) or NAME.json (Hugging Face card) and NAME.preview.png;
            an interrupted download resumes on the next run.
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
        "prompt" => """
            loracraft prompt schedule --steps N [--old-scheduling] [--hires-steps N] [--json] TEXT
            loracraft prompt and [--json] TEXT
              schedule: A1111's prompt-editing schedule, [[end_step, text], ...] (text as A1111 returns it)
              and:      the AND parts with their weights, [[text, weight], ...]
              TEXT may follow --.
            """,
        "embeddings" => "loracraft embeddings list [--dir DIR] [--json]\n  Textual-inversion files under DIR (./models/embeddings): vectors, width, family; pickles are listed as refused.",
        "debug" => """
            loracraft debug encode --model PATH [--config DIR] [--tokenizer DIR] [--embeddings-dir DIR] [--clip-skip N]
                                   [--prompt-style a1111|comfy] [--dtype fp32|bf16] --prompt TEXT --out FILE.safetensors
              tensor 'context' [1, 77 x chunks, width] (and 'pooled' for SDXL), float32; LoRA tags are removed,
              AND and prompt editing are not interpreted (see 'prompt schedule')
            loracraft debug noise --seed S --shape 1,4,64,64 [--noise cpu|nv] [--draws K] --out FILE.safetensors
              tensors noise.0 ... noise.K-1: successive draws of one generator seeded with S
            loracraft debug unet --model PATH [--config DIR] [--tokenizer DIR] [--lora FILE:MULT]...
                                 --inputs IN.safetensors --timestep T --out OUT.safetensors
                                 [--lora-mode merge|bypass] [--dtype fp32|bf16] [--device cpu|cuda]
            One UNet call: IN holds 'sample' and 'context' (and 'y' for SDXL); OUT gets 'eps' in float32.
            LoRAs apply to the UNet only, at MULT. float32 unless --dtype says otherwise.
            """,
        "train" => """
            loracraft train --model CKPT --train-data-dir DIR --output-dir DIR [--output-name NAME] [options]
            kohya-ss train_network.py flags, with dashes or underscores (--train_data_dir); also
            --pretrained-model-name-or-path for --model. Defaults are kohya's unless marked *.

            model      --model CKPT  --config DIR  --tokenizer DIR  --v-parameterization  --device cpu|cuda  --threads N
            data       --train-data-dir DIR        subfolders N_class tokens (N repeats); or a flat folder with
                       --repeats N *               (images directly inside)
                       --reg-data-dir DIR  --prior-loss-weight F (1)
                       --dataset-config FILE.toml  kohya [general]/[[datasets]]/[[datasets.subsets]]
                       --resolution W[,H] (512)  --train-batch-size N (1)
                       --enable-bucket  --min-bucket-reso (256)  --max-bucket-reso (1024)  --bucket-reso-steps (64)
                       --bucket-no-upscale  --flip-aug
                       --caption-extension EXT     * default: .caption, else .txt (kohya: .caption only)
                       --shuffle-caption  --keep-tokens N  --keep-tokens-separator S
                       --caption-dropout-rate F  --caption-tag-dropout-rate F
                       --cache-latents  --cache-latents-to-disk (IMAGE.loracraft-latents.safetensors)
            network    --network-module networks.lora  --network-dim N (4)  --network-alpha F (1)
                       --conv-dim N  --conv-alpha F (1)  (or --network-args conv_dim=N conv_alpha=F
                       rank_dropout=P module_dropout=P)  --network-dropout P
                       --network-train-unet-only  --network-train-text-encoder-only
            optimizer  --optimizer-type AdamW|AdamW8bit (AdamW; --use-8bit-adam)  --optimizer-args weight_decay=0.01 ...
                       --learning-rate F (* 1e-4)  --unet-lr F  --text-encoder-lr F (0 leaves it out)
                       --lr-scheduler constant|constant_with_warmup|linear|cosine|cosine_with_restarts|polynomial
                       --lr-warmup-steps N|FRACTION  --lr-scheduler-num-cycles N  --lr-scheduler-power F
                       --max-train-steps N (1600)  --max-train-epochs N  --gradient-accumulation-steps N (1)
                       --max-grad-norm F (1; 0 = off)  --seed N (random, printed)
            memory     --mixed-precision no|bf16 (no)  --gradient-checkpointing
            diffusion  --noise-offset F  --min-snr-gamma F  --loss-type l2|l1|huber|smooth_l1
                       --huber-schedule snr|exponential|constant  --huber-c F (0.1)  --huber-scale F (1)
                       --clip-skip N (1)  --max-token-length 75|150|225
            output     --output-dir DIR  --output-name NAME (last)  --save-precision float|fp16|bf16 (float)
                       --save-every-n-epochs N  --save-every-n-steps N  --save-last-n-epochs N
                       --save-state  --resume STATE_DIR  --training-comment TEXT  --no-metadata
                       --save-model-as safetensors (the only format written)
            samples    --sample-prompts FILE.txt (kohya: PROMPT --n NEG --w W --h H --d SEED --s STEPS --l CFG --ss SAMPLER)
                       --sample-every-n-steps N  --sample-every-n-epochs N  --sample-at-first  --sample-sampler NAME (ddim)
            watching   progress bar on stderr (--quiet: warnings only); OUTPUT/NAME_loss.csv and NAME_loss.png
                       (--chart-every N steps *, 10); Ctrl-C saves NAME-stepNNNNNNNN-state to resume from
            Accepted and ignored: --v2 (the family is read from the file) --xformers --sdpa --mem-eff-attn --lowram --highvram --persistent-data-loader-workers
            --max-data-loader-n-workers --logging-dir --log-with --log-prefix --log-tracker-name
            """,
        "worker" => """
            loracraft worker --queue redis://... [--ckpt-dir DIR] [--lora-dir DIR] [--embeddings-dir DIR] [--name NAME]
                             [--dtype fp32|bf16] [--threads N] [--device cpu|cuda] [--max-models N]
                             [--claim-timeout S] [--max-wait S] [--max-jobs N]
              Takes the jobs of a 'loracraft serve --queue' front end from Redis and runs them until Ctrl-C.
              --name NAME             this worker's name in the consumer group (HOST-PID)
              --claim-timeout S (30)  a job whose worker sent no heartbeat for S seconds is run again by another
              --max-wait S (60)       affinity's bound: a worker prefers jobs for the checkpoint and LoRA set it
                                      has loaded, but takes the oldest job once it waited S seconds (0: oldest first)
              --max-jobs N            stop after N jobs (tests, batch runs)
              The folders must hold the front end's checkpoints and LoRAs under the same names.
            """,
        "tokenize" => "loracraft tokenize --tokenizer DIR [--json] TEXT\n  CLIP ids, start and end tokens included, no padding.",
        "tokenizer" => "loracraft tokenizer download [--to DIR] [--base-url URL]\n  Fetches openai/clip-vit-large-patch14's vocab.json and merges.txt (default: the Hugging Face cache).",
        "inspect" => "loracraft inspect FILE [--json]\n  Tensors, parameters, dtypes, metadata and (for a checkpoint) family and inpainting.",
        "png-info" => "loracraft png-info FILE\n  The A1111 'parameters' text stored in a PNG.",
        _ => null,
    };
}
