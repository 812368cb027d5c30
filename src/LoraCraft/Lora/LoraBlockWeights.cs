using System.Globalization;

namespace LoraCraft.Lora;

/// <summary>
/// Block weights as diffusers' `set_adapters` takes them: a weight for the text encoders, the
/// middle block, and per down/up block either one value for the whole block or one per layer
/// (resnet + attention pair; up blocks have one layer more). Blocks left out keep weight 1.
/// A block's weight covers all its layers here, not only the attention ones as in diffusers.
/// </summary>
public sealed record LoraBlocks(double? TextEncoder = null, IReadOnlyList<IReadOnlyList<double>>? Down = null, double? Mid = null,
                                IReadOnlyList<IReadOnlyList<double>>? Up = null);

/// <summary>
/// A weight per UNet block that multiplies a LoRA's strength there (a zero block keeps its
/// weights exactly original). Written as sd-webui-lora-block-weight does (`lbw=`): a preset
/// (NONE, ALL, INS, IND, INALL, MIDD, OUTD, OUTS, OUTALL, ALL0.5) or a vector of 17 (SD1/SD2:
/// BASE, IN01, IN02, IN04, IN05, IN07, IN08, M00, OUT03…OUT11), 26 (all SD1 blocks), 12 (SDXL:
/// BASE, IN04, IN05, IN07, IN08, M00, OUT00…OUT05) or 20 (all SDXL blocks) values — BASE is the
/// text encoders, blocks a vector does not name get 0, and layers outside the blocks (time
/// embedding, output) keep 1; plus `lbwe=` element rules that set the weight of matching layers
/// (ATTNDEEPON, ATTNDEEPOFF, PROJDEEPOFF, or BLOCKS:ELEMENTS:RATIO). Or structured, as
/// <see cref="LoraBlocks"/>.
/// </summary>
public sealed class LoraBlockWeights
{
    static readonly string[] Id26 =
    [
        "BASE", "IN00", "IN01", "IN02", "IN03", "IN04", "IN05", "IN06", "IN07", "IN08", "IN09", "IN10", "IN11", "M00",
        "OUT00", "OUT01", "OUT02", "OUT03", "OUT04", "OUT05", "OUT06", "OUT07", "OUT08", "OUT09", "OUT10", "OUT11",
    ];
    static readonly string[] Id17 = ["BASE", "IN01", "IN02", "IN04", "IN05", "IN07", "IN08", "M00", "OUT03", "OUT04", "OUT05", "OUT06", "OUT07", "OUT08", "OUT09", "OUT10", "OUT11"];
    static readonly string[] Id12 = ["BASE", "IN04", "IN05", "IN07", "IN08", "M00", "OUT00", "OUT01", "OUT02", "OUT03", "OUT04", "OUT05"];
    static readonly string[] Id20 =
    [
        "BASE", "IN00", "IN01", "IN02", "IN03", "IN04", "IN05", "IN06", "IN07", "IN08", "M00",
        "OUT00", "OUT01", "OUT02", "OUT03", "OUT04", "OUT05", "OUT06", "OUT07", "OUT08",
    ];

    /// <summary>The extension's built-in presets (17 values each).</summary>
    public static IReadOnlyDictionary<string, string> Presets { get; } = new Dictionary<string, string>(StringComparer.Ordinal)
    {
        ["NONE"] = "0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0",
        ["ALL"] = "1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1",
        ["INS"] = "1,1,1,1,0,0,0,0,0,0,0,0,0,0,0,0,0",
        ["IND"] = "1,0,0,0,1,1,1,0,0,0,0,0,0,0,0,0,0",
        ["INALL"] = "1,1,1,1,1,1,1,0,0,0,0,0,0,0,0,0,0",
        ["MIDD"] = "1,0,0,0,1,1,1,1,1,1,1,1,0,0,0,0,0",
        ["OUTD"] = "1,0,0,0,0,0,0,0,1,1,1,1,0,0,0,0,0",
        ["OUTS"] = "1,0,0,0,0,0,0,0,0,0,0,0,1,1,1,1,1",
        ["OUTALL"] = "1,0,0,0,0,0,0,0,1,1,1,1,1,1,1,1,1",
        ["ALL0.5"] = "0.5,0.5,0.5,0.5,0.5,0.5,0.5,0.5,0.5,0.5,0.5,0.5,0.5,0.5,0.5,0.5,0.5",
    };

    /// <summary>The extension's built-in element presets.</summary>
    public static IReadOnlyDictionary<string, string> ElementPresets { get; } = new Dictionary<string, string>(StringComparer.Ordinal)
    {
        ["ATTNDEEPON"] = "IN05-OUT05:attn:1",
        ["ATTNDEEPOFF"] = "IN05-OUT05:attn:0",
        ["PROJDEEPOFF"] = "IN05-OUT05:proj:0",
    };

    readonly IReadOnlyDictionary<string, double>? _ids;
    readonly LoraBlocks? _blocks;
    readonly IReadOnlyList<ElementRule> _elements;

    LoraBlockWeights(IReadOnlyDictionary<string, double>? ids, LoraBlocks? blocks, IReadOnlyList<ElementRule> elements, string text)
    {
        _ids = ids;
        _blocks = blocks;
        _elements = elements;
        Text = text;
    }

    /// <summary>As written (`lbw=` value, element rules, or the structured fields), for the record of a generation.</summary>
    public string Text { get; }
    /// <summary>The prompt-tag items that reproduce these weights; null for the structured form, which tags cannot write.</summary>
    public string? TagText => _ids is not null && Text.Length > 0 ? Text : null;

    /// <summary>
    /// `lbw=` (a preset or a 12/17/20/26-value vector; null: 1 everywhere) with optional `lbwe=`
    /// element rules (a preset name or rules separated by commas).
    /// </summary>
    public static LoraBlockWeights Parse(string? weights, string? elements = null)
    {
        Dictionary<string, double>? ids = null;
        if (weights is not null)
        {
            string vector = Presets.TryGetValue(weights.Trim(), out var preset) ? preset : weights;
            var values = vector.Split(',', StringSplitOptions.TrimEntries);
            string[] names = values.Length switch
            {
                17 => Id17, 26 => Id26, 12 => Id12, 20 => Id20,
                _ => throw new UserErrorException(values.Length == 1
                    ? $"block weights '{weights}': not a preset ({string.Join(", ", Presets.Keys)}) nor a vector of 12, 17, 20 or 26 values"
                    : $"block weights '{weights}': {values.Length} values; a vector has 17 or 26 (SD1/SD2), 12 or 20 (SDXL)"),
            };
            ids = new Dictionary<string, double>(StringComparer.Ordinal);
            for (int i = 0; i < values.Length; i++)
                ids[names[i]] = double.TryParse(values[i], NumberStyles.Float, CultureInfo.InvariantCulture, out var v) && double.IsFinite(v) ? v
                    : throw new UserErrorException($"block weights '{weights}': '{values[i]}' is not a number (random R/U/X values are not supported)");
        }
        var rules = elements is null ? [] : ParseElements(elements);
        string text = string.Join(":", new[] { weights is null ? null : "lbw=" + weights, elements is null ? null : "lbwe=" + elements }.OfType<string>());
        return new LoraBlockWeights(ids ?? Id26.ToDictionary(i => i, _ => 1.0), null, rules, text);
    }

    /// <summary>The structured form (diffusers' set_adapters layout).</summary>
    public static LoraBlockWeights FromBlocks(LoraBlocks blocks)
    {
        static string List(IReadOnlyList<IReadOnlyList<double>>? l) => l is null ? "" : string.Join(";", l.Select(b => string.Join(",", b.Select(Num))));
        var text = $"te={(blocks.TextEncoder is { } t ? Num(t) : "")} down={List(blocks.Down)} mid={(blocks.Mid is { } m ? Num(m) : "")} up={List(blocks.Up)}";
        foreach (var (name, list) in new[] { ("down", blocks.Down), ("up", blocks.Up) })
            foreach (var (b, i) in (list ?? []).Select((b, i) => (b, i)))
                if (b.Count == 0) throw new UserErrorException($"blocks.{name}[{i}] is empty (give one weight for the block or one per layer)");
        return new LoraBlockWeights(null, blocks, [], text);
    }

    /// <summary>The weight of <paramref name="target"/>'s block (1 outside the blocks).</summary>
    public double WeightFor(LoraTarget target)
    {
        string? id = target.Component == LoraComponent.UNet ? target.Block?.Id : "BASE";
        double ratio = _ids is not null
            ? id is null ? 1 : _ids.TryGetValue(id, out var w) ? w : 0
            : Structured(target);
        if (_elements.Count > 0)
        {
            // the extension matches names as A1111 writes them (underscores), the block id appended
            string key = target.Name[..^".weight".Length].Replace('.', '_') + (id ?? "");
            foreach (var rule in _elements)
                if (rule.Matches(key)) ratio = rule.Ratio;
        }
        return ratio;
    }

    double Structured(LoraTarget target)
    {
        var b = _blocks!;
        if (target.Component != LoraComponent.UNet) return b.TextEncoder ?? 1;
        if (target.Block is not { } block) return 1;
        IReadOnlyList<IReadOnlyList<double>>? list = block.Stage switch { "down" => b.Down, "up" => b.Up, _ => null };
        if (block.Stage == "mid") return b.Mid ?? 1;
        if (list is null || block.Index >= list.Count) return 1;
        var values = list[block.Index];
        if (values.Count == 1) return values[0];
        if (block.Layer < 0) return values[^1]; // a downsampler follows its block's last layer
        return block.Layer < values.Count ? values[block.Layer]
            : throw new UserErrorException($"blocks.{block.Stage}[{block.Index}] has {values.Count} weights, but that block has more layers (give one weight or one per layer)");
    }

    static List<ElementRule> ParseElements(string text)
    {
        string spec = ElementPresets.TryGetValue(text.Trim(), out var preset) ? preset : text;
        var rules = new List<ElementRule>();
        foreach (var rule in spec.Replace("\n", ",", StringComparison.Ordinal).Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries))
        {
            var parts = rule.Split(':');
            if (parts.Length != 3 || !double.TryParse(parts[2], NumberStyles.Float, CultureInfo.InvariantCulture, out var ratio))
                throw new UserErrorException(parts.Length == 1
                    ? $"block elements '{text}': not a preset ({string.Join(", ", ElementPresets.Keys)}) nor BLOCKS:ELEMENTS:RATIO rules"
                    : $"block elements '{rule}': expected BLOCKS:ELEMENTS:RATIO, e.g. IN05-OUT05:attn:0");
            rules.Add(ElementRule.Parse(parts[0], parts[1], ratio));
        }
        return rules;
    }

    static string Num(double v) => v.ToString("0.####", CultureInfo.InvariantCulture);

    /// <summary>
    /// One element rule: blocks (ids or ID-ID ranges, space separated, `NOT` first inverts) and
    /// name fragments (space separated, `NOT` first inverts; empty matches all); a layer both
    /// select gets the ratio instead of its block weight.
    /// </summary>
    sealed record ElementRule(IReadOnlyList<string> Blocks, bool NotBlocks, IReadOnlyList<string> Elements, bool NotElements, double Ratio)
    {
        public static ElementRule Parse(string blocks, string elements, double ratio)
        {
            var b = blocks.Split(' ').ToList();
            bool notB = b[0] == "NOT";
            if (notB) b.RemoveAt(0);
            var expanded = new List<string>();
            foreach (var item in b)
            {
                int dash = item.IndexOf('-');
                if (dash < 0) { expanded.Add(item); continue; }
                int from = Array.IndexOf(Id26, item[..dash]), to = Array.IndexOf(Id26, item[(dash + 1)..]);
                if (from < 0 || to < 0) throw new UserErrorException($"block elements: '{item}' is not a range of block ids (IN00…OUT11)");
                expanded.AddRange(Id26[Math.Min(from, to)..(Math.Max(from, to) + 1)]);
            }
            var e = elements.Split(' ').ToList();
            bool notE = e[0] == "NOT";
            if (notE) e.RemoveAt(0);
            return new ElementRule(expanded, notB, e, notE, ratio);
        }

        public bool Matches(string key) =>
            Blocks.Any(key.Contains) != NotBlocks && Elements.Any(key.Contains) != NotElements;
    }
}
