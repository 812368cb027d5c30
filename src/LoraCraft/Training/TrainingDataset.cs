using System.Globalization;
using System.Text.Json;
using LoraCraft.Models;
using SkiaSharp;
using TorchSharp;
using static TorchSharp.torch;

namespace LoraCraft.Training;

/// <summary>One training image: its file, size, caption, bucket and (once cached) latents.</summary>
public sealed class TrainingImage
{
    public required string Path { get; init; }
    public required int Width { get; init; }
    public required int Height { get; init; }
    /// <summary>The caption file's first line, or the subset's class tokens when there is none.</summary>
    public required string Caption { get; init; }
    public string? CaptionFile { get; init; }
    public required SubsetSpec Subset { get; init; }
    public required int Dataset { get; init; }
    public required BucketChoice Bucket { get; init; }
    /// <summary>Uses per epoch: the subset's repeats (raised for regularization images to match the training count).</summary>
    public int Repeats { get; internal set; }
    /// <summary>Scaled latents when cached (and the flipped ones with flip augmentation).</summary>
    public Tensor? Latent { get; internal set; }
    public Tensor? FlippedLatent { get; internal set; }
}

/// <summary>One step's images: same dataset, same bucket.</summary>
public sealed record TrainingBatch(int Dataset, int Width, int Height, IReadOnlyList<TrainingImage> Images);

/// <summary>
/// The images of every dataset with their captions and buckets, checked before any model is
/// loaded (no images, unreadable images, non-UTF-8 captions: one message naming the file), and
/// the batches of each epoch: each bucket's uses shuffled, cut into batches, and all batches
/// shuffled, from a generator seeded by (run seed, epoch).
/// </summary>
public sealed class TrainingDataset : IDisposable
{
    public IReadOnlyList<DatasetSpec> Specs { get; }
    public IReadOnlyList<TrainingImage> Images { get; }
    /// <summary>What the scan found worth telling (which caption files, class tokens used, unused reg images).</summary>
    public IReadOnlyList<string> Notes { get; }

    TrainingDataset(IReadOnlyList<DatasetSpec> specs, List<TrainingImage> images, List<string> notes)
    {
        Specs = specs;
        Images = images;
        Notes = notes;
    }

    public static TrainingDataset Scan(IReadOnlyList<DatasetSpec> specs)
    {
        var images = new List<TrainingImage>();
        var notes = new List<string>();
        for (int d = 0; d < specs.Count; d++)
        {
            var spec = specs[d];
            spec.Validate();
            var buckets = spec.EnableBucket
                ? BucketManager.Create(spec.Width, spec.Height, spec.MinBucketReso, spec.MaxBucketReso, spec.BucketResoSteps, spec.BucketNoUpscale)
                : BucketManager.Fixed(spec.Width, spec.Height);
            var datasetImages = new List<TrainingImage>();
            foreach (var subset in spec.Subsets)
                datasetImages.AddRange(ScanSubset(subset, d, buckets, notes));
            BalanceRegularization(datasetImages, notes);
            images.AddRange(datasetImages);
        }
        if (!images.Any(i => !i.Subset.IsReg)) throw new UserErrorException("no training images (only regularization images were found)");
        return new TrainingDataset(specs, images, notes);
    }

    static List<TrainingImage> ScanSubset(SubsetSpec subset, int dataset, BucketManager buckets, List<string> notes)
    {
        if (!Directory.Exists(subset.ImageDir)) throw new UserErrorException($"image folder not found: {subset.ImageDir}");
        var files = Directory.EnumerateFiles(subset.ImageDir).Where(DatasetFolders.IsImage).OrderBy(f => f, StringComparer.Ordinal).ToList();
        if (files.Count == 0) throw new UserErrorException($"{subset.ImageDir}: no images ({string.Join(" ", DatasetFolders.ImageExtensions)})");
        var result = new List<TrainingImage>();
        int fromCaption = 0, fromTxt = 0, fromGiven = 0, withoutCaption = 0;
        foreach (var file in files)
        {
            var (w, h) = ReadSize(file);
            string? captionFile;
            if (subset.CaptionExtension is { } ext) { captionFile = Captions.FileFor(file, ext); if (captionFile is not null) fromGiven++; }
            else if ((captionFile = Captions.FileFor(file, ".caption")) is not null) fromCaption++;
            else if ((captionFile = Captions.FileFor(file, ".txt")) is not null) fromTxt++;
            string caption = captionFile is null ? "" : Captions.Read(captionFile);
            if (captionFile is not null && caption.Length == 0) notes.Add($"warning: {captionFile} is empty; the class tokens are used");
            if (caption.Length == 0) { caption = subset.ClassTokens; if (captionFile is null) withoutCaption++; }
            result.Add(new TrainingImage
            {
                Path = file, Width = w, Height = h, Caption = caption, CaptionFile = captionFile, Subset = subset, Dataset = dataset,
                Bucket = buckets.Select(w, h), Repeats = subset.Repeats,
            });
        }
        string found = subset.CaptionExtension is { } e
            ? $"{fromGiven} {e} captions"
            : string.Join(", ", new[] { fromCaption > 0 ? $"{fromCaption} .caption" : null, fromTxt > 0 ? $"{fromTxt} .txt" : null }.Where(s => s is not null)) is { Length: > 0 } s
                ? s + " captions" : "no caption files (.caption or .txt)";
        string missing = withoutCaption == 0 ? "" : subset.ClassTokens.Length > 0
            ? $"; {withoutCaption} without a caption use the class tokens '{subset.ClassTokens}'"
            : $"; {withoutCaption} have no caption and no class tokens (empty caption)";
        notes.Add($"{subset.ImageDir}: {files.Count} images x {subset.Repeats} repeats{(subset.IsReg ? " (regularization)" : "")}, {found}{missing}");
        return result;
    }

    static (int, int) ReadSize(string file)
    {
        using var codec = SKCodec.Create(file) ?? throw new UserErrorException($"{file}: not a readable image");
        return (codec.Info.Width, codec.Info.Height);
    }

    /// <summary>kohya: regularization images are reused (their repeats raised one by one) until they match the training count.</summary>
    static void BalanceRegularization(List<TrainingImage> images, List<string> notes)
    {
        var reg = images.Where(i => i.Subset.IsReg).ToList();
        if (reg.Count == 0) return;
        long train = images.Where(i => !i.Subset.IsReg).Sum(i => (long)i.Repeats);
        long regCount = reg.Sum(i => (long)i.Repeats);
        if (regCount >= train)
        {
            if (regCount > train) notes.Add($"note: {regCount} regularization uses for {train} training uses; kohya uses them all the same");
            return;
        }
        long n = regCount;
        while (n < train)
            foreach (var r in reg)
            {
                r.Repeats++;
                if (++n >= train) break;
            }
    }

    public long TrainUses => Images.Where(i => !i.Subset.IsReg).Sum(i => (long)i.Repeats);
    public long RegUses => Images.Where(i => i.Subset.IsReg).Sum(i => (long)i.Repeats);

    /// <summary>Batches per epoch (the same every epoch).</summary>
    public int BatchesPerEpoch => Images.GroupBy(i => (i.Dataset, i.Bucket.Width, i.Bucket.Height))
        .Sum(g => (int)((g.Sum(i => (long)i.Repeats) + Specs[g.Key.Dataset].BatchSize - 1) / Specs[g.Key.Dataset].BatchSize));

    /// <summary>The batches of epoch <paramref name="epoch"/> (0-based), in training order.</summary>
    public List<TrainingBatch> EpochBatches(ulong seed, int epoch)
    {
        using var random = new Generator(RunSeeds.Derive(seed, RunSeeds.Epoch, (ulong)epoch));
        var batches = new List<TrainingBatch>();
        foreach (var group in Images.GroupBy(i => (i.Dataset, i.Bucket.Width, i.Bucket.Height)).OrderBy(g => g.Key))
        {
            var uses = group.SelectMany(i => Enumerable.Repeat(i, i.Repeats)).ToList();
            var order = Permutation(uses.Count, random);
            int size = Specs[group.Key.Dataset].BatchSize;
            for (int at = 0; at < uses.Count; at += size)
                batches.Add(new TrainingBatch(group.Key.Dataset, group.Key.Width, group.Key.Height,
                                              order.Skip(at).Take(size).Select(k => uses[k]).ToList()));
        }
        var batchOrder = Permutation(batches.Count, random);
        return batchOrder.Select(k => batches[k]).ToList();
    }

    static int[] Permutation(int n, Generator random)
    {
        using var p = torch.randperm(n, generator: random);
        return p.data<long>().ToArray().Select(v => (int)v).ToArray();
    }

    /// <summary>kohya's `ss_bucket_info` JSON of one dataset: buckets with their use counts and the mean aspect error.</summary>
    public string BucketInfoJson(int dataset)
    {
        var imgs = Images.Where(i => i.Dataset == dataset).ToList();
        var buckets = imgs.GroupBy(i => (i.Bucket.Width, i.Bucket.Height)).OrderBy(g => g.Key).ToList();
        var info = new Dictionary<string, object>
        {
            ["buckets"] = buckets.Select((g, k) => (k, g)).ToDictionary(
                x => x.k.ToString(CultureInfo.InvariantCulture),
                x => (object)new Dictionary<string, object> { ["resolution"] = new[] { x.g.Key.Width, x.g.Key.Height }, ["count"] = x.g.Sum(i => i.Repeats) }),
            ["mean_img_ar_error"] = imgs.Count == 0 ? 0 : imgs.Average(i => Math.Abs(i.Bucket.AspectError)),
        };
        return JsonSerializer.Serialize(info);
    }

    /// <summary>kohya's `ss_tag_frequency`: {folder name: {tag: count}} over the training captions.</summary>
    public string TagFrequencyJson()
    {
        var result = new Dictionary<string, Dictionary<string, int>>();
        foreach (var img in Images)
        {
            string dir = System.IO.Path.GetFileName(img.Subset.ImageDir);
            if (!result.TryGetValue(dir, out var freq)) result[dir] = freq = new();
            Captions.CountTags(freq, img.Caption);
        }
        return JsonSerializer.Serialize(result);
    }

    /// <summary>kohya's `ss_dataset_dirs`: {folder name: {n_repeats, img_count}}.</summary>
    public string DatasetDirsJson(bool reg)
    {
        var result = new Dictionary<string, Dictionary<string, int>>();
        foreach (var g in Images.Where(i => i.Subset.IsReg == reg).GroupBy(i => i.Subset))
            result[System.IO.Path.GetFileName(g.Key.ImageDir)] = new() { ["n_repeats"] = g.Key.Repeats, ["img_count"] = g.Count() };
        return JsonSerializer.Serialize(result);
    }

    public void Dispose()
    {
        foreach (var i in Images)
        {
            i.Latent?.Dispose();
            i.FlippedLatent?.Dispose();
            i.Latent = i.FlippedLatent = null;
        }
    }
}
