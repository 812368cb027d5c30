using SkiaSharp;

namespace LoraCraft.Lora.Hub;

/// <summary>A card preview as PNG: sites serve JPEG or WebP, A1111 and Civitai Helper look for `NAME.preview.png`.</summary>
internal static class PreviewImage
{
    /// <summary>The image re-encoded as PNG (PNG bytes are kept as they are); null when the bytes are no image SkiaSharp reads (a video, say).</summary>
    public static byte[]? ToPng(byte[] bytes)
    {
        if (bytes.Length >= 8 && bytes.AsSpan(0, 8).SequenceEqual(new byte[] { 137, 80, 78, 71, 13, 10, 26, 10 })) return bytes;
        using var bitmap = SKBitmap.Decode(bytes);
        if (bitmap is null) return null;
        using var data = bitmap.Encode(SKEncodedImageFormat.Png, 100);
        return data?.ToArray();
    }
}
