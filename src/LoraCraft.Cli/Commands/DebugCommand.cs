using System.Globalization;
using LoraCraft.IO;
using LoraCraft.Lora;
using LoraCraft.Models;
using LoraCraft.Models.Loading;
using LoraCraft.Sampling;
using LoraCraft.Text;
using LoraCraft.Text.Embeddings;
using TorchSharp;
using static TorchSharp.torch;

namespace LoraCraft.Cli.Commands;

/// <summary>
/// <c>loracraft debug encode|noise|unet</c>: intermediate tensors for checking against other tools.
/// <c>encode</c> writes what a prompt becomes (tensor <c>context</c> [1, 77 × chunks, width],
/// <c>pooled</c> for SDXL) in float32; <c>noise</c> writes successive draws of one seeded
/// generator (<c>noise.0</c> … <c>noise.K-1</c>); <c>unet</c> runs one UNet call on given inputs
/// with LoRAs on the UNet only (IN: <c>sample</c>, <c>context</c>, <c>y</c> for SDXL; OUT: <c>eps</c>, float32).
/// </summary>
public static class DebugCommand
{
    public static int Run(string[] argv, TextWriter stdout, TextWriter stderr)
    {
        if (argv.Length == 0) throw new UserErrorException("'debug' needs a subcommand: encode, noise or unet");
        var rest = argv[1..];
        return argv[0] switch
        {
            "encode" => Encode(rest, stdout, stderr),
            "noise" => Noise(rest, stdout),
            "unet" => Unet(rest, stdout),
            var s => throw new UserErrorException($"unknown 'debug' subcommand '{s}' (encode, noise or unet)"),
        };
    }

    public static PromptStyle ParseStyle(string? value) => value switch
    {
        null or "a1111" => PromptStyle.A1111,
        "comfy" or "comfyui" => PromptStyle.ComfyUI,
        _ => throw new UserErrorException($"--prompt-style must be a1111 or comfy, got '{value}'"),
    };

    public static RandomSource ParseNoise(string? value) => value switch
    {
        null or "cpu" => RandomSource.Cpu,
        "nv" => RandomSource.Nv,
        _ => throw new UserErrorException($"--noise must be cpu or nv, got '{value}'"),
    };

    static int Encode(string[] argv, TextWriter stdout, TextWriter stderr)
    {
        var a = new Args("debug encode", argv, flags: [],
                         options: ["model", "config", "tokenizer", "embeddings-dir", "clip-skip", "prompt-style", "prompt", "out", "dtype"]);
        if (a.Positionals.Count > 0) throw new UserErrorException($"unexpected argument '{a.Positionals[0]}' (the prompt goes after --prompt)");
        string model = a.Require("model"), prompt = a.Require("prompt"), outPath = a.Require("out");
        if (!outPath.EndsWith(".safetensors", StringComparison.OrdinalIgnoreCase)) throw new UserErrorException($"--out must name a .safetensors file, got '{outPath}'");
        var style = ParseStyle(a.Get("prompt-style"));
        int clipSkip = a.GetInt("clip-skip", 1);
        var embeddings = new EmbeddingLibrary(a.Get("embeddings-dir") ?? EmbeddingLibrary.DefaultRoot).ToSet();
        using var m = CheckpointLoader.Load(model, new LoadOptions
        {
            ConfigDir = a.Get("config"), TokenizerDir = a.Get("tokenizer"), DType = Runtime.Compute.ParseDType(a.Get("dtype") ?? "fp32"),
        });
        // A1111 removes LoRA tags before parsing; the text is encoded as one conditioning (no AND / editing)
        var (text, _) = LoraTags.Extract(prompt);
        using var encoder = new ChunkEncoder(m, clipSkip);
        Conditioning cond;
        if (style == PromptStyle.A1111) cond = A1111PromptEncoder.Encode(encoder, text, embeddings);
        else
        {
            var comfy = ComfyPromptEncoder.Encode(encoder, text, embeddings);
            foreach (var name in comfy.Missing) stderr.WriteLine($"warning: embedding:{name} not found, left out (as ComfyUI does)");
            cond = comfy.Conditioning;
        }
        using (cond)
        {
            var tensors = new List<KeyValuePair<string, torch.Tensor>> { new("context", cond.Context) };
            if (cond.Pooled is not null) tensors.Add(new("pooled", cond.Pooled));
            SafetensorsWriter.Write(outPath, tensors, new Dictionary<string, string>
            {
                ["prompt"] = prompt, ["prompt_style"] = style == PromptStyle.A1111 ? "a1111" : "comfy", ["clip_skip"] = clipSkip.ToString(CultureInfo.InvariantCulture),
            });
            stdout.WriteLine($"{outPath}: context [{string.Join(", ", cond.Context.shape)}]" + (cond.Pooled is null ? "" : $", pooled [{string.Join(", ", cond.Pooled.shape)}]"));
        }
        return 0;
    }

    static int Noise(string[] argv, TextWriter stdout)
    {
        var a = new Args("debug noise", argv, flags: [], options: ["seed", "shape", "noise", "draws", "out"]);
        if (a.Positionals.Count > 0) throw new UserErrorException($"unexpected argument '{a.Positionals[0]}'");
        // seeds are unsigned 64-bit for the generators (A1111's NV takes up to 2^64 - 1)
        string seedText = a.Require("seed");
        ulong seed = ulong.TryParse(seedText, NumberStyles.None, CultureInfo.InvariantCulture, out ulong u) ? u
            : long.TryParse(seedText, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out long l) ? unchecked((ulong)l)
            : throw new UserErrorException($"--seed must be an integer, got '{seedText}'");
        string outPath = a.Require("out");
        var shape = a.Require("shape").Split(',').Select(s => long.TryParse(s.Trim(), NumberStyles.None, CultureInfo.InvariantCulture, out long v) && v > 0
            ? v : throw new UserErrorException($"--shape must be positive integers separated by commas (1,4,64,64), got '{a.Get("shape")}'")).ToArray();
        int draws = a.GetInt("draws", 1);
        if (draws < 1) throw new UserErrorException($"--draws must be 1 or more, got {draws}");
        var source = ParseNoise(a.Get("noise"));
        using var generator = NoiseGenerator.Create(source, seed);
        var tensors = new List<KeyValuePair<string, torch.Tensor>>();
        try
        {
            for (int k = 0; k < draws; k++) tensors.Add(new($"noise.{k}", generator.Next(shape)));
            SafetensorsWriter.Write(outPath, tensors, new Dictionary<string, string>
            {
                ["seed"] = seedText, ["noise"] = source == RandomSource.Nv ? "nv" : "cpu",
            });
        }
        finally
        {
            foreach (var t in tensors) t.Value.Dispose();
        }
        stdout.WriteLine($"{outPath}: {draws} draw{(draws == 1 ? "" : "s")} of [{string.Join(", ", shape)}] ({(source == RandomSource.Nv ? "nv" : "cpu")}, seed {seedText})");
        return 0;
    }

    static int Unet(string[] argv, TextWriter stdout)
    {
        var a = new Args("debug unet", argv, flags: ["quiet"],
                         options: ["model", "config", "tokenizer", "lora", "lora-mode", "inputs", "timestep", "out", "dtype", "device", "threads"]);
        if (a.Positionals.Count > 0) throw new UserErrorException($"'debug unet' takes no positional arguments (got '{a.Positionals[0]}')");
        string modelPath = a.Require("model"), inputs = a.Require("inputs"), outPath = a.Require("out");
        double timestep = a.Get("timestep") is null ? throw new UserErrorException("'debug unet' needs --timestep") : a.GetDouble("timestep", 0);
        if (!File.Exists(inputs)) throw new FileNotFoundException($"--inputs: file not found: {inputs}", inputs);
        var mode = a.Get("lora-mode") is { } m ? LoraModes.Parse(m) : LoraMode.Merge;
        var loras = a.GetAll("lora").Select(LoraTags.ParseOption).ToList();
        foreach (var l in loras)
            if (!File.Exists(l.Name)) throw new FileNotFoundException($"--lora: file not found: {l.Name}", l.Name);
        // float32 unless asked: this command exists to compare against references
        var dtype = Runtime.Compute.ParseDType(a.Get("dtype") ?? "fp32");
        Runtime.Compute.SetThreads(a.Get("threads") is null ? null : a.GetInt("threads", 0));
        using var model = CheckpointLoader.Load(modelPath, new LoadOptions
        {
            ConfigDir = a.Get("config"), TokenizerDir = a.Get("tokenizer"), DType = dtype,
            Device = Runtime.Compute.ParseDevice(a.Get("device") ?? "cpu"),
        });
        var targets = new LoraTargets(model);
        var files = loras.Select(l => LoraFile.Load(l.Name)).ToList();
        try
        {
            using var patcher = new LoraPatcher();
            patcher.Apply(files.Zip(loras, (file, tag) => new LoraApplication(LoraPlan.Create(file, targets), tag.UNet, 0) { Bypass = mode == LoraMode.Bypass }).ToList());
            using var noGrad = torch.no_grad();
            using var scope = NewDisposeScope();
            using var input = SafetensorsFile.Open(inputs);
            Tensor Input(string name) => input.Tensors.Any(t => t.Name == name)
                ? input.Load(name, ScalarType.Float32).to(model.DType, model.UNet.Device)
                : throw new UserErrorException($"{inputs}: no tensor '{name}'");
            var y = input.Tensors.Any(t => t.Name == "y") ? Input("y")
                : model.UNet.Config.AdmInChannels > 0 ? throw new UserErrorException($"{inputs}: an SDXL UNet needs 'y' (pooled text and size embedding) beside 'sample' and 'context'")
                : null;
            var sample = Input("sample");
            var t = TensorMath.Full([sample.shape[0]], timestep);
            var eps = model.UNet.Forward(sample, t, Input("context"), y).to(ScalarType.Float32, CPU);
            SafetensorsWriter.Write(outPath, [new("eps", eps)], new Dictionary<string, string> { ["timestep"] = timestep.ToString("R", System.Globalization.CultureInfo.InvariantCulture) });
            stdout.WriteLine($"{outPath} (eps [{string.Join(", ", eps.shape)}])");
        }
        finally
        {
            foreach (var f in files) f.Dispose();
        }
        return 0;
    }
}
