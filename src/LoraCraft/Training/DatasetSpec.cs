namespace LoraCraft.Training;

/// <summary>One folder of images (kohya's DreamBooth subset): repeats, class tokens, caption settings.</summary>
public sealed record SubsetSpec
{
    public required string ImageDir { get; init; }
    public int Repeats { get; init; } = 1;
    /// <summary>The caption of an image without a caption file (`class_tokens`; from `N_class tokens` folder names).</summary>
    public string ClassTokens { get; init; } = "";
    /// <summary>Null: look for `.caption`, then `.txt` (and say which was found).</summary>
    public string? CaptionExtension { get; init; }
    public CaptionOptions Caption { get; init; } = new();
    /// <summary>Regularization images (their loss is weighted by the prior loss weight).</summary>
    public bool IsReg { get; init; }
    public bool FlipAug { get; init; }
}

/// <summary>One dataset (kohya `[[datasets]]`): resolution, batch size, buckets, and its subsets.</summary>
public sealed record DatasetSpec
{
    public int Width { get; init; } = 512;
    public int Height { get; init; } = 512;
    public int BatchSize { get; init; } = 1;
    public bool EnableBucket { get; init; }
    public int MinBucketReso { get; init; } = 256;
    public int MaxBucketReso { get; init; } = 1024;
    public int BucketResoSteps { get; init; } = 64;
    public bool BucketNoUpscale { get; init; }
    public required IReadOnlyList<SubsetSpec> Subsets { get; init; }

    public void Validate()
    {
        if (Width < 64 || Height < 64 || Width % 8 != 0 || Height % 8 != 0)
            throw new UserErrorException($"the resolution must be multiples of 8 of at least 64, got {Width}x{Height}");
        if (BatchSize < 1) throw new UserErrorException($"the batch size must be 1 or more, got {BatchSize}");
        if (Subsets.Count == 0) throw new UserErrorException("a dataset has no image folders");
        foreach (var s in Subsets)
        {
            if (s.Repeats < 1) throw new UserErrorException($"{s.ImageDir}: the repeat count must be 1 or more, got {s.Repeats}");
            if (s.Caption.DropoutRate is < 0 or > 1) throw new UserErrorException($"{s.ImageDir}: caption dropout rate must be in [0, 1], got {s.Caption.DropoutRate}");
            if (s.Caption.KeepTokens < 0) throw new UserErrorException($"{s.ImageDir}: keep tokens must be 0 or more, got {s.Caption.KeepTokens}");
        }
        if (EnableBucket) BucketManager.Create(Width, Height, MinBucketReso, MaxBucketReso, BucketResoSteps, BucketNoUpscale);
    }
}

/// <summary>
/// kohya's folder conventions: a training folder whose subfolders are named `N_class tokens`
/// (N repeats), or — our addition — a flat folder of images with an explicit repeat count.
/// </summary>
public static class DatasetFolders
{
    public static readonly string[] ImageExtensions = [".png", ".jpg", ".jpeg", ".webp", ".bmp"];

    public static bool IsImage(string path) => ImageExtensions.Contains(Path.GetExtension(path).ToLowerInvariant());

    /// <summary>Subsets of a `--train_data_dir` / `--reg_data_dir` folder.</summary>
    public static List<SubsetSpec> Subsets(string dir, bool isReg, int? flatRepeats, SubsetSpec template)
    {
        string what = isReg ? "regularization folder" : "training folder";
        if (!Directory.Exists(dir)) throw new UserErrorException($"{what} not found: {dir}");
        bool hasImages = Directory.EnumerateFiles(dir).Any(IsImage);
        var subsets = new List<SubsetSpec>();
        if (hasImages)
        {
            if (flatRepeats is null)
                throw new UserErrorException(
                    $"{dir} holds images directly, but kohya's layout wants them in subfolders named N_class (e.g. {Path.Combine(dir, "10_mychar woman")}), " +
                    "N the repeat count: move them there, or give the repeat count for this flat folder");
            subsets.Add(template with { ImageDir = dir, Repeats = flatRepeats.Value, IsReg = isReg });
        }
        foreach (var sub in Directory.EnumerateDirectories(dir).OrderBy(d => d, StringComparer.Ordinal))
        {
            string name = Path.GetFileName(sub);
            if (name.StartsWith('.')) continue;
            bool subHasImages = Directory.EnumerateFiles(sub).Any(IsImage);
            if (!subHasImages) continue;
            int us = name.IndexOf('_');
            if (us <= 0 || !int.TryParse(name[..us], System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out int repeats) || repeats < 1)
                throw new UserErrorException(
                    $"{sub}: a folder of images without a repeat count; name it N_class (e.g. '10_{name}': 10 repeats, class tokens '{name}')");
            subsets.Add(template with { ImageDir = sub, Repeats = repeats, ClassTokens = name[(us + 1)..], IsReg = isReg });
        }
        if (subsets.Count == 0) throw new UserErrorException($"no images in the {what} {dir} or in its N_class subfolders");
        return subsets;
    }
}
