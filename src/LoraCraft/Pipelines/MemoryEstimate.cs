using LoraCraft.Models;
using LoraCraft.Models.Vae;

namespace LoraCraft.Pipelines;

/// <summary>
/// What a generation needs on top of the loaded weights, in bytes: the UNet's activations while
/// sampling, and the VAE's while decoding (whole image, or in tiles). The two phases do not
/// overlap (memory is handed back between them), so the peak is the larger of the two.
/// </summary>
/// <remarks>
/// Counted from the architecture, not measured per case: the UNet keeps its skip tensors (about
/// 5.5 × the first level's width per latent cell) and a transformer block's working set at the
/// largest level (the GEGLU feed-forward is 8 × wide, with q/k/v/attention and norms about 24 ×);
/// attention is the memory-efficient kind (no tokens² matrix). The VAE decoder's top levels hold
/// about 8 tensors of its first width per pixel. Whole-image tiling buffers, the decoded image and
/// its 8-bit copy add 40 bytes per pixel. On SD1.5 at 512² in bf16 this gives 0.13 GB for sampling
/// and 0.56 GB for decoding, next to the 0.6-0.7 GB measured above the weights (README).
/// </remarks>
public sealed record MemoryEstimate(long SamplingBytes, long DecodeBytes, long TiledDecodeBytes)
{
    /// <summary>Sides above this are refused outright (ComfyUI's EmptyLatentImage maximum).</summary>
    public const int MaxSide = 16384;

    public long Peak(bool tiled) => Math.Max(SamplingBytes, tiled ? TiledDecodeBytes : DecodeBytes);

    public static MemoryEstimate For(StableDiffusionModel model, int width, int height, bool guided) =>
        For(model.UNet.Config.BlockChannels[0], model.Vae.Config.BlockChannels[0], DTypeBytes(model), width, height, guided);

    public static MemoryEstimate For(int unetWidth, int vaeWidth, int bytes, int width, int height, bool guided)
    {
        long pixels = (long)width * height, cells = pixels / 64;
        long batch = guided ? 2 : 1;
        long sampling = batch * cells * unetWidth * 30L * bytes;
        long perPixelBuffers = 40L * pixels;
        long decode = 8L * vaeWidth * pixels * bytes + perPixelBuffers;
        // a tile is at most (Tile + Overlap) latent cells a side, 8 pixels each
        long tileSide = Math.Min((long)Math.Max(width, height), 8L * (VaeTiling.Tile + VaeTiling.Overlap));
        long tiled = 8L * vaeWidth * tileSide * tileSide * bytes + perPixelBuffers;
        return new MemoryEstimate(sampling, decode, Math.Min(tiled, decode));
    }

    static int DTypeBytes(StableDiffusionModel model) => model.DType == TorchSharp.torch.ScalarType.Float32 ? 4 : 2;

    /// <summary>
    /// The VAE tiling to use so the generation fits in <paramref name="availableBytes"/>: the
    /// requested mode when it fits; tiling turned on (with a note saying why) when only that fits
    /// and the user left it on auto; otherwise a refusal saying how much is needed and how much there is.
    /// </summary>
    public (VaeTilingMode Tiling, string? Note) Fit(VaeTilingMode requested, bool autoTiles, long availableBytes, int width, int height)
    {
        bool tiled = requested == VaeTilingMode.On || requested == VaeTilingMode.Auto && autoTiles;
        if (Peak(tiled) <= availableBytes) return (requested, null);
        if (!tiled && requested == VaeTilingMode.Auto && Peak(true) <= availableBytes)
            return (VaeTilingMode.On, $"VAE tiling turned on: decoding {width}x{height} whole needs about {Gb(DecodeBytes)}, {Gb(availableBytes)} is available");
        string hint = !tiled && Peak(true) <= availableBytes ? " (VAE tiling would fit: it is turned off)" : "";
        throw new UserErrorException($"{width}x{height} needs about {Gb(Peak(tiled))} of memory beyond the model, {Gb(availableBytes)} is available{hint}");
    }

    static string Gb(long bytes) => $"{bytes / 1e9:0.0} GB";
}
