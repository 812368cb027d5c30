using System.Text.Json;
using LoraCraft.IO;
using LoraCraft.Lora;
using LoraCraft.Models.Loading;
using LoraCraft.Models.Random;
using SkiaSharp;

namespace LoraCraft.Pipelines;

/// <summary>
/// What `generate --demo` and `serve --demo` run on when a newcomer has no checkpoint: tiny
/// random-weight SD1.5 and SDXL models (each with its config folder and byte-level tokenizer) in
/// a checkpoints folder of their own, and a LoRA folder laid out as users lay theirs: a few random
/// LoRAs in sub-folders, with trigger words, kohya training tags, A1111 user metadata and preview
/// images drawn here. Made once and cached; a missing file is made again. The weights are RANDOM:
/// the point is a real PNG through the whole pipeline and every screen of the web UI, offline.
/// </summary>
public sealed record DemoAssets(string Model, string ConfigDir, string LoraDir, string LoraName)
{
    public const string DefaultPrompt = "a lighthouse on a cliff at sunset, oil painting <lora:random-style:0.8>";
    public const int Size = 256;

    /// <summary>The folder holding the demo checkpoints (what `serve --demo` lists).</summary>
    public string CheckpointsDir => Path.GetDirectoryName(Model)!;

    /// <summary>The tiny SDXL checkpoint beside the SD1.5 one (so a family filter has something to filter).</summary>
    public string SdxlModel => Path.Combine(CheckpointsDir, "tiny-sdxl-random.safetensors");

    /// <summary>A demo LoRA: file (relative to the LoRA folder), family of its model, seed, and what sits beside it.</summary>
    sealed record DemoLora(string File, RandomModelKind Kind, ulong Seed, string? Title, string? Trigger,
                           IReadOnlyDictionary<string, long>? Tags, string? ActivationText, double? PreferredWeight, string? Notes,
                           Action<SKCanvas, int>? Preview);

    static readonly DemoLora[] Loras =
    [
        new("random-style.safetensors", RandomModelKind.Sd15, 1, "random style (demo)", null, null,
            "golden hour", 0.8, "The LoRA of `generate --demo`. Random weights.", DrawSunset),
        new("styles/ink-sketch.safetensors", RandomModelKind.Sd15, 2, "ink sketch (demo, random weights)", "inksketch",
            new Dictionary<string, long> { ["inksketch"] = 24, ["monochrome"] = 20, ["lineart"] = 17, ["sketch"] = 15, ["greyscale"] = 9, ["building"] = 5, ["tree"] = 4 },
            null, null, null, DrawInk),
        new("characters/robot-mascot.safetensors", RandomModelKind.Sd15, 3, "robot mascot (demo, random weights)", null,
            new Dictionary<string, long> { ["robot"] = 30, ["mascot"] = 22, ["blue eyes"] = 12, ["smile"] = 8 },
            "robot mascot, blue eyes", 1.0, "No preview image: the card shows a placeholder.", null),
        new("xl/pixel-xl.safetensors", RandomModelKind.Sdxl, 4, "pixel art XL (demo, random weights)", "pixelart",
            new Dictionary<string, long> { ["pixelart"] = 40, ["8bit"] = 14, ["isometric"] = 6 },
            null, null, "Made for SDXL: hidden while an SD1 checkpoint is chosen.", DrawPixels),
    ];

    public static DemoAssets Ensure(string cacheDir, TextWriter log)
    {
        var checkpoints = Path.Combine(cacheDir, "checkpoints");
        Directory.CreateDirectory(checkpoints);
        var models = new Dictionary<RandomModelKind, string>
        {
            [RandomModelKind.Sd15] = Path.Combine(checkpoints, "tiny-sd15-random.safetensors"),
            [RandomModelKind.Sdxl] = Path.Combine(checkpoints, "tiny-sdxl-random.safetensors"),
        };
        foreach (var (kind, model) in models)
        {
            if (File.Exists(model) && Directory.Exists(RandomCheckpoint.ConfigDirFor(model))) continue;
            log.WriteLine($"making the demo model {Path.GetFileName(model)} (tiny, random weights) in {checkpoints} ...");
            RandomCheckpoint.Make(model, RandomArchitecture.Of(kind, RandomModelSize.Tiny), 1);
        }
        var loraDir = Path.Combine(cacheDir, "Lora");
        foreach (var group in Loras.GroupBy(l => l.Kind))
        {
            var missing = group.Where(l => !Complete(Path.Combine(loraDir, l.File), l)).ToList();
            if (missing.Count == 0) continue;
            using var m = CheckpointLoader.Load(models[group.Key], new LoadOptions { ConfigDir = RandomCheckpoint.ConfigDirFor(models[group.Key]) });
            var targets = new LoraTargets(m);
            foreach (var l in missing) Make(Path.Combine(loraDir, l.File), targets, l);
        }
        var sd15 = models[RandomModelKind.Sd15];
        return new DemoAssets(sd15, RandomCheckpoint.ConfigDirFor(sd15), loraDir, "random-style");
    }

    static bool Complete(string path, DemoLora l)
    {
        string stem = LoraSidecars.Stem(path);
        return File.Exists(path) && (l.Preview is null || File.Exists(stem + LoraSidecars.PreviewSuffix))
               && (l.ActivationText is null && l.Notes is null || File.Exists(stem + LoraSidecars.UserMetadataSuffix));
    }

    static void Make(string path, LoraTargets targets, DemoLora l)
    {
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        var metadata = new Dictionary<string, string> { ["modelspec.title"] = l.Title ?? Path.GetFileNameWithoutExtension(path) };
        if (l.Trigger is not null) metadata["modelspec.trigger_phrase"] = l.Trigger;
        if (l.Tags is not null)
        {
            metadata["ss_tag_frequency"] = JsonSerializer.Serialize(new Dictionary<string, IReadOnlyDictionary<string, long>> { ["10_" + (l.Trigger ?? "demo")] = l.Tags });
            metadata["ss_num_train_images"] = l.Tags.Values.Max().ToString(System.Globalization.CultureInfo.InvariantCulture);
        }
        string stem = LoraSidecars.Stem(path);
        // sidecars first: the LoRA file is the sign that the set is complete
        if (l.Preview is not null) AtomicFile.WriteAllBytes(stem + LoraSidecars.PreviewSuffix, Draw(l.Preview, 256));
        if (l.ActivationText is not null || l.Notes is not null)
        {
            var user = new Dictionary<string, object?>
            {
                ["description"] = l.Title, ["sd version"] = l.Kind == RandomModelKind.Sdxl ? "SDXL" : "SD1",
                ["activation text"] = l.ActivationText ?? "", ["preferred weight"] = l.PreferredWeight ?? 0,
                ["negative text"] = "", ["notes"] = l.Notes ?? "",
            };
            AtomicFile.WriteAllBytes(stem + LoraSidecars.UserMetadataSuffix, JsonSerializer.SerializeToUtf8Bytes(user, new JsonSerializerOptions { WriteIndented = true }));
        }
        RandomLora.Make(path, targets, new RandomLoraOptions(Rank: 4, Seed: l.Seed, Metadata: metadata));
    }

    /// <summary>A card preview: a small picture drawn on a square canvas, as PNG bytes.</summary>
    static byte[] Draw(Action<SKCanvas, int> paint, int size)
    {
        using var surface = SKSurface.Create(new SKImageInfo(size, size, SKColorType.Rgba8888, SKAlphaType.Premul));
        paint(surface.Canvas, size);
        using var image = surface.Snapshot();
        using var png = image.Encode(SKEncodedImageFormat.Png, 100);
        return png.ToArray();
    }

    static void DrawSunset(SKCanvas c, int s)
    {
        using var sky = new SKPaint
        {
            Shader = SKShader.CreateLinearGradient(new SKPoint(0, 0), new SKPoint(0, s),
                [new SKColor(0x3b, 0x2a, 0x6e), new SKColor(0xe8, 0x6a, 0x3c), new SKColor(0xff, 0xd0, 0x7a)], SKShaderTileMode.Clamp),
        };
        c.DrawRect(0, 0, s, s, sky);
        using var sun = new SKPaint { Color = new SKColor(0xff, 0xf1, 0xb8), IsAntialias = true };
        c.DrawCircle(s * 0.68f, s * 0.62f, s * 0.14f, sun);
        using var cliff = new SKPaint { Color = new SKColor(0x24, 0x1c, 0x2c), IsAntialias = true };
        using var path = new SKPath();
        path.MoveTo(0, s * 0.72f);
        path.LineTo(s * 0.42f, s * 0.66f);
        path.LineTo(s * 0.55f, s);
        path.LineTo(0, s);
        path.Close();
        c.DrawPath(path, cliff);
        c.DrawRect(s * 0.2f, s * 0.42f, s * 0.07f, s * 0.26f, cliff);
        using var light = new SKPaint { Color = new SKColor(0xff, 0xf6, 0xc0), IsAntialias = true };
        c.DrawCircle(s * 0.235f, s * 0.42f, s * 0.03f, light);
    }

    static void DrawInk(SKCanvas c, int s)
    {
        c.Clear(new SKColor(0xf3, 0xef, 0xe4));
        var random = new Random(7);
        using var ink = new SKPaint { Color = new SKColor(0x1a, 0x1a, 0x1a), IsAntialias = true, Style = SKPaintStyle.Stroke, StrokeCap = SKStrokeCap.Round };
        // a house, a tree and hatching, in quick strokes
        for (int i = 0; i < 4; i++)
        {
            ink.StrokeWidth = 2 + i % 2;
            float j() => (float)(random.NextDouble() * 4 - 2);
            c.DrawLine(s * 0.15f + j(), s * 0.85f + j(), s * 0.15f + j(), s * 0.5f + j(), ink);
            c.DrawLine(s * 0.55f + j(), s * 0.85f + j(), s * 0.55f + j(), s * 0.5f + j(), ink);
            c.DrawLine(s * 0.1f + j(), s * 0.52f + j(), s * 0.35f + j(), s * 0.28f + j(), ink);
            c.DrawLine(s * 0.35f + j(), s * 0.28f + j(), s * 0.6f + j(), s * 0.52f + j(), ink);
            c.DrawLine(s * 0.08f + j(), s * 0.86f + j(), s * 0.92f + j(), s * 0.86f + j(), ink);
            c.DrawCircle(s * 0.78f + j(), s * 0.45f + j(), s * 0.13f, ink);
            c.DrawLine(s * 0.78f + j(), s * 0.58f + j(), s * 0.78f + j(), s * 0.86f + j(), ink);
        }
        ink.StrokeWidth = 1;
        for (int k = 0; k < 14; k++) c.DrawLine(s * 0.2f + k * 5, s * 0.84f, s * 0.2f + k * 5 + 12, s * 0.6f, ink);
    }

    static void DrawPixels(SKCanvas c, int s)
    {
        int n = 16, cell = s / n;
        SKColor[] palette = [new(0x1d, 0x2b, 0x53), new(0x7e, 0x25, 0x53), new(0x00, 0x87, 0x51), new(0xff, 0xa3, 0x00), new(0x29, 0xad, 0xff), new(0xff, 0xec, 0x27)];
        var random = new Random(11);
        using var paint = new SKPaint();
        for (int y = 0; y < n; y++)
        for (int x = 0; x < n; x++)
        {
            // sky above, hills below, a sun: blocky on purpose
            int index = y < 9 ? (random.Next(12) == 0 ? 4 : 0) : (y + x / 3) % 3 == 0 ? 2 : 1;
            if ((x - 11) * (x - 11) + (y - 4) * (y - 4) < 6) index = 5;
            if (y == 9 && x % 4 == 1) index = 3;
            paint.Color = palette[index];
            c.DrawRect(x * cell, y * cell, cell, cell, paint);
        }
    }
}
