using System.Text.Json;
using LoraCraft.Pipelines;
using Xunit;

namespace LoraCraft.Tests.Cli;

public class DemoAndBenchTests
{
    static (int Code, string Out, string Err) Run(params string[] args)
    {
        var o = new StringWriter();
        var e = new StringWriter();
        return (LoraCraft.Cli.Cli.Run(args, o, e), o.ToString(), e.ToString());
    }

    [SkippableFact]
    public void DemoProducesAPngThroughTheWholePipeline()
    {
        using var dir = new TempDir();
        var r = Run("generate", "--demo", "--steps", "2", "--seed", "5", "--out", dir.File("demo.png"), "--quiet");
        Assert.True(r.Code == 0, r.Err);
        Assert.Contains("RANDOM weights", r.Err);
        var parameters = GenerationParameters.Parse(ImageFiles.ReadTextChunks(dir.File("demo.png"))[ImageFiles.ParametersKey]);
        Assert.Contains("<lora:random-style:0.8>", parameters.Prompt);
        Assert.StartsWith("random-style: ", parameters.Get("Lora hashes"));
        Assert.Equal($"{DemoAssets.Size}x{DemoAssets.Size}", parameters.Get("Size"));
    }

    /// <summary>`serve --demo` shows every screen working: two families, LoRAs in folders with triggers, tags, user metadata and previews.</summary>
    [SkippableFact]
    public void ServeDemoHasAnSdxlCheckpointAndLorasWithTriggersTagsUserMetadataAndPreviews()
    {
        var demo = DemoAssets.Ensure(Path.Combine(LoraCraft.Runtime.Paths.CacheRoot, "demo"), TextWriter.Null);
        Assert.True(File.Exists(demo.SdxlModel), demo.SdxlModel);
        var catalog = new LoraCraft.Generation.ModelCatalog(demo.CheckpointsDir, LoraCraft.IO.FileHashes.Default);
        Assert.Equal("sd1,sdxl", string.Join(",", catalog.Entries.Select(e => LoraCraft.Generation.CheckpointFamily.Of(e)?.ToString().ToLowerInvariant()).Order()));
        var listings = new LoraCraft.Lora.LoraLibrary(demo.LoraDir).Listings();
        Assert.All(listings, l => Assert.Null(l.Error));
        var byName = listings.ToDictionary(l => Path.GetFileNameWithoutExtension(l.Path));
        Assert.Equal(LoraCraft.Models.ModelFamily.Sdxl, byName["pixel-xl"].Info!.Family);
        Assert.Equal(["inksketch"], byName["ink-sketch"].Info!.Triggers!.Words);
        Assert.Equal("inksketch", byName["ink-sketch"].Info!.TopTags(1)[0].Tag);
        Assert.Equal(["golden hour"], byName["random-style"].Info!.Triggers!.Words);
        Assert.Equal(0.8, LoraCraft.Lora.LoraSidecars.Read(byName["random-style"].Path).UserMetadata!.PreferredWeight);
        Assert.NotNull(LoraCraft.Lora.LoraSidecars.Read(byName["pixel-xl"].Path).PreviewPath);
        Assert.Null(LoraCraft.Lora.LoraSidecars.Read(byName["robot-mascot"].Path).PreviewPath);
        Assert.Contains(listings, l => Path.GetRelativePath(demo.LoraDir, l.Path).StartsWith("styles", StringComparison.Ordinal));
    }

    [SkippableFact]
    public void BenchReportsEveryFieldAsJson()
    {
        using var dir = new TempDir();
        var r = Run("bench", "--size", "tiny", "--steps", "2", "--width", "64", "--height", "64", "--lora-rank", "4",
                    "--dtype", "fp32", "--cache", dir.Path, "--json", "--quiet");
        Assert.True(r.Code == 0, r.Err);
        using var doc = JsonDocument.Parse(r.Out);
        foreach (var field in new[] { "load_s", "text_s", "step_s", "vae_decode_s", "total_s", "peak_rss_mb", "lora_apply_s", "lora_switch_s", "step_with_lora_s",
                                        "first_step_s", "step_mean_s", "step_gflop", "gemm_peak_gflops", "step_peak_fraction" })
            Assert.True(doc.RootElement.GetProperty(field).GetDouble() >= 0, field);
        Assert.True(doc.RootElement.GetProperty("step_s").GetDouble() > 0);
        Assert.True(doc.RootElement.GetProperty("lora_apply_s").GetDouble() > 0);
        // the step's arithmetic is counted (the UNet's layers and attention) and put against a measured GEMM rate
        Assert.True(doc.RootElement.GetProperty("step_gflop").GetDouble() > 0);
        Assert.True(doc.RootElement.GetProperty("gemm_peak_gflops").GetDouble() > 0);
        Assert.True(doc.RootElement.GetProperty("step_peak_fraction").GetDouble() > 0);
        Assert.Equal("fp32", doc.RootElement.GetProperty("dtype").GetString());
        // whether this process's C heap was started on huge pages (the launcher asks for them)
        Assert.Equal(Runtime.NativeHeap.HugePagesRequested(), doc.RootElement.GetProperty("malloc_hugepages").GetBoolean());
    }

    [SkippableFact]
    public void BenchRejectsUnknownFamily()
    {
        var r = Run("bench", "--family", "sd3");
        Assert.Equal(2, r.Code);
        Assert.Contains("sd15 or sdxl", r.Err);
    }
}
