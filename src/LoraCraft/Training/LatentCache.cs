using System.Globalization;
using LoraCraft.IO;
using LoraCraft.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace LoraCraft.Training;

/// <summary>
/// VAE latents of training images: encoded with a sample of the latent distribution (kohya's
/// `latent_dist.sample()`) times the family's scale, from a generator seeded per image. Cached
/// in memory (`--cache_latents`) or also next to the image (`--cache_latents_to_disk`), as
/// IMAGE.loracraft-latents.safetensors, reused while the image, its bucket and the model are unchanged.
/// </summary>
public static class LatentCache
{
    public const string Suffix = ".loracraft-latents.safetensors";

    public static string FileFor(TrainingImage image) => Path.ChangeExtension(image.Path, null) + Suffix;

    /// <summary>Scaled latents [B, 4, h, w] of a batch of prepared images [B, 3, H, W] in [-1, 1].</summary>
    public static Tensor Encode(StableDiffusionModel model, Tensor pixels, Generator random)
    {
        using var noGrad = torch.no_grad();
        using var scope = NewDisposeScope();
        var (mean, logvar) = model.Vae.Encode(pixels);
        var noise = torch.randn(mean.shape, generator: random);
        var latent = mean.Add(logvar.Mul(0.5).exp() * noise).Mul(model.LatentScale);
        // kohya replaces NaN latents by zeros (with a warning); the caller checks and says so
        return latent.MoveToOuterDisposeScope();
    }

    /// <summary>Fills every image's latents (and flipped latents when its subset flips), reading or writing the disk cache.</summary>
    public static void Fill(StableDiffusionModel model, TrainingDataset dataset, ulong seed, bool toDisk, string modelIdentity,
                            Action<int, int>? progress, Action<string>? note, CancellationToken cancel)
    {
        int done = 0, reused = 0;
        for (int index = 0; index < dataset.Images.Count; index++)
        {
            var image = dataset.Images[index];
            cancel.ThrowIfCancellationRequested();
            var key = Identity(image, modelIdentity, model.DType, seed);
            if (toDisk && TryRead(image, key))
            {
                reused++;
            }
            else
            {
                using var random = new Generator(RunSeeds.Derive(seed, RunSeeds.Latents, (ulong)index));
                image.Latent = EncodeOne(model, image, flip: false, random);
                if (image.Subset.FlipAug) image.FlippedLatent = EncodeOne(model, image, flip: true, random);
                if (toDisk) Write(image, key);
            }
            CheckFinite(image, note);
            progress?.Invoke(++done, dataset.Images.Count);
        }
        if (toDisk && reused > 0) note?.Invoke($"latents: {reused} of {dataset.Images.Count} reused from the disk cache");
    }

    public static Tensor EncodeOne(StableDiffusionModel model, TrainingImage image, bool flip, Generator random)
    {
        using var pixels = ImagePreparation.Load(image, flip);
        using var batch = pixels.unsqueeze(0);
        using var latent = Encode(model, batch, random);
        return latent[0].clone().DetachFromDisposeScope();
    }

    static void CheckFinite(TrainingImage image, Action<string>? note)
    {
        foreach (var t in new[] { image.Latent, image.FlippedLatent })
        {
            if (t is null) continue;
            using var bad = t.isfinite().logical_not().any();
            if (bad.item<bool>())
            {
                t.nan_to_num_(0, 0, 0);
                note?.Invoke($"warning: {image.Path}: the VAE gave NaN/inf latents; replaced by zeros (as kohya does)");
            }
        }
    }

    static Dictionary<string, string> Identity(TrainingImage image, string modelIdentity, ScalarType dtype, ulong seed)
    {
        var info = new FileInfo(image.Path);
        var inv = CultureInfo.InvariantCulture;
        return new Dictionary<string, string>
        {
            ["image_bytes"] = info.Length.ToString(inv),
            ["image_mtime"] = info.LastWriteTimeUtc.Ticks.ToString(inv),
            ["bucket"] = $"{image.Bucket.Width}x{image.Bucket.Height}",
            ["resized"] = $"{image.Bucket.ResizedWidth}x{image.Bucket.ResizedHeight}",
            ["flip"] = image.Subset.FlipAug ? "1" : "0",
            ["model"] = modelIdentity,
            ["dtype"] = dtype.ToString(),
            ["seed"] = seed.ToString(inv),
        };
    }

    static bool TryRead(TrainingImage image, Dictionary<string, string> key)
    {
        var path = FileFor(image);
        if (!File.Exists(path)) return false;
        try
        {
            using var file = SafetensorsFile.Open(path);
            if (key.Any(kv => file.Metadata.GetValueOrDefault(kv.Key) != kv.Value)) return false;
            image.Latent = file.Load("latent", ScalarType.Float32).clone().DetachFromDisposeScope();
            if (image.Subset.FlipAug) image.FlippedLatent = file.Load("latent_flipped", ScalarType.Float32).clone().DetachFromDisposeScope();
            return true;
        }
        catch (Exception e) when (e is UserErrorException or IOException or KeyNotFoundException or InvalidOperationException)
        {
            return false;
        }
    }

    static void Write(TrainingImage image, Dictionary<string, string> key)
    {
        var tensors = new List<KeyValuePair<string, Tensor>> { new("latent", image.Latent!) };
        if (image.FlippedLatent is not null) tensors.Add(new("latent_flipped", image.FlippedLatent));
        SafetensorsWriter.Write(FileFor(image), tensors, key);
    }
}
