using LoraCraft.Models;
using LoraCraft.Sampling;
using TorchSharp;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace LoraCraft.Pipelines;

/// <summary>A rectangle of whole pixels: columns X..X+Width-1, rows Y..Y+Height-1.</summary>
public readonly record struct CropBox(int X, int Y, int Width, int Height);

/// <summary>Where to cut and at what size to inpaint: the crop box in the image and the working size it is resized to.</summary>
public sealed record CropPlan(CropBox Box, int WorkingWidth, int WorkingHeight);

/// <summary>Settings of crop-and-stitch inpainting (ComfyUI's "Inpaint Crop" / "Inpaint Stitch" nodes).</summary>
public sealed record CropOptions
{
    /// <summary>Pixels of context kept around the mask's bounding box on every side (before aspect growth).</summary>
    public int ContextMargin { get; init; } = 32;
    /// <summary>Long side of the working image; snapped to the nearest multiple of <see cref="Multiple"/> (at least one).</summary>
    public int WorkingSize { get; init; } = 512;
    /// <summary>Both working sides are multiples of this: 64 keeps the UNet's three halvings of the latent exact.</summary>
    public int Multiple { get; init; } = 64;
    /// <summary>Width in pixels of the blend ramp grown outward from the mask (0: hard edge).</summary>
    public int Feather { get; init; } = 32;

    public int WorkingLongSide => Math.Max(Multiple, (int)Math.Round(WorkingSize / (double)Multiple, MidpointRounding.AwayFromZero) * Multiple);

    public void Validate()
    {
        if (ContextMargin < 0) throw new UserErrorException($"context margin must be 0 or more, got {ContextMargin}");
        if (Feather < 0) throw new UserErrorException($"feather must be 0 or more, got {Feather}");
        if (Multiple <= 0 || Multiple % 8 != 0) throw new UserErrorException($"size multiple must be a positive multiple of 8, got {Multiple}");
        if (WorkingSize <= 0) throw new UserErrorException($"working size must be positive, got {WorkingSize}");
    }
}

/// <summary>The stitched full-size image [1,3,H,W] and, for logging, where it was cut and how large it was inpainted.</summary>
public sealed record CropAndStitchResult(Tensor Image, CropBox Box, int WorkingWidth, int WorkingHeight) : IDisposable
{
    public void Dispose() => Image.Dispose();
}

/// <summary>
/// What <see cref="CropAndStitch.Crop"/> cut: the full image, the feathered blend mask of the box,
/// the box, and the crop with its mask at the working size (what the sampler gets). Owns its tensors.
/// </summary>
public sealed record CropState(Tensor Source, Tensor Blend, CropBox Box, Tensor Image, Tensor Mask) : IDisposable
{
    public int WorkingWidth => (int)Image.shape[3];
    public int WorkingHeight => (int)Image.shape[2];

    public void Dispose()
    {
        Source.Dispose();
        Blend.Dispose();
        Image.Dispose();
        Mask.Dispose();
    }
}

/// <summary>
/// Inpaints only the region around the mask, at a working resolution of the caller's choice, and
/// pastes the result back with a feathered edge; pixels outside the feather are copied, never
/// recomputed, so they stay byte-identical. Steps:
/// 1. Box = the mask's bounding box (pixels > 0) grown by max(context margin, feather) on
///    every side, clamped to the image. The feather is included so its ramp is never cut off.
/// 2. Working size: the long side is <see cref="CropOptions.WorkingLongSide"/> (L; at most L in c) and the short side
///    S is a multiple M of <see cref="CropOptions.Multiple"/> chosen so that the box can take the
///    aspect L:S by growing, centred, then shifted back inside the image:
///    a. S = the box's ideal short side L*short/long rounded up to M; the box's short side grows to
///       round(long*S/L). Used when that fits in the image.
///    b. else S = the ideal rounded down (if at least M); the long side grows to round(short*L/S).
///    c. else (the image is too narrow for either) the short side spans the whole image, S is
///       L*short/long rounded down (at least M) and the long working side is the multiple nearest
///       to S*long/short (at most L): the resize stretches by at most M/2 along the long side.
/// 3. The crop and the feathered mask are resized to the working size (bilinear antialiased when
///    shrinking, bicubic when growing: the node's defaults) and given to the inpaint delegate. The
///    delegate gets the feathered mask, as the node's sampler does, so the model repaints the band
///    that the stitch blends instead of leaving it to a VAE round trip of the original.
/// 4. Its result is resized back to the box and blended: out = crop*(1-b) + result*b where the
///    blend b (see <see cref="Feather"/>) is positive, the original pixels elsewhere.
/// </summary>
public static class CropAndStitch
{
    public const string EmptyMask = "the mask is empty (all black): nothing to inpaint; paint the area to repaint in white";

    /// <summary>
    /// Crop, inpaint with <paramref name="inpaint"/> (crop [1,3,h,w] in [0,1], feathered mask [1,1,h,w]
    /// -> result [1,3,h,w]; h, w the working size), stitch. Image [1,3,H,W] in [0,1]; mask [1,1,H,W], 1 = repaint.
    /// Tensors the delegate creates are disposed when this returns.
    /// </summary>
    public static CropAndStitchResult Inpaint(Tensor image, Tensor mask, Func<Tensor, Tensor, Tensor> inpaint, CropOptions? options = null)
    {
        using var noGrad = torch.no_grad();
        using var scope = NewDisposeScope();
        using var crop = Crop(image, mask, options);
        var result = inpaint(crop.Image, crop.Mask);
        if (result.dim() != 4 || result.shape[0] != 1 || result.shape[1] != 3 || result.shape[2] != crop.WorkingHeight || result.shape[3] != crop.WorkingWidth)
            throw new InvalidOperationException($"the inpaint step returned [{string.Join(",", result.shape)}], expected [1,3,{crop.WorkingHeight},{crop.WorkingWidth}]");
        var output = Stitch(crop, result);
        return new CropAndStitchResult(output.MoveToOuterDisposeScope(), crop.Box, crop.WorkingWidth, crop.WorkingHeight);
    }

    /// <summary>
    /// The first half of <see cref="Inpaint(Tensor, Tensor, Func{Tensor, Tensor, Tensor}, CropOptions?)"/>
    /// (ComfyUI's Inpaint Crop node): the crop and its feathered mask at the working size, and what
    /// <see cref="Stitch"/> needs to paste a result back. Image [1,3,H,W] in [0,1]; mask [1,1,H,W], 1 = repaint.
    /// </summary>
    /// <param name="bounds">the area to keep in the crop (a context mask's box joined to the mask's); null: the mask's bounds</param>
    public static CropState Crop(Tensor image, Tensor mask, CropOptions? options = null, CropBox? bounds = null)
    {
        options ??= new CropOptions();
        options.Validate();
        if (image.dim() != 4 || image.shape[0] != 1 || image.shape[1] != 3)
            throw new ArgumentException($"image must be [1,3,H,W], got [{string.Join(",", image.shape)}]", nameof(image));
        if (mask.dim() != 4 || mask.shape[0] != 1 || mask.shape[1] != 1)
            throw new ArgumentException($"mask must be [1,1,H,W], got [{string.Join(",", mask.shape)}]", nameof(mask));
        int height = (int)image.shape[2], width = (int)image.shape[3];
        if (mask.shape[2] != height || mask.shape[3] != width)
            throw new UserErrorException($"mask is {mask.shape[3]}x{mask.shape[2]} but the image is {width}x{height}: resize the mask to the image");

        using var noGrad = torch.no_grad();
        using var scope = NewDisposeScope();
        var maskBounds = MaskBounds(mask) ?? throw new UserErrorException(EmptyMask);
        var (box, ww, wh) = Plan(width, height, bounds ?? maskBounds, options);
        var source = image.to(ScalarType.Float32).clone();
        var blend = Feather(Cut(mask, box), options.Feather);
        var working = Resize(Cut(source, box), ww, wh);
        var workingMask = Resize(blend, ww, wh);
        return new CropState(source.MoveToOuterDisposeScope(), blend.MoveToOuterDisposeScope(), box,
                             working.MoveToOuterDisposeScope(), workingMask.MoveToOuterDisposeScope());
    }

    /// <summary>
    /// The second half (ComfyUI's Inpaint Stitch node): <paramref name="result"/> [1,3,h,w] (any
    /// size; normally the working size) resized back to the box and blended into a copy of the
    /// original; pixels outside the feather are the original's, byte for byte.
    /// </summary>
    public static Tensor Stitch(CropState crop, Tensor result)
    {
        if (result.dim() != 4 || result.shape[0] != 1 || result.shape[1] != 3)
            throw new ArgumentException($"the inpainted image must be [1,3,h,w], got [{string.Join(",", result.shape)}]", nameof(result));
        using var noGrad = torch.no_grad();
        using var scope = NewDisposeScope();
        var box = crop.Box;
        var original = Cut(crop.Source, box);
        var back = Resize(result.to(ScalarType.Float32), box.Width, box.Height);
        var stitched = where(crop.Blend.Greater(0), (original * crop.Blend.RSub(1)).Add(back * crop.Blend), original);
        var output = crop.Source.clone();
        Cut(output, box).copy_(stitched);
        return output.MoveToOuterDisposeScope();
    }

    /// <summary>
    /// Crop-and-stitch with the pipeline: <paramref name="request"/>'s InitImage and Mask are the
    /// full-size inputs; its Width and Height are replaced by the working size.
    /// </summary>
    public static CropAndStitchResult Inpaint(StableDiffusionModel model, GenerationRequest request, CropOptions? options = null, SamplerContext? ctx = null)
    {
        var image = request.InitImage ?? throw new UserErrorException("crop-and-stitch inpainting needs an init image");
        var mask = request.Mask ?? throw new UserErrorException("crop-and-stitch inpainting needs a mask");
        return Inpaint(image, mask, (crop, cropMask) => StableDiffusionPipeline.Generate(model, request with
        {
            InitImage = crop,
            Mask = cropMask,
            Width = (int)crop.shape[3],
            Height = (int)crop.shape[2],
        }, ctx).Image, options);
    }

    /// <summary>Bounding box of the mask's pixels above 0, null when there are none.</summary>
    public static CropBox? MaskBounds(Tensor mask)
    {
        using var scope = NewDisposeScope();
        var nonzero = mask[0, 0].Greater(0);
        var rows = nonzero.any(1).data<bool>().ToArray();
        var cols = nonzero.any(0).data<bool>().ToArray();
        int top = Array.IndexOf(rows, true), left = Array.IndexOf(cols, true);
        if (top < 0) return null;
        int bottom = Array.LastIndexOf(rows, true), right = Array.LastIndexOf(cols, true);
        return new CropBox(left, top, right - left + 1, bottom - top + 1);
    }

    /// <summary>The crop box and working size for a mask with these bounds (the class summary gives the rules).</summary>
    public static CropPlan Plan(int imageWidth, int imageHeight, CropBox maskBounds, CropOptions options)
    {
        options.Validate();
        int grow = Math.Max(options.ContextMargin, options.Feather), m = options.Multiple, l = options.WorkingLongSide;
        int x0 = Math.Max(0, maskBounds.X - grow), y0 = Math.Max(0, maskBounds.Y - grow);
        int x1 = Math.Min(imageWidth, maskBounds.X + maskBounds.Width + grow), y1 = Math.Min(imageHeight, maskBounds.Y + maskBounds.Height + grow);
        bool landscape = x1 - x0 >= y1 - y0;
        // along the long and short axes of the box: start, length, image extent
        var (longStart, longLen, longImage) = landscape ? (x0, x1 - x0, imageWidth) : (y0, y1 - y0, imageHeight);
        var (shortStart, shortLen, shortImage) = landscape ? (y0, y1 - y0, imageHeight) : (x0, x1 - x0, imageWidth);

        long ideal = (long)l * shortLen, unit = (long)longLen * m;   // ideal short side = ideal / longLen
        int up = (int)((ideal + unit - 1) / unit) * m, down = (int)(ideal / unit) * m;
        int newLong = longLen, newShort = (int)((2L * longLen * up + l) / (2L * l)), workingShort = up, workingLong = l;
        if (newShort > shortImage)
        {
            newShort = shortLen;
            int longNeeded = down >= m ? (int)((2L * shortLen * l + down) / (2L * down)) : int.MaxValue;
            if (longNeeded <= longImage)
            {
                newLong = longNeeded;
                workingShort = down;
            }
            else
            {
                // rounding the short side down keeps the long working side at most L
                newShort = shortImage;
                workingShort = (int)Math.Max(m, (long)l * shortImage / unit * m);
                long across = (long)shortImage * m;
                workingLong = (int)Math.Min(l, ((long)workingShort * longLen + across / 2) / across * m);
            }
        }
        longStart = Place(longStart, longLen, newLong, longImage);
        shortStart = Place(shortStart, shortLen, newShort, shortImage);
        return landscape
            ? new CropPlan(new CropBox(longStart, shortStart, newLong, newShort), workingLong, workingShort)
            : new CropPlan(new CropBox(shortStart, longStart, newShort, newLong), workingShort, workingLong);

        // grow around the centre, then shift back inside [0, limit)
        static int Place(int start, int len, int newLen, int limit) => Math.Clamp(start - (newLen - len) / 2, 0, limit - newLen);
    }

    /// <summary>
    /// Blend weights [1,1,H,W] for a mask [1,1,H,W]: 1 where the mask is at least 0.5, falling
    /// with a smoothstep of the Euclidean distance to that region to 0 at <paramref name="radius"/>
    /// pixels, and never below the mask itself (weaker mask values keep their weight). The
    /// smoothstep, unlike a linear ramp, leaves no visible kink at either end of the band.
    /// </summary>
    public static Tensor Feather(Tensor mask, int radius)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(radius);
        using var scope = NewDisposeScope();
        var clamped = mask.to(ScalarType.Float32).Clamp(0, 1).contiguous();
        if (radius == 0) return clamped.MoveToOuterDisposeScope();
        int h = (int)mask.shape[2], w = (int)mask.shape[3];
        var values = clamped.data<float>().ToArray();
        var dist2 = SquaredDistances(values, w, h);
        if (dist2 is null) return clamped.MoveToOuterDisposeScope();
        for (int i = 0; i < values.Length; i++)
        {
            double t = Math.Clamp(1 - Math.Sqrt(dist2[i]) / radius, 0, 1);
            values[i] = Math.Max(values[i], (float)(t * t * (3 - 2 * t)));
        }
        return torch.tensor(values, [1, 1, h, w]).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// Exact squared Euclidean distance of every pixel to the nearest one with value >= 0.5
    /// (Felzenszwalb and Huttenlocher's two-pass transform), null when there is none.
    /// </summary>
    static double[]? SquaredDistances(float[] values, int w, int h)
    {
        // larger than any real squared distance, small enough to keep the arithmetic exact
        double far = (double)(w + h) * (w + h);
        var d = new double[values.Length];
        bool any = false;
        for (int i = 0; i < values.Length; i++)
        {
            bool inside = values[i] >= 0.5f;
            d[i] = inside ? 0 : far;
            any |= inside;
        }
        if (!any) return null;
        int n = Math.Max(w, h);
        var f = new double[n];
        var outLine = new double[n];
        var v = new int[n];
        var z = new double[n + 1];
        for (int x = 0; x < w; x++)
        {
            for (int y = 0; y < h; y++) f[y] = d[y * w + x];
            Transform1D(f, outLine, h, v, z);
            for (int y = 0; y < h; y++) d[y * w + x] = outLine[y];
        }
        for (int y = 0; y < h; y++)
        {
            Array.Copy(d, y * w, f, 0, w);
            Transform1D(f, outLine, w, v, z);
            Array.Copy(outLine, 0, d, y * w, w);
        }
        return d;
    }

    /// <summary>d[q] = min over p of (q - p)^2 + f[p], via the lower envelope of the parabolas.</summary>
    static void Transform1D(double[] f, double[] d, int n, int[] v, double[] z)
    {
        int k = 0;
        v[0] = 0;
        z[0] = double.NegativeInfinity;
        z[1] = double.PositiveInfinity;
        for (int q = 1; q < n; q++)
        {
            double s;
            while ((s = (f[q] + (double)q * q - f[v[k]] - (double)v[k] * v[k]) / (2.0 * (q - v[k]))) <= z[k]) k--;
            k++;
            v[k] = q;
            z[k] = s;
            z[k + 1] = double.PositiveInfinity;
        }
        k = 0;
        for (int q = 0; q < n; q++)
        {
            while (z[k + 1] < q) k++;
            d[q] = (double)(q - v[k]) * (q - v[k]) + f[v[k]];
        }
    }

    static Tensor Cut(Tensor x, CropBox box) => x.narrow(2, box.Y, box.Height).narrow(3, box.X, box.Width);

    /// <summary>Bilinear with antialiasing when either side shrinks, bicubic otherwise (the node's defaults); clamped to [0,1].</summary>
    static Tensor Resize(Tensor x, int width, int height)
    {
        long h = x.shape[2], w = x.shape[3];
        if (h == height && w == width) return x.clone();
        bool shrinks = width < w || height < h;
        var resized = F.interpolate(x, [height, width], mode: shrinks ? InterpolationMode.Bilinear : InterpolationMode.Bicubic,
                                    align_corners: false, antialias: shrinks);
        return resized.Clamp(0, 1);
    }
}
