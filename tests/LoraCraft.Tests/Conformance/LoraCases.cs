using System.Text.Json;
using LoraCraft.Lora;
using LoraCraft.Models;
using LoraCraft.Models.Loading;
using LoraCraft.Pipelines;
using TorchSharp;
using Xunit;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace LoraCraft.Tests.Conformance;

/// <summary>LoRA cases: UNet forwards with patched weights, and full generations with LoRAs.</summary>
public class LoraCases(ITestOutputHelper output)
{
    /// <summary>A private model: patching mutates weights, so LoRA tests never share the cached ones.</summary>
    static StableDiffusionModel FreshModel(Fixture f, string kind) =>
        CheckpointLoader.Load(f.ModelFile(kind), new LoadOptions { ConfigDir = f.DiffusersDir(kind) });

    static List<LoraApplication> Applications(Fixture f, JsonElement c, LoraTargets targets) =>
        c.GetProperty("loras").EnumerateArray().Select(l => new LoraApplication(
            LoraPlan.Create(LoraFile.Load(Path.Combine(f.Root, "loras", l.GetProperty("file").GetString()!)), targets),
            l.GetProperty("unet").GetDouble(), l.GetProperty("te").GetDouble())).ToList();

    [SkippableTheory]
    [InlineData("sd15")]
    [InlineData("sdxl")]
    public void UNetWithLoras(string kind)
    {
        if (Fixture.Instance is not { } f) { throw new SkipException(Fixture.MissingMessage); }
        using var model = FreshModel(f, kind);
        var targets = new LoraTargets(model);
        using var patcher = new LoraPatcher();
        var report = new Fixture.Report(1e-4);
        using var noGrad = torch.no_grad();
        foreach (var c in f.OfKind("lora_unet", kind))
        {
            using var scope = NewDisposeScope();
            var apps = Applications(f, c, targets);
            foreach (var a in apps) output.WriteLine($"{a.Plan.File.Name}: {a.Plan.Matched.Count} matched, {a.Plan.Unmatched.Count} unmatched");
            foreach (var a in apps) Assert.Empty(a.Plan.Unmatched);
            patcher.Apply(apps);
            var eps = f.RunUNet(c, model.UNet);
            string name = string.Join(" + ", c.GetProperty("loras").EnumerateArray().Select(l => $"{l.GetProperty("file").GetString()} u{l.GetProperty("unet").GetDouble()}"));
            report.Check($"{kind} {name}", eps, f.Tensor(c, "expected"));
            foreach (var a in apps) a.Plan.File.Dispose();
        }
        report.Assert(output);
    }

    public static TheoryData<int> LoraGenerationCases() => PipelineCases.CaseIndices(withLoras: true);

    [SkippableTheory, MemberData(nameof(LoraGenerationCases))]
    public void GeneratesWithLoras(int index)
    {
        if (Fixture.Instance is not { } f) { throw new SkipException(Fixture.MissingMessage); }
        var c = f.Cases[index];
        string kind = c.GetProperty("model").GetString()!;
        using var model = FreshModel(f, kind);
        using var patcher = new LoraPatcher();
        var apps = Applications(f, c, new LoraTargets(model));
        patcher.Apply(apps);
        using var result = StableDiffusionPipeline.Generate(model, PipelineCases.Request(f, c));
        PipelineCases.CheckResult(f, c, result, output, $"#{index} {kind} with {string.Join(", ", apps.Select(a => a.Plan.File.Name))}");
    }
}
