namespace LoraCraft.Training;

/// <summary>Where an image goes: its bucket (training size), the size it is resized to before the crop, and the aspect error.</summary>
public readonly record struct BucketChoice(int Width, int Height, int ResizedWidth, int ResizedHeight, double AspectError);

/// <summary>
/// kohya's aspect-ratio buckets, as `model_util.make_bucket_resolutions` and
/// `BucketManager.select_bucket` compute them (same arithmetic, same tie-breaking): without
/// no-upscale an image takes the predefined bucket of nearest aspect ratio and is scaled to cover
/// it; with no-upscale it is only shrunk (when larger than the area) and the bucket is its size
/// rounded down to the step.
/// </summary>
public sealed class BucketManager
{
    readonly List<(int W, int H)> _predefined;
    readonly HashSet<(int, int)> _predefinedSet;
    readonly double[] _aspects;

    public bool NoUpscale { get; }
    public int MaxArea { get; }
    public int Steps { get; }
    public IReadOnlyList<(int Width, int Height)> Predefined => _predefined;

    BucketManager(bool noUpscale, int maxArea, int steps, List<(int, int)> predefined)
    {
        NoUpscale = noUpscale;
        MaxArea = maxArea;
        Steps = steps;
        _predefined = predefined;
        _predefinedSet = predefined.ToHashSet();
        _aspects = predefined.Select(r => r.Item1 / (double)r.Item2).ToArray();
    }

    /// <summary>Bucketing on (kohya `enable_bucket`).</summary>
    public static BucketManager Create(int width, int height, int minSize, int maxSize, int steps, bool noUpscale)
    {
        if (steps < 8 || steps % 8 != 0) throw new UserErrorException($"the bucket step must be a positive multiple of 8, got {steps}");
        if (minSize > maxSize) throw new UserErrorException($"the minimum bucket size {minSize} is above the maximum {maxSize}");
        if (maxSize < width || maxSize < height) throw new UserErrorException($"the maximum bucket size {maxSize} is below the resolution {width}x{height}");
        if (minSize > Math.Min(width, height)) throw new UserErrorException($"the minimum bucket size {minSize} is above the resolution {width}x{height}");
        // with no-upscale kohya uses no predefined buckets (and ignores the min/max sizes)
        var resos = noUpscale ? new List<(int, int)>() : MakeResolutions(width, height, minSize, maxSize, steps);
        return new BucketManager(noUpscale, width * height, steps, resos);
    }

    /// <summary>Bucketing off: every image is resized to cover the resolution, then centre-cropped to it.</summary>
    public static BucketManager Fixed(int width, int height) => new(false, width * height, 8, [(width, height)]);

    /// <summary>kohya's `make_bucket_resolutions`: the square, then (w, h) and (h, w) for each width step; sorted.</summary>
    public static List<(int Width, int Height)> MakeResolutions(int maxWidth, int maxHeight, int minSize, int maxSize, int divisible)
    {
        int maxArea = maxWidth * maxHeight;
        var resos = new HashSet<(int, int)>();
        int side = (int)Math.Floor(Math.Sqrt(maxArea) / divisible) * divisible;
        resos.Add((side, side));
        for (int width = minSize; width <= maxSize; width += divisible)
        {
            int height = Math.Min(maxSize, maxArea / width / divisible * divisible);
            if (height >= minSize)
            {
                resos.Add((width, height));
                resos.Add((height, width));
            }
        }
        var list = resos.ToList();
        list.Sort();
        return list;
    }

    int RoundToSteps(double x)
    {
        int v = (int)(x + 0.5);
        return v - v % Steps;
    }

    public BucketChoice Select(int imageWidth, int imageHeight)
    {
        double aspect = imageWidth / (double)imageHeight;
        (int W, int H) reso;
        (int W, int H) resized;
        if (!NoUpscale)
        {
            reso = (imageWidth, imageHeight);
            if (!_predefinedSet.Contains(reso))
            {
                // numpy argmin: the first of equal errors
                int best = 0;
                for (int i = 1; i < _aspects.Length; i++)
                    if (Math.Abs(_aspects[i] - aspect) < Math.Abs(_aspects[best] - aspect)) best = i;
                reso = _predefined[best];
            }
            double arReso = reso.W / (double)reso.H;
            double scale = aspect > arReso ? reso.H / (double)imageHeight : reso.W / (double)imageWidth;
            resized = ((int)(imageWidth * scale + 0.5), (int)(imageHeight * scale + 0.5));
        }
        else
        {
            if ((long)imageWidth * imageHeight > MaxArea)
            {
                double rw = Math.Sqrt(MaxArea * aspect);
                double rh = MaxArea / rw;
                int bWidth = RoundToSteps(rw);
                int bHeightInW = RoundToSteps(bWidth / aspect);
                double arW = bWidth / (double)bHeightInW;
                int bHeight = RoundToSteps(rh);
                int bWidthInH = RoundToSteps(bHeight * aspect);
                double arH = bWidthInH / (double)bHeight;
                resized = Math.Abs(arW - aspect) < Math.Abs(arH - aspect)
                    ? (bWidth, (int)(bWidth / aspect + 0.5))
                    : ((int)(bHeight * aspect + 0.5), bHeight);
            }
            else resized = (imageWidth, imageHeight);
            reso = (resized.W - resized.W % Steps, resized.H - resized.H % Steps);
            if (reso.W == 0 || reso.H == 0)
                throw new UserErrorException($"an image of {imageWidth}x{imageHeight} is smaller than one bucket step ({Steps} px)");
        }
        return new BucketChoice(reso.W, reso.H, resized.W, resized.H, reso.W / (double)reso.H - aspect);
    }
}
