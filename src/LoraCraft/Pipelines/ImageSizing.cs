namespace LoraCraft.Pipelines;

/// <summary>
/// The working size of an img2img or inpainting job, from the init image and whatever size was
/// asked for. Nothing fails on a size mismatch: the image is resized as A1111's resize mode 0
/// ("just resize") does, and a note says so.
/// </summary>
public static class ImageSizing
{
    /// <summary>
    /// No size asked: the image's own, rounded down to multiples of 8. One side asked: the other
    /// follows the image's aspect ratio (a multiple of 8). Both asked: those.
    /// </summary>
    public static (int Width, int Height) WorkingSize(int imageWidth, int imageHeight, int? width, int? height)
    {
        if (imageWidth < 8 || imageHeight < 8)
            throw new UserErrorException($"the init image is {imageWidth}x{imageHeight}; it must be at least 8x8");
        if (width is { } w && height is { } h) return (w, h);
        if (width is { } onlyW) return (onlyW, Round8((double)imageHeight * onlyW / imageWidth));
        if (height is { } onlyH) return (Round8((double)imageWidth * onlyH / imageHeight), onlyH);
        return (imageWidth / 8 * 8, imageHeight / 8 * 8);
    }

    static int Round8(double v) => Math.Max(8, (int)Math.Round(v / 8) * 8);

    /// <summary>The note to show when <paramref name="what"/> (e.g. "init image") is resized, or null.</summary>
    public static string? ResizeNote(string what, int fromWidth, int fromHeight, int toWidth, int toHeight)
    {
        if (fromWidth == toWidth && fromHeight == toHeight) return null;
        bool rounding = toWidth == fromWidth / 8 * 8 && toHeight == fromHeight / 8 * 8;
        string why = rounding ? "rounded down to multiples of 8" : "A1111's \"just resize\"";
        string aspect = (long)fromWidth * toHeight != (long)toWidth * fromHeight && !rounding ? "; its aspect ratio changes" : "";
        return $"{what} {fromWidth}x{fromHeight} resized to {toWidth}x{toHeight} ({why}{aspect})";
    }
}
