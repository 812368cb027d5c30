using System.Text.Json;
using LoraCraft.IO;
using TorchSharp;
using static TorchSharp.torch;

namespace LoraCraft.Tests.Conformance;

/// <summary>
/// The reference cases (cases.json + expected.safetensors under the fixtures folder), loaded once.
/// Tests call <see cref="Available"/> first and return, saying so, when the fixtures are absent.
/// </summary>
public sealed class Fixture
{
    public static Fixture? Instance { get; } = FixturePaths.Root is { } root ? new Fixture(root) : null;
    public const string MissingMessage = "fixtures not found (../shared/fixtures or LORACRAFT_FIXTURES): skipped";

    /// <summary>The fixtures, or a skip (with <see cref="MissingMessage"/>) when they are absent.</summary>
    public static Fixture Require() => Instance ?? throw new Xunit.SkipException(MissingMessage);

    public string Root { get; }
    public IReadOnlyList<JsonElement> Cases { get; }
    readonly SafetensorsFile _expected;

    Fixture(string root)
    {
        Root = root;
        using var doc = JsonDocument.Parse(File.ReadAllBytes(Path.Combine(root, "cases.json")));
        Cases = doc.RootElement.GetProperty("cases").EnumerateArray().Select(e => e.Clone()).ToList();
        _expected = SafetensorsFile.Open(Path.Combine(root, "expected.safetensors"));
    }

    public IEnumerable<JsonElement> OfKind(string kind, string? model = null) =>
        Cases.Where(c => c.GetProperty("kind").GetString() == kind
                         && (model is null || (c.TryGetProperty("model", out var m) && m.GetString() == model)));

    /// <summary>A float32 tensor named by a case field.</summary>
    public Tensor Tensor(JsonElement c, string field) => _expected.Load(c.GetProperty(field).GetString()!, ScalarType.Float32);

    public Tensor Tensor(string name) => _expected.Load(name, ScalarType.Float32);

    /// <summary>The UNet's output for a `unet` / `lora_unet` case (SDXL cases also give pooled text and time ids).</summary>
    public Tensor RunUNet(JsonElement c, LoraCraft.Models.UNet.UNetModel unet)
    {
        Tensor? y = null;
        if (c.TryGetProperty("time_ids", out var ids) && ids.ValueKind == JsonValueKind.Array)
            y = unet.SdxlVector(Tensor(c, "pooled"), torch.tensor(ids.EnumerateArray().Select(e => e.GetSingle()).ToArray()).unsqueeze(0));
        return unet.Forward(Tensor(c, "sample"), torch.tensor(new[] { c.GetProperty("timestep").GetSingle() }), Tensor(c, "context"), y);
    }

    public string ModelFile(string kind) => Path.Combine(Root, "models", kind, $"tiny-{kind}.safetensors");
    public string DiffusersDir(string kind) => Path.Combine(Root, "models", kind, "diffusers");

    /// <summary>Relative L2 error |a - b| / |b| in float64.</summary>
    public static double RelL2(Tensor actual, Tensor expected)
    {
        using var a = actual.to(ScalarType.Float64);
        using var b = expected.to(ScalarType.Float64);
        Xunit.Assert.Equal(b.shape, a.shape);
        using var diff = a - b;
        double num = diff.norm().item<double>(), den = b.norm().item<double>();
        return den == 0 ? num : num / den;
    }

    /// <summary>Collects per-case errors so one test reports every failing case with its error.</summary>
    public sealed class Report(double tolerance)
    {
        readonly List<string> _failures = new();
        readonly List<string> _all = new();
        public void Check(string name, Tensor actual, Tensor expected)
        {
            double err = RelL2(actual, expected);
            _all.Add($"{name}: {err:E2}");
            if (!(err < tolerance)) _failures.Add($"{name}: relative L2 {err:E3} >= {tolerance:E0}");
        }
        public int Count => _all.Count;
        public void Assert(Xunit.Abstractions.ITestOutputHelper? output = null)
        {
            foreach (var line in _all) output?.WriteLine(line);
            Xunit.Assert.True(_all.Count > 0, "no case was checked");
            Xunit.Assert.True(_failures.Count == 0, string.Join("\n", _failures));
        }
    }
}
