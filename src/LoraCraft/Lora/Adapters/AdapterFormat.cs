using static TorchSharp.torch;

namespace LoraCraft.Lora.Adapters;

/// <summary>
/// How one adapter type is written in files: the tensor-name suffixes it owns (each mapped to a
/// part name), which combinations of parts make a module of this type, what its rank and input
/// width are (from shapes alone, so a header suffices), and how its module is built from the
/// tensors. <see cref="AdapterFormats.All"/> lists them; loading and listing both go through it.
/// </summary>
public abstract class AdapterFormat
{
    /// <summary>File suffix (after the module key) -> part name; several spellings may name one part.</summary>
    public abstract IReadOnlyList<(string Suffix, string Part)> Suffixes { get; }

    /// <summary>
    /// The parts this type reads from a module that has <paramref name="parts"/> (name -> shape),
    /// or null when the module is not of this type. Parts it does not read stay unknown.
    /// </summary>
    public abstract IReadOnlyList<string>? Claim(IReadOnlyDictionary<string, long[]> parts);

    public abstract LoraAlgorithm Algorithm(IReadOnlyDictionary<string, long[]> parts);
    public virtual long? Rank(IReadOnlyDictionary<string, long[]> parts) => null;
    /// <summary>The adapted layer's input width, when the shapes show it.</summary>
    public virtual long? InputWidth(IReadOnlyDictionary<string, long[]> parts) => null;

    /// <param name="read">loads a claimed part (file dtype; the module owns it)</param>
    public abstract AdapterModule Load(string key, IReadOnlyDictionary<string, long[]> shapes, Func<string, Tensor> read, float? alpha, Tensor? doraScale);

    /// <summary>Whether every one of <paramref name="names"/> is present.</summary>
    protected static bool Has(IReadOnlyDictionary<string, long[]> parts, params string[] names) => names.All(parts.ContainsKey);
}
