using LoraCraft.IO;
using LoraCraft.Lora;
using LoraCraft.Models;
using LoraCraft.Models.Loading;
using TorchSharp;
using static TorchSharp.torch;

namespace LoraCraft.Cli.Commands;

/// <summary>
/// `loracraft debug unet`: one UNet call on given inputs, with LoRAs on the UNet only, so other
/// tools' outputs can be compared tensor for tensor. IN holds `sample` and `context` (and `y`
/// for SDXL); OUT gets `eps`, float32.
/// </summary>
public static class DebugCommand
{
    public static int Run(string[] argv, TextWriter stdout)
    {
        if (argv.Length == 0 || argv[0] != "unet") throw new UserErrorException("'debug' needs a subcommand: unet");
        var a = new Args("debug unet", argv[1..], flags: ["quiet"],
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
            var t = torch.full(sample.shape[0], (float)timestep, ScalarType.Float32);
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
