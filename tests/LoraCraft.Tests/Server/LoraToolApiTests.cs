using System.Net;
using System.Text.Json;
using Xunit;
using Xunit.Abstractions;
using static LoraCraft.Tests.Server.ServerJobs;

namespace LoraCraft.Tests.Server;

/// <summary>
/// POST /api/v1/lora/tools/… on the tiny fixtures: each tool runs as a job, its report is the
/// job's result and its file is listed (merge-into: a checkpoint that generates); names that are
/// paths, unknown names and taken outputs are refused with a 4xx JSON error before anything runs.
/// </summary>
public sealed class LoraToolApiTests(ServerFixture server, ITestOutputHelper output) : IClassFixture<ServerFixture>
{
    async Task<JsonElement> Tool(string tool, object body)
    {
        var status = await RunAsync(server, "/api/v1/lora/tools/" + tool, body);
        output.WriteLine($"{tool}: {status}");
        Assert.Equal("completed", status.GetProperty("state").GetString());
        var result = status.GetProperty("result");
        Assert.Equal(tool, result.GetProperty("tool").GetString());
        return result;
    }

    async Task<IReadOnlyList<string>> LoraNames() =>
        (await server.GetJson("/api/v1/loras")).EnumerateArray().Select(l => l.GetProperty("name").GetString()!).ToList();

    [SkippableFact]
    public async Task MergeIntoMakesACheckpointThatGeneratesAndExtractGetsALoraBackFromIt()
    {
        var baked = await Tool("merge-into", new { model = "tiny-sd15", loras = new[] { new { name = "sd15-attn", unet = 1.0, te = 1.0 } }, output = "tiny-sd15-baked", dtype = "fp32" });
        Assert.Equal("checkpoint", baked.GetProperty("folder").GetString());
        Assert.Equal("tiny-sd15-baked.safetensors", baked.GetProperty("file").GetString());
        Assert.True(baked.GetProperty("report").GetProperty("changed").GetInt32() > 0);
        Assert.Equal(0, baked.GetProperty("report").GetProperty("loras")[0].GetProperty("unmatched").GetInt32());
        var models = await server.GetJson("/api/v1/models");
        Assert.Contains(models.EnumerateArray(), m => m.GetProperty("name").GetString() == "tiny-sd15-baked");
        var generated = await RunAsync(server, "/api/v1/generate", new
        {
            model = "tiny-sd15-baked", prompt = "a house", seed = 3, steps = 2, cfg = 4, sampler = "euler", width = 64, height = 64, save = false,
        });
        Assert.Equal("completed", generated.GetProperty("state").GetString());

        var extracted = await Tool("extract", new { @base = "tiny-sd15", tuned = "tiny-sd15-baked", rank = 4, output = "sd15-extracted" });
        Assert.True(extracted.GetProperty("report").GetProperty("module_count").GetInt32() > 0);
        Assert.Contains("sd15-extracted", await LoraNames());
    }

    [SkippableFact]
    public async Task ResizeMergeConvertAndBakeBlocksWriteListedLorasWithTheirReports()
    {
        var resized = await Tool("resize", new { lora = "sd15-attn", rank = 2, output = "sd15-attn-r2" });
        var report = resized.GetProperty("report");
        Assert.All(report.GetProperty("modules").EnumerateArray(), m => Assert.Equal(2, m.GetProperty("new_rank").GetInt32()));
        double kept = report.GetProperty("average_fro_retained").GetDouble();
        Assert.InRange(kept, 0.0, 1.0 + 1e-9);

        var merged = await Tool("merge", new { loras = new[] { new { name = "sd15-attn", weight = 0.5 }, new { name = "sd15-locon", weight = 0.5 } }, output = "sd15-merged" });
        Assert.Equal("concat", merged.GetProperty("report").GetProperty("method").GetString());
        Assert.True(merged.GetProperty("report").GetProperty("module_count").GetInt32() > 0);

        var converted = await Tool("convert", new { lora = "sd15-attn", to = "peft", output = "sd15-attn-peft" });
        Assert.Equal("peft", converted.GetProperty("report").GetProperty("to").GetString());

        var baked = await Tool("bake-blocks", new { lora = "sd15-attn", blocks = "MIDD", output = "sd15-attn-midd" });
        var b = baked.GetProperty("report");
        Assert.True(b.GetProperty("scaled").GetInt32() + b.GetProperty("dropped").GetInt32() + b.GetProperty("kept").GetInt32() > 0);

        var names = await LoraNames();
        foreach (var n in new[] { "sd15-attn-r2", "sd15-merged", "sd15-attn-peft", "sd15-attn-midd" }) Assert.Contains(n, names);

        // an output that exists is refused, and replaced with force
        var (taken, body) = await PostAsync(server, "/api/v1/lora/tools/resize", new { lora = "sd15-attn", rank = 2, output = "sd15-attn-r2" });
        Assert.Equal("conflict", ErrorKind(taken, body));
        await Tool("resize", new { lora = "sd15-attn", rank = 1, output = "sd15-attn-r2", force = true });
    }

    [SkippableFact]
    public async Task PathsUnknownNamesAndBadSettingsAreRefusedWithAJsonError()
    {
        int before = server.Engine.Queue.Finished.Count + server.Engine.Queue.Pending.Count + server.Engine.Queue.Running.Count;
        foreach (var (tool, body, status) in new (string, object, HttpStatusCode)[]
        {
            ("resize", new { lora = "../Lora/sd15-attn", rank = 2, output = "x" }, HttpStatusCode.BadRequest),
            ("resize", new { lora = "/etc/passwd", rank = 2, output = "x" }, HttpStatusCode.BadRequest),
            ("resize", new { lora = "no-such-lora", rank = 2, output = "x" }, HttpStatusCode.NotFound),
            ("resize", new { lora = "sd15-attn", rank = 2, output = "../outside" }, HttpStatusCode.BadRequest),
            ("resize", new { lora = "sd15-attn", rank = 2, output = "sub/x" }, HttpStatusCode.BadRequest),
            ("resize", new { lora = "sd15-attn", rank = 2, output = "sd15-locon" }, HttpStatusCode.Conflict),
            ("resize", new { lora = "sd15-attn", output = "x" }, HttpStatusCode.BadRequest),
            ("merge", new { loras = new[] { new { name = "sd15-attn" } }, output = "x" }, HttpStatusCode.BadRequest),
            ("convert", new { lora = "sd15-attn", to = "onnx", output = "x" }, HttpStatusCode.BadRequest),
            ("bake-blocks", new { lora = "sd15-attn", blocks = "NOT A PRESET", output = "x" }, HttpStatusCode.BadRequest),
            ("merge-into", new { model = "../../etc/passwd", loras = new[] { new { name = "sd15-attn" } }, output = "x" }, HttpStatusCode.BadRequest),
            ("merge-into", new { model = "tiny-sd15", loras = new[] { new { name = "sd15-attn" } }, output = "tiny-sd15-inpaint" }, HttpStatusCode.Conflict),
            ("extract", new { @base = "tiny-sd15", tuned = "nope", rank = 4, output = "x" }, HttpStatusCode.NotFound),
        })
        {
            var (code, error) = await PostAsync(server, "/api/v1/lora/tools/" + tool, body);
            output.WriteLine($"{tool} {(int)code} {error}");
            Assert.Equal(status, code);
            ErrorKind(code, error);
        }
        Assert.Equal(before, server.Engine.Queue.Finished.Count + server.Engine.Queue.Pending.Count + server.Engine.Queue.Running.Count);
        Assert.False(File.Exists(Path.Combine(server.Dir.Path, "outside.safetensors")));
    }
}
