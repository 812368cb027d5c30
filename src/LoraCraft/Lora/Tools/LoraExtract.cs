using System.Globalization;
using System.Text.RegularExpressions;
using LoraCraft.IO;
using LoraCraft.Models;
using LoraCraft.Models.Loading;
using TorchSharp;
using static TorchSharp.torch;

namespace LoraCraft.Lora.Tools;

/// <summary>`lora extract`: a LoRA approximating the difference of two checkpoints of one family.</summary>
public sealed record ExtractRequest(string Base, string Tuned, RankRule Rank, string Output)
{
    /// <summary>Rank of 3x3 convolutions (kohya's conv_dim); null leaves resnets out, as kohya does.</summary>
    public int? ConvRank { get; init; }
    public double ClampQuantile { get; init; } = 0.99;
    /// <summary>The text encoders are extracted only when some weight differs by more than this.</summary>
    public double MinDiff { get; init; } = 0.01;
    /// <summary>Stored type of the factors (kohya: float32 unless asked).</summary>
    public SafeDType DType { get; init; } = SafeDType.F32;
    public bool Force { get; init; }
}

public sealed record ExtractedModule(string Key, int Rank, double FroRetained);

public sealed record ExtractResult(string Output, IReadOnlyList<ExtractedModule> Modules, bool TextEncoders, double TextEncoderMaxDiff);

/// <summary>
/// kohya's extract_lora_from_models on our tensors: for each layer kohya's LoRA network covers
/// (transformer linear and 1x1 layers of the UNet; with a conv rank also resnet, down- and
/// upsampler layers; attention and MLP of the text encoders), the difference tuned − base in
/// float32 is factored by SVD to the rank (or a dynamic one), clamped at the quantile, and
/// written with kohya's key names, alpha = rank and kohya's metadata. Both checkpoints are read
/// one tensor at a time; nothing else is loaded.
/// </summary>
public static partial class LoraExtract
{
    [GeneratedRegex(@"(\.transformer_blocks\.\d+\.|\.proj_in\.weight$|\.proj_out\.weight$)", RegexOptions.CultureInvariant)]
    private static partial Regex TransformerRx();

    [GeneratedRegex(@"\.(in_layers\.2|out_layers\.3|emb_layers\.1|skip_connection|op|conv)\.weight$", RegexOptions.CultureInvariant)]
    private static partial Regex ResnetRx();

    [GeneratedRegex(@"\.(self_attn\.(q|k|v|out)_proj|mlp\.fc[12])\.weight$", RegexOptions.CultureInvariant)]
    private static partial Regex TextRx();

    /// <summary>Whether kohya's LoRA network has a module on <paramref name="t"/> (with or without its conv layers).</summary>
    public static bool Covers(LoraTarget t, bool conv) => t.Kind != LoraTargetKind.Norm && (t.Component == LoraComponent.UNet
        ? TransformerRx().IsMatch(t.Name) || conv && t.Block is not null && ResnetRx().IsMatch(t.Name)
        : TextRx().IsMatch(t.Name));

    public static ExtractResult Run(ExtractRequest r)
    {
        foreach (var p in new[] { r.Base, r.Tuned })
            if (!File.Exists(p)) throw new FileNotFoundException($"model not found: {p}", p);
        if (r.Rank.Rank < 1 || r.ConvRank is < 1) throw new UserErrorException("the rank must be 1 or more");
        if (r.ClampQuantile is <= 0 or > 1) throw new UserErrorException($"clamp quantile must be in (0, 1], got {r.ClampQuantile}");
        ToolFiles.CheckOutput(r.Output, r.Force, r.Base, r.Tuned);
        using var baseFile = SafetensorsFile.Open(r.Base);
        using var tunedFile = SafetensorsFile.Open(r.Tuned);
        var baseS = CheckpointStructure.Read(baseFile.Header, r.Base);
        var tunedS = CheckpointStructure.Read(tunedFile.Header, r.Tuned);
        if (baseS.Family != tunedS.Family)
            throw new UserErrorException($"{r.Tuned} is {tunedS.Family.Id()} but {r.Base} is {baseS.Family.Id()}: extract needs two checkpoints of one family");
        var targets = new LoraTargets(baseS);
        var tunedTargets = new LoraTargets(tunedS);
        var layers = targets.Layers.Where(l => Covers(l.Target, r.ConvRank is not null)).ToList();
        var tunedByKey = tunedTargets.Layers.ToDictionary(l => l.KohyaKey, StringComparer.Ordinal);
        foreach (var l in layers)
            if (!tunedByKey.TryGetValue(l.KohyaKey, out var t) || !t.Target.Weight.Shape.SequenceEqual(l.Target.Weight.Shape))
                throw new UserErrorException($"{r.Tuned} and {r.Base} differ in shape at {l.Target.Name}: not the same architecture");

        using var noGrad = torch.no_grad();
        Tensor Diff(LoraLayer l)
        {
            int c = Component(l.Target);
            using var b = CheckpointStructure.Read(baseFile, baseS.RecipeOf(c, l.Target.Name)!);
            using var t = CheckpointStructure.Read(tunedFile, tunedS.RecipeOf(c, l.Target.Name)!);
            return t - b;
        }
        // the text encoders only when they were trained (kohya's min_diff test)
        double textDiff = 0;
        foreach (var l in layers.Where(l => l.Target.Component != LoraComponent.UNet))
        {
            using var d = Diff(l);
            textDiff = Math.Max(textDiff, d.abs().max().item<float>());
        }
        bool withText = textDiff > r.MinDiff;
        var tensors = new List<KeyValuePair<string, Tensor>>();
        var modules = new List<ExtractedModule>();
        var type = SafeDTypes.ToTorch(r.DType)!.Value;
        try
        {
            foreach (var l in layers.Where(l => withText || l.Target.Component == LoraComponent.UNet))
            {
                using var scope = NewDisposeScope();
                var shape = l.Target.Weight.Shape;
                bool conv3 = shape.Length == 4 && (shape[2] > 1 || shape[3] > 1);
                int max = conv3 ? r.ConvRank!.Value : r.Rank.Rank;
                max = (int)Math.Min(max, Math.Min(shape[0], shape[1]));
                using var factored = LowRank.Factor(Diff(l), r.Rank with { Rank = max }, r.ClampQuantile);
                int rank = factored.Rank;
                long[] up = shape.Length == 4 ? [shape[0], rank, 1, 1] : [shape[0], rank];
                long[] down = shape.Length == 4 ? [rank, shape[1], shape[2], shape[3]] : [rank, shape[1]];
                tensors.Add(new(l.KohyaKey + ".lora_up.weight", factored.Up.reshape(up).to(type).DetachFromDisposeScope()));
                tensors.Add(new(l.KohyaKey + ".lora_down.weight", factored.Down.reshape(down).to(type).DetachFromDisposeScope()));
                tensors.Add(new(l.KohyaKey + ".alpha", torch.tensor((float)rank).to(type).DetachFromDisposeScope()));
                modules.Add(new ExtractedModule(l.KohyaKey, rank, factored.FroRetained));
            }
            SafetensorsWriter.Write(r.Output, tensors.OrderBy(t => t.Key, StringComparer.Ordinal), Metadata(r, baseS.Family));
        }
        finally
        {
            foreach (var t in tensors) t.Value.Dispose();
        }
        return new ExtractResult(r.Output, modules, withText, textDiff);
    }

    static int Component(LoraTarget t) => t.Component switch { LoraComponent.UNet => 0, LoraComponent.TextEncoder1 => 1, _ => 2 };

    /// <summary>kohya's minimum metadata of an extracted LoRA, plus the model-spec title.</summary>
    static Dictionary<string, string> Metadata(ExtractRequest r, ModelFamily family)
    {
        var inv = CultureInfo.InvariantCulture;
        string rank = r.Rank.Method == RankMethod.Fixed ? r.Rank.Rank.ToString(inv) : "Dynamic";
        var metadata = new Dictionary<string, string>
        {
            ["ss_v2"] = (family == ModelFamily.Sd2).ToString(),
            ["ss_base_model_version"] = family switch { ModelFamily.Sd1 => "sd_v1", ModelFamily.Sd2 => "sd_v2", _ => "sdxl_base_v1-0" },
            ["ss_network_module"] = "networks.lora",
            ["ss_network_dim"] = rank,
            ["ss_network_alpha"] = r.Rank.Method == RankMethod.Fixed ? ((double)r.Rank.Rank).ToString("0.0", inv) : "Dynamic",
            ["ss_network_args"] = r.ConvRank is { } c ? string.Create(inv, $"{{\"conv_dim\": \"{c}\", \"conv_alpha\": \"{(double)c:0.0}\"}}") : "{}",
            ["modelspec.title"] = Path.GetFileNameWithoutExtension(r.Output),
            ["loracraft.extracted_from"] = $"{Path.GetFileName(r.Tuned)} - {Path.GetFileName(r.Base)}",
        };
        return metadata;
    }
}
