using SkiaSharp;
using TorchSharp;
using static TorchSharp.torch;

namespace LoraCraft.Training;

/// <summary>
/// A training image as the VAE takes it (kohya's `trim_and_resize_if_required`): resized to the
/// bucket's resize size (area-like filtering when shrinking, cubic when enlarging), centre-cropped
/// to the bucket, [3, H, W] in [-1, 1], optionally mirrored.
/// </summary>
public static class ImagePreparation
{
    public static Tensor Load(TrainingImage image, bool flip = false)
    {
        var b = image.Bucket;
        using var decoded = SKBitmap.Decode(image.Path) ?? throw new UserErrorException($"{image.Path}: not a readable image");
        if (decoded.Width != image.Width || decoded.Height != image.Height)
            throw new UserErrorException($"{image.Path}: the image changed while training was being prepared");
        var info = new SKImageInfo(b.ResizedWidth, b.ResizedHeight, SKColorType.Rgba8888, SKAlphaType.Unpremul);
        bool shrink = b.ResizedWidth < image.Width;
        var sampling = shrink ? new SKSamplingOptions(SKFilterMode.Linear, SKMipmapMode.Linear) : new SKSamplingOptions(SKCubicResampler.Mitchell);
        using var rgba = decoded.ColorType == SKColorType.Rgba8888 && decoded.Width == b.ResizedWidth && decoded.Height == b.ResizedHeight
            ? decoded.Copy()
            : decoded.Resize(info, sampling) ?? throw new UserErrorException($"{image.Path}: cannot resize to {b.ResizedWidth}x{b.ResizedHeight}");
        int left = (rgba.Width - b.Width) / 2, top = (rgba.Height - b.Height) / 2;
        var bytes = rgba.Bytes;
        int rowBytes = rgba.RowBytes;
        var data = new float[3 * b.Width * b.Height];
        int plane = b.Width * b.Height;
        for (int y = 0; y < b.Height; y++)
            for (int x = 0; x < b.Width; x++)
            {
                int src = (top + y) * rowBytes + (left + (flip ? b.Width - 1 - x : x)) * 4;
                int dst = y * b.Width + x;
                data[dst] = bytes[src] / 127.5f - 1;
                data[plane + dst] = bytes[src + 1] / 127.5f - 1;
                data[2 * plane + dst] = bytes[src + 2] / 127.5f - 1;
            }
        return torch.tensor(data, [3, b.Height, b.Width]);
    }
}
