using LoraCraft.Models.Clip;
using LoraCraft.Models.Loading;
using LoraCraft.Models.UNet;
using LoraCraft.Models.Vae;

namespace LoraCraft.Models.Random;

/// <summary>The checkpoint kinds `make-model` imitates.</summary>
public enum RandomModelKind { Sd15, Sd15Inpaint, Sd2, Sdxl }

/// <summary>Full: the real networks. Tiny: fixture-like widths, so that a generation takes seconds.</summary>
public enum RandomModelSize { Full, Tiny }

/// <summary>A text encoder of a single file: its config, its key prefix, and whether it is stored in
/// the OpenCLIP layout (fused q/k/v, `ln_1`, ...) rather than with Hugging Face names.</summary>
public sealed record TextTower(ClipTextConfig Config, string Prefix, bool OpenClip);

/// <summary>
/// The networks of one checkpoint kind and size, as configs (building a network from them
/// allocates no tensors). SD2's text encoder keeps all its layers, as real SD2 files do, though
/// conditioning uses the penultimate one and the loader drops the last.
/// </summary>
public sealed record RandomArchitecture(RandomModelKind Kind, RandomModelSize Size, UNetConfig UNet, VaeConfig Vae, IReadOnlyList<TextTower> Text)
{
    public ModelFamily Family => Kind switch
    {
        RandomModelKind.Sd2 => ModelFamily.Sd2,
        RandomModelKind.Sdxl => ModelFamily.Sdxl,
        _ => ModelFamily.Sd1,
    };

    public bool Inpainting => Kind == RandomModelKind.Sd15Inpaint;

    public static RandomArchitecture Of(RandomModelKind kind, RandomModelSize size)
    {
        bool tiny = size == RandomModelSize.Tiny;
        ClipTextConfig Tower(ClipTextConfig full, int tinyLayers) => !tiny ? full : full with
        {
            Hidden = 32, Intermediate = 64, Layers = tinyLayers, Heads = 4,
            VocabSize = ByteLevelTokenizer.VocabSize, EosTokenId = ByteLevelTokenizer.EndId,
            ProjectionDim = full.ProjectionDim > 0 ? 32 : 0,
        };
        var vae = tiny ? new VaeConfig { BlockChannels = [32, 32, 64, 64] } : VaeConfig.Standard;
        int inChannels = kind == RandomModelKind.Sd15Inpaint ? 9 : 4;
        return kind switch
        {
            RandomModelKind.Sd15 or RandomModelKind.Sd15Inpaint => new(kind, size,
                tiny ? UNetConfig.Sd15(inChannels) with { BlockChannels = [32, 32, 64, 64], ContextDim = 32 } : UNetConfig.Sd15(inChannels),
                vae, [new TextTower(Tower(ClipL, 4), CheckpointLayout.Sd1TextPrefix, OpenClip: false)]),
            RandomModelKind.Sd2 => new(kind, size,
                tiny ? UNetConfig.Sd2() with { BlockChannels = [32, 32, 64, 64], Heads = [2, 2, 4, 4], ContextDim = 32 } : UNetConfig.Sd2(),
                // tiny: 5 stored layers, 4 used, as in the sd2v fixture
                vae, [new TextTower(Tower(OpenClipH, 5), CheckpointLayout.Sd2TextPrefix, OpenClip: true)]),
            RandomModelKind.Sdxl => new(kind, size,
                tiny ? UNetConfig.Sdxl() with
                {
                    BlockChannels = [32, 64, 64], TransformerDepth = [0, 1, 2], MidTransformerDepth = 2, Heads = [2, 4, 4],
                    ContextDim = 64, AdmInChannels = 32 + 6 * 8, AdditionTimeEmbedDim = 8,
                } : UNetConfig.Sdxl(),
                vae,
                [
                    new TextTower(Tower(ClipL, 4), CheckpointLayout.SdxlText1Prefix, OpenClip: false),
                    new TextTower(Tower(OpenClipBigG, 4), CheckpointLayout.SdxlText2Prefix, OpenClip: true),
                ]),
            _ => throw new ArgumentOutOfRangeException(nameof(kind), kind, null),
        };
    }

    static ClipTextConfig ClipL => new() { Hidden = 768, Intermediate = 3072, Layers = 12, Heads = 12, Activation = ClipActivation.QuickGelu };

    static ClipTextConfig OpenClipH => new() { Hidden = 1024, Intermediate = 4096, Layers = 24, Heads = 16, Activation = ClipActivation.Gelu };

    static ClipTextConfig OpenClipBigG => new()
    {
        Hidden = 1280, Intermediate = 5120, Layers = 32, Heads = 20, Activation = ClipActivation.Gelu, ProjectionDim = 1280,
    };
}
