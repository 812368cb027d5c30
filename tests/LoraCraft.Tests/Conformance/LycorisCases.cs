using System.Text.Json;
using LoraCraft.IO;
using LoraCraft.Lora;
using LoraCraft.Models.Loading;
using TorchSharp;
using Xunit;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace LoraCraft.Tests.Conformance;

/// <summary>
/// more/ `lora_unet_raw` cases: LyCORIS LoHa and LoKr files applied to the UNet only, the UNet
/// called directly; merged and in bypass mode, both against the reference.
/// </summary>
public class LycorisCases(ITestOutputHelper output)
{
    /// <summary>The cases of more/cases-m2.json of one kind, with their tensors file; a skip when absent.</summary>
    internal static (IReadOnlyList<JsonElement> Cases, SafetensorsFile Expected) MoreCases(string kind)
    {
        var f = Fixture.Require();
        string json = Path.Combine(f.Root, "more", "cases-m2.json");
        if (!File.Exists(json)) throw new SkipException("more/cases-m2.json not found: skipped");
        using var doc = JsonDocument.Parse(File.ReadAllBytes(json));
        var cases = doc.RootElement.GetProperty("cases").EnumerateArray().Where(c => c.GetProperty("kind").GetString() == kind).Select(c => c.Clone()).ToList();
        return (cases, SafetensorsFile.Open(Path.Combine(f.Root, "more", "expected-m2.safetensors")));
    }

    [SkippableTheory]
    [InlineData(false)]
    [InlineData(true)]
    public void LohaAndLokrMatchTheReference(bool bypass)
    {
        var f = Fixture.Require();
        var (cases, expected) = MoreCases("lora_unet_raw");
        using var _ = expected;
        using var model = CheckpointLoader.Load(f.ModelFile("sd15"), new LoadOptions { ConfigDir = f.DiffusersDir("sd15") });
        var targets = new LoraTargets(model);
        using var patcher = new LoraPatcher();
        using var noGrad = torch.no_grad();
        var report = new Fixture.Report(1e-4);
        foreach (var c in cases)
        {
            using var scope = NewDisposeScope();
            var files = new List<LoraFile>();
            var apps = new List<LoraApplication>();
            foreach (var l in c.GetProperty("loras").EnumerateArray())
            {
                var file = LoraFile.Load(Path.Combine(f.Root, "more", "loras", l.GetProperty("file").GetString()!));
                files.Add(file);
                var plan = LoraPlan.Create(file, targets);
                output.WriteLine($"{file.Name}: {file.Algorithm.Id()}, {plan.Matched.Count} matched, {plan.Unmatched.Count} unmatched");
                Assert.Empty(plan.Unmatched);
                // applied to the UNet only
                apps.Add(new LoraApplication(plan, l.GetProperty("unet").GetDouble(), 0) { Bypass = bypass });
            }
            patcher.Apply(apps);
            Tensor T(string field) => expected.Load(c.GetProperty(field).GetString()!, ScalarType.Float32);
            var eps = model.UNet.Forward(T("sample"), torch.tensor(new[] { c.GetProperty("timestep").GetSingle() }), T("context"));
            report.Check($"{string.Join("+", files.Select(x => x.Name))} {(bypass ? "bypass" : "merged")}", eps, T("expected"));
            patcher.Apply([]);
            foreach (var file in files) file.Dispose();
        }
        report.Assert(output);
    }
}
