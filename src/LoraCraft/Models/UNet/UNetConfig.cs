namespace LoraCraft.Models.UNet;

/// <summary>
/// Hyper-parameters of an LDM/SGM UNet. Per-level lists run from the highest resolution down.
/// Heads: either a fixed count per level (SD1: 8) or derived from a head width (SD2/SDXL: 64).
/// </summary>
public sealed record UNetConfig
{
    public int InChannels { get; init; } = 4;
    public int OutChannels { get; init; } = 4;
    public required int[] BlockChannels { get; init; }
    public int ResBlocksPerLevel { get; init; } = 2;
    /// <summary>Transformer depth per level; 0 means the level has no attention (SDXL level 0).</summary>
    public required int[] TransformerDepth { get; init; }
    public required int MidTransformerDepth { get; init; }
    public required int[] Heads { get; init; }
    public required int ContextDim { get; init; }
    /// <summary>SD2/SDXL project in and out of the transformer with linear layers, SD1 with 1x1 convs.</summary>
    public bool LinearProjection { get; init; }
    /// <summary>SDXL: width of the `y` vector (pooled text + embedded size/crop ids); 0 if absent.</summary>
    public int AdmInChannels { get; init; }
    /// <summary>SDXL: sinusoidal width of each of the six time ids.</summary>
    public int AdditionTimeEmbedDim { get; init; }
    public int NormGroups { get; init; } = 32;
    public int TimeEmbedDim => BlockChannels[0] * 4;

    public static UNetConfig Sd15(int inChannels = 4) => new()
    {
        InChannels = inChannels,
        BlockChannels = [320, 640, 1280, 1280],
        TransformerDepth = [1, 1, 1, 0],
        MidTransformerDepth = 1,
        Heads = [8, 8, 8, 8],
        ContextDim = 768,
    };

    public static UNetConfig Sd2(int inChannels = 4) => new()
    {
        InChannels = inChannels,
        BlockChannels = [320, 640, 1280, 1280],
        TransformerDepth = [1, 1, 1, 0],
        MidTransformerDepth = 1,
        Heads = [5, 10, 20, 20], // head width 64
        ContextDim = 1024,
        LinearProjection = true,
    };

    public static UNetConfig Sdxl(int inChannels = 4) => new()
    {
        InChannels = inChannels,
        BlockChannels = [320, 640, 1280],
        TransformerDepth = [0, 2, 10],
        MidTransformerDepth = 10,
        Heads = [5, 10, 20],
        ContextDim = 2048,
        LinearProjection = true,
        AdmInChannels = 2816,
        AdditionTimeEmbedDim = 256,
    };
}
