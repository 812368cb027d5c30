using System.Text.RegularExpressions;
using LoraCraft.Generation;
using LoraCraft.Lora;
using LoraCraft.Pipelines;

namespace LoraCraft.Server;

/// <summary>
/// PNG Info's "send to generate": a PNG's A1111 parameters as a native generate request (the same
/// rules as `generate --from-png`: <see cref="GenerationJobs.WithParameters"/>), with the
/// checkpoint found in this server's folder and each LoRA of `Lora hashes` found by name, else by
/// hash; a renamed LoRA's tags are rewritten to its name here, as A1111 does when it pastes.
/// </summary>
public static class PngInfoRequest
{
    /// <summary>name in the PNG, its hash, the name of the file here (null: none), whether that differs.</summary>
    public sealed record FoundLora(string Name, string Hash, string? Found, bool Renamed);

    public static NativeGenerateRequest From(ServerEngine engine, GenerationParameters p)
    {
        var job = new GenerationJob { Model = "" }.WithParameters(p);
        string prompt = job.Prompt, negative = job.Negative;
        foreach (var lora in Loras(engine, p).Where(l => l.Renamed))
        {
            prompt = Rename(prompt, lora.Name, lora.Found!);
            negative = Rename(negative, lora.Name, lora.Found!);
        }
        return new NativeGenerateRequest
        {
            Model = FindModel(engine, p.Get("Model"), p.Get("Model hash")),
            Prompt = prompt, Negative = negative,
            Seed = job.Seed is { } seed && seed <= long.MaxValue ? (long)seed : null,
            Steps = job.Steps, Cfg = job.Cfg, Sampler = job.Sampler, Scheduler = job.Scheduler,
            Width = job.Width, Height = job.Height, ClipSkip = job.ClipSkip, Denoise = job.Denoise,
            Noise = job.Noise == Sampling.RandomSource.Nv ? "nv" : "cpu",
            Subseed = job.Subseed is { } sub && sub <= long.MaxValue ? (long)sub : null,
            SubseedStrength = job.SubseedStrength,
            KnownLoraHashes = job.KnownLoraHashes,
        };
    }

    public static IReadOnlyList<FoundLora> Loras(ServerEngine engine, GenerationParameters p) =>
        LoraSelector.ParseHashes(p.Get("Lora hashes")).Select(kv =>
        {
            string? path = null;
            try { path = engine.Loras.Resolve(kv.Key); }
            catch (UserErrorException) { }
            if (path is null || !string.Equals(engine.Hashes.LoraHash(path), kv.Value, StringComparison.OrdinalIgnoreCase))
                path = engine.Loras.FindByHash(kv.Value, engine.Hashes) ?? path;
            string? found = path is null ? null : LoraLibrary.NameOf(path);
            return new FoundLora(kv.Key, kv.Value, found, found is not null && found != kv.Key);
        }).ToList();

    static string? FindModel(ServerEngine engine, params string?[] names)
    {
        foreach (var name in names)
        {
            if (string.IsNullOrWhiteSpace(name)) continue;
            try { return engine.Catalog.Resolve(name).Name; }
            catch (UserErrorException) { }
        }
        return null;
    }

    /// <summary>`&lt;lora:OLD:…&gt;` and `&lt;lora:OLD&gt;` become `&lt;lora:NEW…&gt;`.</summary>
    static string Rename(string text, string from, string to) =>
        Regex.Replace(text, @"<(lora|lyco):" + Regex.Escape(from) + @"(?=[:>])", m => $"<{m.Groups[1].Value}:{to}", RegexOptions.CultureInvariant);
}
