using System.Globalization;
using Tomlyn.Model;

namespace LoraCraft.Training;

/// <summary>
/// kohya's `--dataset_config` TOML: `[general]` → `[[datasets]]` → `[[datasets.subsets]]`, a
/// lower level overriding a higher one, and the command-line settings under all of them. Keys
/// kohya knows but this trainer does not implement are reported and ignored; unknown keys
/// (typos) are an error naming the key.
/// </summary>
public static class DatasetConfig
{
    static readonly string[] DatasetKeys = ["resolution", "batch_size", "enable_bucket", "min_bucket_reso", "max_bucket_reso", "bucket_reso_steps", "bucket_no_upscale"];
    static readonly string[] SubsetKeys =
    [
        "image_dir", "num_repeats", "class_tokens", "caption_extension", "shuffle_caption", "keep_tokens", "keep_tokens_separator",
        "caption_separator", "is_reg", "flip_aug", "caption_dropout_rate", "caption_tag_dropout_rate", "caption_prefix", "caption_suffix",
    ];
    static readonly string[] IgnoredKeys =
    [
        "network_multiplier", "debug_dataset", "validation_seed", "validation_split", "secondary_separator", "enable_wildcard",
        "caption_dropout_every_n_epochs", "token_warmup_min", "token_warmup_step", "custom_attributes", "resize_interpolation", "cache_info",
    ];
    static readonly string[] RefusedKeys = ["metadata_file", "conditioning_data_dir", "random_crop", "color_aug", "face_crop_aug_range", "alpha_mask"];

    public static List<DatasetSpec> Load(string path, DatasetSpec datasetDefaults, SubsetSpec subsetDefaults, Action<string>? warn = null)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"dataset config not found: {path}", path);
        if (!path.EndsWith(".toml", StringComparison.OrdinalIgnoreCase))
            throw new UserErrorException($"{path}: only TOML dataset configs are read (kohya's .json form is not)");
        TomlTable root;
        try { root = Tomlyn.TomlSerializer.Deserialize<TomlTable>(File.ReadAllText(path)) ?? new TomlTable(); }
        catch (Exception e) when (e is not UserErrorException and not IOException)
        {
            throw new UserErrorException($"{path}: not valid TOML ({e.Message.Split('\n')[0]})");
        }
        var dir = Path.GetDirectoryName(Path.GetFullPath(path))!;
        var general = Table(root, "general", path) ?? new TomlTable();
        foreach (var key in root.Keys.Where(k => k is not "general" and not "datasets"))
            throw new UserErrorException($"{path}: unknown top-level key '{key}' (expected [general] and [[datasets]])");
        Check(general, DatasetKeys.Concat(SubsetKeys), path, "[general]", warn);
        if (!root.TryGetValue("datasets", out var ds) || ds is not TomlTableArray datasets || datasets.Count == 0)
            throw new UserErrorException($"{path}: no [[datasets]]");
        var result = new List<DatasetSpec>();
        foreach (var dataset in datasets)
        {
            Check(dataset, DatasetKeys.Concat(SubsetKeys).Append("subsets"), path, "[[datasets]]", warn);
            var levels = new[] { dataset, general };
            var spec = datasetDefaults with
            {
                BatchSize = Int(levels, "batch_size", path) ?? datasetDefaults.BatchSize,
                EnableBucket = Bool(levels, "enable_bucket", path) ?? datasetDefaults.EnableBucket,
                MinBucketReso = Int(levels, "min_bucket_reso", path) ?? datasetDefaults.MinBucketReso,
                MaxBucketReso = Int(levels, "max_bucket_reso", path) ?? datasetDefaults.MaxBucketReso,
                BucketResoSteps = Int(levels, "bucket_reso_steps", path) ?? datasetDefaults.BucketResoSteps,
                BucketNoUpscale = Bool(levels, "bucket_no_upscale", path) ?? datasetDefaults.BucketNoUpscale,
                Subsets = [],
            };
            if (Find(levels, "resolution") is { } reso)
            {
                var (w, h) = Resolution(reso, path);
                spec = spec with { Width = w, Height = h };
            }
            if (!dataset.TryGetValue("subsets", out var ss) || ss is not TomlTableArray subsets || subsets.Count == 0)
                throw new UserErrorException($"{path}: a [[datasets]] entry has no [[datasets.subsets]]");
            var list = new List<SubsetSpec>();
            foreach (var subset in subsets)
            {
                Check(subset, SubsetKeys, path, "[[datasets.subsets]]", warn);
                var sl = new[] { subset, dataset, general };
                string imageDir = Str(sl, "image_dir", path) ?? throw new UserErrorException($"{path}: a subset has no image_dir");
                if (!Path.IsPathRooted(imageDir)) imageDir = Path.GetFullPath(Path.Combine(dir, imageDir));
                var caption = subsetDefaults.Caption with
                {
                    Shuffle = Bool(sl, "shuffle_caption", path) ?? subsetDefaults.Caption.Shuffle,
                    KeepTokens = Int(sl, "keep_tokens", path) ?? subsetDefaults.Caption.KeepTokens,
                    KeepTokensSeparator = Str(sl, "keep_tokens_separator", path) ?? subsetDefaults.Caption.KeepTokensSeparator,
                    Separator = Str(sl, "caption_separator", path) ?? subsetDefaults.Caption.Separator,
                    DropoutRate = Num(sl, "caption_dropout_rate", path) ?? subsetDefaults.Caption.DropoutRate,
                    TagDropoutRate = Num(sl, "caption_tag_dropout_rate", path) ?? subsetDefaults.Caption.TagDropoutRate,
                    Prefix = Str(sl, "caption_prefix", path) ?? subsetDefaults.Caption.Prefix,
                    Suffix = Str(sl, "caption_suffix", path) ?? subsetDefaults.Caption.Suffix,
                };
                list.Add(subsetDefaults with
                {
                    ImageDir = imageDir,
                    Repeats = Int(sl, "num_repeats", path) ?? 1,
                    ClassTokens = Str(sl, "class_tokens", path) ?? "",
                    CaptionExtension = Str(sl, "caption_extension", path) ?? subsetDefaults.CaptionExtension,
                    IsReg = Bool(sl, "is_reg", path) ?? false,
                    FlipAug = Bool(sl, "flip_aug", path) ?? subsetDefaults.FlipAug,
                    Caption = caption,
                });
            }
            result.Add(spec with { Subsets = list });
        }
        return result;
    }

    static void Check(TomlTable table, IEnumerable<string> allowed, string path, string where, Action<string>? warn)
    {
        var ok = allowed.ToHashSet();
        foreach (var key in table.Keys)
        {
            if (ok.Contains(key)) continue;
            if (IgnoredKeys.Contains(key)) { warn?.Invoke($"{path}: {where} '{key}' is not supported here and is ignored"); continue; }
            if (RefusedKeys.Contains(key)) throw new UserErrorException($"{path}: {where} '{key}' is not supported by this trainer");
            throw new UserErrorException($"{path}: unknown key '{key}' in {where}");
        }
    }

    static TomlTable? Table(TomlTable t, string key, string path) => t.TryGetValue(key, out var v)
        ? v as TomlTable ?? throw new UserErrorException($"{path}: '{key}' must be a table")
        : null;

    static object? Find(TomlTable[] levels, string key)
    {
        foreach (var l in levels) if (l.TryGetValue(key, out var v)) return v;
        return null;
    }

    static int? Int(TomlTable[] levels, string key, string path) => Find(levels, key) switch
    {
        null => null,
        long l when l is >= int.MinValue and <= int.MaxValue => (int)l,
        var v => throw new UserErrorException($"{path}: '{key}' must be an integer, got {v}"),
    };

    static double? Num(TomlTable[] levels, string key, string path) => Find(levels, key) switch
    {
        null => null,
        long l => l,
        double d => d,
        var v => throw new UserErrorException($"{path}: '{key}' must be a number, got {v}"),
    };

    static bool? Bool(TomlTable[] levels, string key, string path) => Find(levels, key) switch
    {
        null => null,
        bool b => b,
        var v => throw new UserErrorException($"{path}: '{key}' must be true or false, got {v}"),
    };

    static string? Str(TomlTable[] levels, string key, string path) => Find(levels, key) switch
    {
        null => null,
        string s => s,
        var v => throw new UserErrorException($"{path}: '{key}' must be a string, got {v}"),
    };

    static (int, int) Resolution(object value, string path) => value switch
    {
        long l => ((int)l, (int)l),
        TomlArray { Count: 2 } a when a[0] is long w && a[1] is long h => ((int)w, (int)h),
        _ => throw new UserErrorException($"{path}: 'resolution' must be an integer or [width, height], got {Convert.ToString(value, CultureInfo.InvariantCulture)}"),
    };
}
