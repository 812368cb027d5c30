using LoraCraft;
using LoraCraft.Cli;

return Cli.Run(args);

namespace LoraCraft.Cli
{
    public static class Cli
    {
        public const string Usage = """
            loracraft — Stable Diffusion with LoRA at its centre

            Usage: loracraft COMMAND [options]

            Commands:
              tokenize --tokenizer DIR [--json] TEXT   CLIP token ids of TEXT (start/end included)
              inspect FILE [--json]                    summary of a safetensors file
              tokenizer download [--to DIR] [--base-url URL]   fetch the CLIP vocabulary (default: HF cache)
              serve [--demo] [--host H] [--port N] [--ckpt-dir DIR] [--lora-dir DIR] [--api-auth U:P] ...
                                                       the web server: web UI, native, A1111 and ComfyUI APIs
                                                       (--queue redis://HOST:PORT: generations on workers)
              worker --queue redis://HOST:PORT --ckpt-dir DIR --lora-dir DIR [--name N] ...
                                                       runs the jobs of a 'serve --queue' front end
              generate --model PATH --prompt TEXT --out FILE.png [options]
                                                       txt2img / img2img / inpainting (see README)
              png-info FILE                            generation parameters stored in a PNG
              bench [--family sd15|sdxl] [--width W --height H] [--steps N] [--dtype fp32|bf16|auto]
                    [--lora-rank R] [--threads N] [--json]
                                                       timings and peak memory on a full-size random model
              make-model --family sd15|sd15-inpaint|sd2|sdxl --size full|tiny [--seed N] --out FILE
                                                       RANDOM-weight checkpoint (fp16, original layout) for
                                                       demos/benchmarks; tiny also writes FILE's config
                                                       folder (FILE without extension + .config)
              lora list [--dir DIR] [--json]           LoRA files under DIR (default ./models/Lora): family,
                                                       rank, alpha, modules, hash, trigger words (headers only)
              lora info FILE|NAME [--dir DIR] [--json] all of the above plus metadata and top training tags
              lora check FILE|NAME --model PATH [--config DIR] [--tokenizer DIR] [--json]
                                                       which LoRA keys map onto the model, per component
              lora get URL_OR_ID [--dir DIR] [--name NAME]
                                                       download a LoRA from Civitai, Hugging Face or a URL,
                                                       with its trigger words and preview (lora --help)
              lora fetch-info [--dir DIR]              look up the folder's LoRAs on Civitai by hash
              lora search QUERY [--base sd1|sdxl] [--source civitai|hf]
                                                       LoRAs on Civitai and Hugging Face, with ids for get
              lora merge-into|extract|resize|merge|convert|bake-blocks …
                                                       LoRA tools: bake into a checkpoint, extract from two,
                                                       change rank, join, rename, bake block weights
                                                       (see 'loracraft lora --help')
              make-lora --model PATH [--config DIR] [--tokenizer DIR] --rank R [--alpha A] [--seed N]
                        [--targets attention|all] --out FILE.safetensors
                                                       RANDOM-weight kohya LoRA for that model (fp16), for
                                                       demos/benchmarks
              prompt schedule --steps N [--old-scheduling] [--hires-steps N] [--json] TEXT
                                                       A1111 prompt editing: [[end_step, text], ...]
              prompt and [--json] TEXT                 A1111 AND parts: [[text, weight], ...]
              embeddings list [--dir DIR] [--json]     textual inversions under DIR (./models/embeddings)
              debug encode --model PATH [--config DIR] [--embeddings-dir DIR] [--clip-skip N]
                           [--prompt-style a1111|comfy] --prompt TEXT --out FILE.safetensors
                                                       what a prompt becomes (context, pooled), float32
              debug noise --seed S --shape 1,4,64,64 [--noise cpu|nv] [--draws K] --out FILE
                                                       successive noise draws of one seeded generator
              debug unet --model PATH [--config DIR] [--lora FILE:MULT]... --inputs IN.safetensors
                         --timestep T --out OUT.safetensors [--lora-mode merge|bypass]
                                                       one UNet call (IN: sample, context[, y]; OUT: eps,
                                                       float32), LoRAs on the UNet only, for comparisons
              train --model CKPT --train-data-dir DIR --output-dir DIR [--output-name NAME] [options]
                                                       train a LoRA (kohya's train_network.py flags; see
                                                       'loracraft train --help' and README)
              help                                     this text

            Global options: --debug (show stack traces), --quiet (no progress output)
            Exit codes: 0 ok, 2 user error (one line on stderr), 1 internal error.
            """;

        public static int Run(string[] argv, TextWriter? stdout = null, TextWriter? stderr = null)
        {
            stdout ??= Console.Out;
            stderr ??= Console.Error;
            bool debug = argv.Contains("--debug");
            var rest = argv.Where(a => a != "--debug").ToArray();
            try
            {
                if (rest.Length == 0 || rest[0] is "help" or "--help" or "-h")
                {
                    stdout.WriteLine(Usage);
                    return 0;
                }
                var command = rest[0];
                var tail = rest.Skip(1).ToArray();
                if (tail.Contains("--help") || tail.Contains("-h"))
                {
                    stdout.WriteLine(CommandHelp.For(command) ?? Usage);
                    return 0;
                }
                return command switch
                {
                    "tokenize" => Commands.TokenizeCommand.Run(tail, stdout),
                    "inspect" => Commands.InspectCommand.Run(tail, stdout),
                    "tokenizer" => Commands.TokenizerCommand.Run(tail, stdout),
                    "generate" => RunCancellable(tail, stdout, stderr),
                    "serve" => RunUntilCtrlC(tail, stdout, stderr),
                    "worker" => RunUntilCtrlC(tail, stdout, stderr, Commands.WorkerCommand.Run),
                    "train" => RunTraining(tail, stdout, stderr),
                    "png-info" => Commands.PngInfoCommand.Run(tail, stdout),
                    "bench" => Commands.BenchCommand.Run(tail, stdout, stderr),
                    "make-model" => Commands.MakeModelCommand.Run(tail, stdout),
                    "lora" or "make-lora" => Commands.LoraCommand.Run(command, tail, stdout, stderr),
                    "prompt" => Commands.PromptCommand.Run(tail, stdout),
                    "embeddings" => Commands.EmbeddingsCommand.Run(tail, stdout),
                    "debug" => Commands.DebugCommand.Run(tail, stdout, stderr),
                    _ => throw new UserErrorException($"unknown command '{command}' (see 'loracraft --help')"),
                };
            }
            catch (Exception e) when (UserFacing(e) is { } message)
            {
                stderr.WriteLine("error: " + message);
                if (debug) stderr.WriteLine(e);
                return 2;
            }
            catch (Exception e)
            {
                stderr.WriteLine("internal error: " + e.Message);
                if (Runtime.TorchNative.LoadError is { } native)
                    stderr.WriteLine("(preparing libtorch for this system failed first: " + native.Message + ")");
                stderr.WriteLine(debug ? e.ToString() : "(run again with --debug for details)");
                return 1;
            }
        }

        /// <summary>The server runs until Ctrl-C (or SIGTERM), then stops cleanly.</summary>
        static int RunUntilCtrlC(string[] tail, TextWriter stdout, TextWriter stderr,
            Func<string[], TextWriter, TextWriter, CancellationToken, int>? command = null)
        {
            using var cts = new CancellationTokenSource();
            ConsoleCancelEventHandler handler = (_, e) => { e.Cancel = true; cts.Cancel(); };
            Console.CancelKeyPress += handler;
            using var term = System.Runtime.InteropServices.PosixSignalRegistration.Create(System.Runtime.InteropServices.PosixSignal.SIGTERM, c => { c.Cancel = true; cts.Cancel(); });
            try { return (command ?? Commands.ServeCommand.Run)(tail, stdout, stderr, cts.Token); }
            finally { Console.CancelKeyPress -= handler; }
        }

        /// <summary>Ctrl-C stops generation between steps; nothing half-written is left behind.</summary>
        static int RunCancellable(string[] tail, TextWriter stdout, TextWriter stderr)
        {
            using var cts = new CancellationTokenSource();
            ConsoleCancelEventHandler handler = (_, e) => { e.Cancel = true; cts.Cancel(); };
            Console.CancelKeyPress += handler;
            try { return Commands.GenerateCommand.Run(tail, stdout, stderr, cts.Token); }
            catch (OperationCanceledException)
            {
                stderr.WriteLine("cancelled: no file written for the unfinished image");
                return 130;
            }
            finally { Console.CancelKeyPress -= handler; }
        }

        /// <summary>
        /// The library names settings (`vae_tiling must be …`); on the command line they are
        /// flags (`--vae-tiling must be …`).
        /// </summary>
        internal static string InFlags(UserErrorException u)
        {
            if (u.Field is not { } field) return u.Message;
            // "batch_count must …" or "batch count must …" -> "--batch-count must …"
            foreach (var spelling in new[] { field, field.Replace('_', ' ') })
                if (u.Message.StartsWith(spelling + " ", StringComparison.Ordinal))
                    return "--" + field.Replace('_', '-') + u.Message[spelling.Length..];
            return u.Message;
        }

        /// <summary>Ctrl-C stops training after the current step and saves a resumable state; a second Ctrl-C quits at once.</summary>
        static int RunTraining(string[] tail, TextWriter stdout, TextWriter stderr)
        {
            using var cts = new CancellationTokenSource();
            ConsoleCancelEventHandler handler = (_, e) =>
            {
                if (cts.IsCancellationRequested) return;
                e.Cancel = true;
                stderr.WriteLine("\nstopping after this step and saving a resumable state (Ctrl-C again to quit at once)...");
                cts.Cancel();
            };
            Console.CancelKeyPress += handler;
            try { return Commands.TrainCommand.Run(tail, stdout, stderr, cts.Token); }
            catch (OperationCanceledException)
            {
                stderr.WriteLine("cancelled before training started: nothing was written");
                return 130;
            }
            finally { Console.CancelKeyPress -= handler; }
        }

        /// <summary>The one-line message for a mistake the user can fix, or null for a bug.</summary>
        static string? UserFacing(Exception e) => e switch
        {
            UserErrorException u => InFlags(u),
            FileNotFoundException f => $"file not found: {f.FileName ?? f.Message}",
            DirectoryNotFoundException d => d.Message,
            UnauthorizedAccessException a => a.Message,
            _ => null,
        };
    }
}
