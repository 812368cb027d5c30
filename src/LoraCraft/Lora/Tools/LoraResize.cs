using System.Globalization;
using LoraCraft.IO;
using LoraCraft.Lora.Adapters;
using TorchSharp;
using static TorchSharp.torch;

namespace LoraCraft.Lora.Tools;

/// <summary>`lora resize`: a LoRA refactored to a lower (or dynamic) rank.</summary>
public sealed record ResizeRequest(string Input, RankRule Rank, string Output)
{
    /// <summary>Rank of 3x3 convolutions; null: the same as <see cref="Rank"/>.</summary>
    public int? ConvRank { get; init; }
    /// <summary>Stored type of the new factors; null: as the input's.</summary>
    public SafeDType? DType { get; init; }
    public bool Force { get; init; }
}

public sealed record ResizedModule(string Key, long OldRank, int NewRank, double NewAlpha, double FroRetained, double SumRetained);

/// <summary>Per module what was kept, and the modules left as they were (other types, DoRA).</summary>
public sealed record ResizeResult(string Output, IReadOnlyList<ResizedModule> Modules, IReadOnlyList<string> Unchanged)
{
    public double AverageFroRetained => Modules.Count == 0 ? 1 : Modules.Average(m => m.FroRetained);
}

/// <summary>
/// kohya's resize_lora: each LoRA/LoCon module's product up @ down (CP cores rebuilt, making a
/// plain LoCon) is factored by SVD to the new rank, singular values into up, and alpha set to
/// scale · new rank so the strength is unchanged. Other types and DoRA modules are copied as they
/// are (and named in the result). The tensor names of the input are kept.
/// </summary>
public static class LoraResize
{
    public static ResizeResult Run(ResizeRequest r)
    {
        if (!File.Exists(r.Input)) throw new FileNotFoundException($"LoRA not found: {r.Input}", r.Input);
        if (r.Rank.Rank < 1 || r.ConvRank is < 1) throw new UserErrorException("the new rank must be 1 or more");
        ToolFiles.CheckOutput(r.Output, r.Force, r.Input);
        using var file = SafetensorsFile.Open(r.Input);
        var layout = AdapterFormats.Layout(file.Tensors.Select(t => (t.Name, t.Shape)));
        using var lora = LoraFile.Load(r.Input);
        var modules = lora.Modules.ToDictionary(m => m.Key, StringComparer.Ordinal);
        long maxRank = lora.Modules.OfType<LoraAdapter>().Select(m => m.Down.shape[0]).DefaultIfEmpty(0).Max();
        if (maxRank == 0) throw new UserErrorException($"{r.Input} has no LoRA/LoCon modules to resize ({lora.Algorithm.Id()})");
        if (r.Rank.Rank > maxRank && r.Rank.Method == RankMethod.Fixed)
            throw new UserErrorException($"resize lowers the rank: {r.Input} has rank {maxRank} at most, {r.Rank.Rank} was asked");

        var replaced = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        var dropped = new HashSet<string>(StringComparer.Ordinal);
        var added = new List<KeyValuePair<string, Tensor>>();
        var resized = new List<ResizedModule>();
        var unchanged = new List<string>();
        using var noGrad = torch.no_grad();
        try
        {
            foreach (var m in layout.Modules)
            {
                if (modules[m.Key] is not LoraAdapter l || l.IsDora) { unchanged.Add(m.Key); continue; }
                using var scope = NewDisposeScope();
                var product = Product(l);
                var shape = product.shape;
                bool conv3 = shape.Length == 4 && (shape[2] > 1 || shape[3] > 1);
                int cap = conv3 ? r.ConvRank ?? r.Rank.Rank : r.Rank.Rank;
                using var f = LowRank.Factor(product, r.Rank with { Rank = cap });
                double scale = (l.Alpha ?? l.Down.shape[0]) / l.Down.shape[0];
                var type = r.DType is { } d ? SafeDTypes.ToTorch(d)!.Value : l.Down.dtype;
                long[] up = shape.Length == 4 ? [shape[0], f.Rank, 1, 1] : [shape[0], f.Rank];
                long[] down = shape.Length == 4 ? [f.Rank, shape[1], shape[2], shape[3]] : [f.Rank, shape[1]];
                replaced[m.Parts[LoraAdapter.DownPart].Tensor] = f.Down.reshape(down).to(type).DetachFromDisposeScope();
                replaced[m.Parts[LoraAdapter.UpPart].Tensor] = f.Up.reshape(up).to(type).DetachFromDisposeScope();
                if (m.Parts.TryGetValue(LoraAdapter.MidPart, out var mid)) dropped.Add(mid.Tensor);
                var alpha = torch.tensor((float)(scale * f.Rank)).to(type).DetachFromDisposeScope();
                if (m.Parts.TryGetValue(AdapterFormats.Alpha, out var a)) replaced[a.Tensor] = alpha;
                else added.Add(new(m.Key + ".alpha", alpha));
                resized.Add(new ResizedModule(m.Key, l.Down.shape[0], f.Rank, scale * f.Rank, f.FroRetained, f.SumRetained));
            }
            var tensors = file.Tensors.Where(t => !dropped.Contains(t.Name))
                .Select(t => new LazyTensor(t.Name, SafeDTypes.FromTorch(replaced.TryGetValue(t.Name, out var v) ? v.dtype : SafeDTypes.ToTorch(t.DType) ?? ScalarType.Float32)!.Value, Shape(t, replaced),
                                            () => replaced.TryGetValue(t.Name, out var v) ? v.alias() : file.Load(t.Name)))
                .Concat(added.Select(p => new LazyTensor(p.Key, SafeDTypes.FromTorch(p.Value.dtype)!.Value, p.Value.shape, () => p.Value.alias())));
            SafetensorsWriter.WriteLazy(r.Output, tensors, Metadata(file.Metadata, r, maxRank, resized));
        }
        finally
        {
            foreach (var t in replaced.Values.Concat(added.Select(p => p.Value))) t.Dispose();
        }
        return new ResizeResult(r.Output, resized, unchanged);
    }

    static long[] Shape(SafeTensorInfo t, Dictionary<string, Tensor> replaced) => replaced.TryGetValue(t.Name, out var v) ? v.shape : t.Shape;

    /// <summary>up @ down without the scale, in the layer's shape (a CP core rebuilt).</summary>
    internal static Tensor Product(LoraAdapter l)
    {
        var up = l.Up.to(ScalarType.Float32).reshape(l.Up.shape[0], -1);
        var down = l.Down.to(ScalarType.Float32);
        if (l.Mid is { } mid)
            return torch.einsum("nmkl,on,mi->oikl", mid.to(ScalarType.Float32), up, down.reshape(down.shape[0], -1));
        var product = up.matmul(down.reshape(down.shape[0], -1));
        return down.dim() == 4 ? product.reshape(l.Up.shape[0], down.shape[1], down.shape[2], down.shape[3]) : product;
    }

    static Dictionary<string, string> Metadata(IReadOnlyDictionary<string, string> input, ResizeRequest r, long oldRank, List<ResizedModule> resized)
    {
        var inv = CultureInfo.InvariantCulture;
        var metadata = input.ToDictionary(p => p.Key, p => p.Value);
        string comment = metadata.GetValueOrDefault("ss_training_comment", "");
        if (r.Rank.Method == RankMethod.Fixed)
        {
            string conv = r.ConvRank is { } c && c != r.Rank.Rank ? string.Create(inv, $" (conv: {c})") : "";
            metadata["ss_training_comment"] = string.Create(inv, $"dimension is resized from {oldRank} to {r.Rank.Rank}{conv}; {comment}");
            metadata["ss_network_dim"] = r.Rank.Rank.ToString(inv);
            if (resized.Count > 0)
                metadata["ss_network_alpha"] = resized.GroupBy(m => m.NewAlpha).OrderByDescending(g => g.Count()).First().Key.ToString("R", inv);
        }
        else
        {
            metadata["ss_training_comment"] = string.Create(inv, $"Dynamic resize with {r.Rank.Method}: {r.Rank.Param} from {oldRank}; {comment}");
            metadata["ss_network_dim"] = "Dynamic";
            metadata["ss_network_alpha"] = "Dynamic";
        }
        return metadata;
    }
}
