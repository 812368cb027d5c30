using SkiaSharp;

namespace LoraCraft.Server;

/// <summary>
/// A1111's img2img `resize_mode` on the encoded image (bitmaps only, no tensors on HTTP threads):
/// 0 just resize (left to the engine, which resizes to the working size), 1 crop and resize (cover,
/// then centre crop), 2 resize and fill (fit, the rest filled from the image stretched to the
/// frame), 3 latent upscale (treated as 0: we resize pixels).
/// </summary>
public static class A1111Resize
{
    public static byte[] Apply(byte[] encoded, int mode, int width, int height)
    {
        if (mode is < 0 or > 3) throw new UserErrorException($"resize_mode must be 0, 1, 2 or 3, got {mode}") { Field = "resize_mode" };
        if (mode is 0 or 3) return encoded;
        using var source = SKBitmap.Decode(encoded) ?? throw new UserErrorException("init_images: not a readable image") { Field = "init_images" };
        using var surface = SKSurface.Create(new SKImageInfo(width, height, SKColorType.Rgba8888, SKAlphaType.Unpremul));
        var canvas = surface.Canvas;
        using var image = SKImage.FromBitmap(source);
        var sampling = new SKSamplingOptions(SKCubicResampler.Mitchell);
        double sx = (double)width / source.Width, sy = (double)height / source.Height;
        double scale = mode == 1 ? Math.Max(sx, sy) : Math.Min(sx, sy);
        float w = (float)(source.Width * scale), h = (float)(source.Height * scale);
        if (mode == 2) canvas.DrawImage(image, new SKRect(0, 0, width, height), sampling); // the frame: the image stretched
        canvas.DrawImage(image, SKRect.Create((width - w) / 2, (height - h) / 2, w, h), sampling);
        using var snapshot = surface.Snapshot();
        using var data = snapshot.Encode(SKEncodedImageFormat.Png, 100);
        return data.ToArray();
    }
}
