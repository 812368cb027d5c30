namespace LoraCraft.Models.Clip;

public enum ClipActivation { QuickGelu, Gelu }

/// <summary>Hyper-parameters of a CLIP text transformer (HF `CLIPTextConfig` fields we need).</summary>
public sealed record ClipTextConfig
{
    public int VocabSize { get; init; } = 49408;
    public int MaxPositions { get; init; } = 77;
    public required int Hidden { get; init; }
    public required int Intermediate { get; init; }
    public required int Layers { get; init; }
    public required int Heads { get; init; }
    public ClipActivation Activation { get; init; } = ClipActivation.QuickGelu;
    public double LayerNormEps { get; init; } = 1e-5;
    /// <summary>Output width of text_projection; 0 when the encoder has none.</summary>
    public int ProjectionDim { get; init; }
    public int EosTokenId { get; init; } = 49407;
}
