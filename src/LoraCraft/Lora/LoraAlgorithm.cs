namespace LoraCraft.Lora;

/// <summary>
/// Which scheme an adapter module uses (for a whole file: most of its modules). LoCon is LoRA on
/// convolutions (kohya's conv_dim, LyCORIS "locon"); Full is a stored weight difference; Norm
/// adapts GroupNorm/LayerNorm weights; Oft covers kohya's and LyCORIS' OFT, Boft the butterfly form.
/// </summary>
public enum LoraAlgorithm { Lora, LoCon, LoHa, LoKr, IA3, Full, Norm, GLoRA, Oft, Boft }

public static class LoraAlgorithms
{
    /// <summary>
    /// A file's type: the most common among its modules, LoRA and LoCon counted together (LoCon
    /// when any of them is a convolution), norms only when nothing else is there (LyCORIS adds
    /// them to files of any type); ties go to the first in <see cref="LoraAlgorithm"/>'s order.
    /// </summary>
    public static LoraAlgorithm OfFile(IEnumerable<LoraAlgorithm> modules)
    {
        var list = modules.ToList();
        if (list.Count == 0) return LoraAlgorithm.Lora;
        var counted = list.Where(a => a != LoraAlgorithm.Norm).ToList();
        if (counted.Count == 0) return LoraAlgorithm.Norm;
        var best = counted.GroupBy(a => a == LoraAlgorithm.LoCon ? LoraAlgorithm.Lora : a)
            .OrderByDescending(g => g.Count()).ThenBy(g => g.Key).First();
        return best.Key == LoraAlgorithm.Lora && best.Contains(LoraAlgorithm.LoCon) ? LoraAlgorithm.LoCon : best.Key;
    }

    /// <summary>The lower-case name shown in listings and reports (`lora`, `locon`, `loha`, `ia3`, ...).</summary>
    public static string Id(this LoraAlgorithm a) => a.ToString().ToLowerInvariant();
}
