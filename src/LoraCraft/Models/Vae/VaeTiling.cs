using TorchSharp;
using static TorchSharp.torch;

namespace LoraCraft.Models.Vae;

public enum VaeTilingMode { Auto, On, Off }

/// <summary>
/// Decodes and encodes large images in overlapping tiles so memory stays bounded: each tile is
/// processed alone and tiles are blended with linear ramps across the overlap. The VAE's mid-block
/// attention sees only its tile, so results differ slightly from a whole-image pass (measured in tests).
/// </summary>
public static class VaeTiling
{
    /// <summary>Latent tile side (64 = 512 px) and overlap (16 = 128 px).</summary>
    public const int Tile = 64, Overlap = 16;

    /// <summary>Auto tiles latents larger than 96x96 (768 px square): SD1 512 px stays a single pass.</summary>
    public static bool ShouldTile(VaeTilingMode mode, long latentHeight, long latentWidth) => mode switch
    {
        VaeTilingMode.On => latentHeight > Tile || latentWidth > Tile,
        VaeTilingMode.Off => false,
        _ => latentHeight * latentWidth > 96 * 96,
    };

    public static VaeTilingMode Parse(string? s) => s switch
    {
        null or "auto" => VaeTilingMode.Auto,
        "on" => VaeTilingMode.On,
        "off" => VaeTilingMode.Off,
        _ => throw new UserErrorException($"vae_tiling must be auto, on or off, got '{s}'") { Field = "vae_tiling" },
    };

    /// <summary>Unscaled latent [1,C,h,w] -> image [1,3,8h,8w] like <see cref="VaeModel.Decode"/>, tile by tile.</summary>
    public static Tensor Decode(VaeModel vae, Tensor latent, int tile = Tile, int overlap = Overlap) =>
        Blend(latent, tile, overlap, 8, 3, vae.Decode);

    /// <summary>Image [1,3,H,W] in [-1,1] -> latent mean [1,C,H/8,W/8], tile by tile (image tiles of 8 * tile).</summary>
    public static Tensor EncodeMean(VaeModel vae, Tensor image, int tile = Tile, int overlap = Overlap) =>
        Blend(image, tile, overlap, 1, vae.Config.LatentChannels, t => vae.Encode(t).Mean, outScale: 8);

    /// <summary>
    /// Runs <paramref name="f"/> on overlapping tiles of <paramref name="input"/> and blends the
    /// outputs. Output size = input size * scaleUp / outScale. Tiles are laid out on the coarser
    /// grid (the latent's: <paramref name="outScale"/> input pixels per cell when encoding), so every
    /// tile edge falls on a latent cell whatever the image size (a 72 px side is 9 cells).
    /// </summary>
    internal static Tensor Blend(Tensor input, int tile, int overlap, int scaleUp, int outChannels, Func<Tensor, Tensor> f, int outScale = 1)
    {
        using var scope = NewDisposeScope();
        long h = input.shape[2], w = input.shape[3];
        if (h % outScale != 0 || w % outScale != 0)
            throw new ArgumentException($"tiled input {w}x{h} is not a multiple of {outScale}");
        long oh = h * scaleUp / outScale, ow = w * scaleUp / outScale;
        var sum = zeros(input.shape[0], outChannels, oh, ow);
        var weight = zeros(1, 1, oh, ow);
        var (rows, th) = Scaled(Layout(h / outScale, tile, overlap), outScale);
        var (cols, tw) = Scaled(Layout(w / outScale, tile, overlap), outScale);
        foreach (var y in rows)
            foreach (var x in cols)
            {
                using var inner = NewDisposeScope();
                var part = f(input[.., .., (int)y..(int)(y + th), (int)x..(int)(x + tw)]).to(ScalarType.Float32);
                long py = y * scaleUp / outScale, px = x * scaleUp / outScale, ph = part.shape[2], pw = part.shape[3];
                int ramp = overlap * scaleUp;
                var mask = Ramp(ph, ramp, y > 0, y + th < h).unsqueeze(1) * Ramp(pw, ramp, x > 0, x + tw < w).unsqueeze(0);
                sum[.., .., (int)py..(int)(py + ph), (int)px..(int)(px + pw)].AddInPlace(part * mask);
                weight[.., .., (int)py..(int)(py + ph), (int)px..(int)(px + pw)].AddInPlace(mask);
            }
        return (sum / weight).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// Tiles covering [0, n): about n / (tile - overlap) of them, resized so they share exactly
    /// <paramref name="overlap"/> with each neighbour (128 latent rows -> two tiles of 72, not three of 64).
    /// </summary>
    internal static (long[] Starts, long Size) Layout(long n, int tile, int overlap)
    {
        if (n <= tile) return ([0], n);
        long count = Math.Max(2, (long)Math.Round((double)(n - overlap) / (tile - overlap)));
        long size = (n + (count - 1) * overlap + count - 1) / count;
        var starts = new long[count];
        for (long i = 0; i < count; i++) starts[i] = Math.Min(i * (size - overlap), n - size);
        return (starts, size);
    }

    static (long[] Starts, long Size) Scaled((long[] Starts, long Size) layout, int unit) =>
        (layout.Starts.Select(s => s * unit).ToArray(), layout.Size * unit);

    /// <summary>Weights rising linearly over the overlap at edges shared with a neighbour tile.</summary>
    static Tensor Ramp(long n, int ramp, bool fadeIn, bool fadeOut)
    {
        var r = ones(n);
        ramp = (int)Math.Min(ramp, n / 2);
        if (ramp <= 0) return r;
        var up = linspace(1.0 / (ramp + 1), ramp / (ramp + 1.0), ramp);
        if (fadeIn) r[..ramp] = up;
        if (fadeOut) r[(int)(n - ramp)..] = up.flip(0);
        return r;
    }
}
