using System.Net;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using LoraCraft.Pipelines;
using LoraCraft.Server;
using LoraCraft.Tests.Conformance;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.TestHost;
using Xunit;
using Xunit.Abstractions;

namespace LoraCraft.Tests.Server;

/// <summary>The native API the web UI uses: submit, follow (SSE), fetch images, cancel; listings and coverage.</summary>
public sealed class NativeApiTests(ServerFixture server, ITestOutputHelper output) : IClassFixture<ServerFixture>
{
    static object Request(int steps = 2, long seed = 11, object? loras = null, int? previewEvery = null) => new
    {
        prompt = "a blue bird", negative = "", seed, steps, cfg = 4, sampler = "euler", width = 64, height = 64,
        loras, preview_every = previewEvery,
    };

    /// <summary>The SSE stream of a job until it ends: (event, data) pairs.</summary>
    async Task<List<(string Event, JsonElement Data)>> Events(string id)
    {
        var events = new List<(string, JsonElement)>();
        using var stream = await server.Http.GetStreamAsync($"/api/v1/jobs/{id}/events");
        using var reader = new StreamReader(stream);
        string? type = null;
        while (await reader.ReadLineAsync() is { } line)
        {
            if (line.StartsWith("event: ", StringComparison.Ordinal)) type = line[7..];
            else if (line.StartsWith("data: ", StringComparison.Ordinal)) events.Add((type!, JsonDocument.Parse(line[6..]).RootElement.Clone()));
        }
        return events;
    }

    [SkippableFact]
    public async Task AGenerationIsFollowedFromQueuedToCompletedWithStepsPreviewsAndImages()
    {
        var submitted = await server.PostJson("/api/v1/generate", Request(steps: 4, previewEvery: 2, loras: new[] { new { name = "sd15-attn", unet = 0.8, te = 0.5 } }));
        string id = submitted.GetProperty("id").GetString()!;
        var events = await Events(id);
        var names = events.Select(e => e.Event).ToList();
        output.WriteLine(string.Join(" ", names));
        Assert.Equal("queued", names[0]);
        Assert.True(names.IndexOf("started") < names.IndexOf("step"));
        Assert.Equal(4, names.Count(n => n == "step"));
        Assert.True(names.IndexOf("image") > names.LastIndexOf("step"));
        Assert.Equal("completed", names[^1]);
        var steps = events.Where(e => e.Event == "step").Select(e => e.Data).ToList();
        Assert.Equal([1, 2, 3, 4], steps.Select(s => s.GetProperty("step").GetInt32()));
        Assert.StartsWith("data:image/png;base64,", steps[1].GetProperty("preview").GetString());
        Assert.Equal(JsonValueKind.Null, steps[0].GetProperty("preview").ValueKind);
        Assert.Equal(1.0, steps[^1].GetProperty("fraction").GetDouble(), 6);

        var status = await server.GetJson($"/api/v1/jobs/{id}");
        Assert.Equal("completed", status.GetProperty("state").GetString());
        var image = status.GetProperty("result").GetProperty("images")[0];
        Assert.Contains("Lora hashes", image.GetProperty("infotext").GetString());
        var png = await server.Http.GetByteArrayAsync(image.GetProperty("url").GetString());
        Assert.Equal((64, 64), ImageFiles.Size(png, "png"));
        var saved = await server.Http.GetByteArrayAsync(image.GetProperty("saved").GetString());
        Assert.Equal(png, saved);
        var lora = status.GetProperty("result").GetProperty("loras")[0];
        Assert.Equal(0.8, lora.GetProperty("unet").GetDouble());
        Assert.True(lora.GetProperty("layers").GetInt32() > 0);
        var outputs = await server.GetJson("/api/v1/outputs");
        Assert.Contains(outputs.EnumerateArray(), o => o.GetProperty("url").GetString() == image.GetProperty("saved").GetString());
    }

    [SkippableFact]
    public async Task AWaitingJobAndARunningJobCanBeCancelled()
    {
        var running = await server.PostJson("/api/v1/generate", Request(steps: 200, seed: 1));
        var waiting = await server.PostJson("/api/v1/generate", Request(steps: 2, seed: 2));
        string runId = running.GetProperty("id").GetString()!, waitId = waiting.GetProperty("id").GetString()!;
        Assert.True((await server.PostJson($"/api/v1/jobs/{waitId}/cancel", new { })).GetProperty("cancelled").GetBoolean());
        Assert.Equal("cancelled", (await server.GetJson($"/api/v1/jobs/{waitId}")).GetProperty("state").GetString());
        for (int i = 0; i < 400 && (await server.GetJson($"/api/v1/jobs/{runId}")).GetProperty("progress").ValueKind == JsonValueKind.Null; i++)
            await Task.Delay(25);
        Assert.True((await server.PostJson($"/api/v1/jobs/{runId}/cancel", new { })).GetProperty("cancelled").GetBoolean());
        var events = await Events(runId);
        Assert.Equal("cancelled", events[^1].Event);
        Assert.True(events.Count(e => e.Event == "step") < 200);
        Assert.False((await server.PostJson($"/api/v1/jobs/{runId}/cancel", new { })).GetProperty("cancelled").GetBoolean());
    }

    [SkippableFact]
    public async Task ListingsShowModelsLorasSamplersAndTheCoverageOfALora()
    {
        var models = await server.GetJson("/api/v1/models");
        Assert.Contains(models.EnumerateArray(), m => m.GetProperty("name").GetString() == "tiny-sd15" && m.GetProperty("config").GetBoolean());
        var loras = await server.GetJson("/api/v1/loras");
        var attn = loras.EnumerateArray().Single(l => l.GetProperty("name").GetString() == "sd15-attn");
        Assert.Equal("sd1", attn.GetProperty("family").GetString());
        Assert.Equal(4, attn.GetProperty("rank").GetInt64());
        var xl = loras.EnumerateArray().Single(l => l.GetProperty("name").GetString() == "sdxl-attn");
        Assert.Equal("sdxl", xl.GetProperty("family").GetString());
        var details = await server.GetJson("/api/v1/loras/sd15-attn");
        Assert.True(details.GetProperty("metadata").TryGetProperty("ss_network_dim", out _));
        Assert.True(details.GetProperty("tag_frequency").GetArrayLength() > 0);

        var fits = await server.GetJson("/api/v1/loras/sd15-attn/coverage?model=tiny-sd15");
        Assert.True(fits.GetProperty("fits").GetBoolean());
        Assert.True(fits.GetProperty("unet").GetInt32() > 0 && fits.GetProperty("text_encoder").GetInt32() > 0);
        var other = await server.GetJson("/api/v1/loras/sdxl-attn/coverage?model=tiny-sd15");
        Assert.False(other.GetProperty("fits").GetBoolean());
        Assert.Contains("sdxl", other.GetProperty("problem").GetString());

        var samplers = await server.GetJson("/api/v1/samplers");
        Assert.Contains(samplers.EnumerateArray(), s => s.GetProperty("name").GetString() == "dpmpp_2m" && s.GetProperty("a1111_name").GetString() == "DPM++ 2M");
        Assert.True((await server.GetJson("/api/v1/schedulers")).GetArrayLength() >= 6);
        var openapi = await server.GetJson("/openapi/v1.json");
        Assert.True(openapi.GetProperty("paths").TryGetProperty("/api/v1/generate", out _));
    }

    [SkippableFact]
    public async Task UserMetadataIsSavedBesideTheLoraAsA1111Does()
    {
        using var response = await server.Http.PutAsJsonAsync("/api/v1/loras/sd15-locon/user-metadata",
            new { activation_text = "watercolor style", preferred_weight = 0.7, notes = "soft" });
        Assert.True(response.IsSuccessStatusCode, await response.Content.ReadAsStringAsync());
        var file = JsonDocument.Parse(File.ReadAllText(Path.Combine(server.LoraDir, "sd15-locon.json"))).RootElement;
        Assert.Equal("watercolor style", file.GetProperty("activation text").GetString());
        Assert.Equal(0.7, file.GetProperty("preferred weight").GetDouble());
        var lora = (await server.GetJson("/api/v1/loras")).EnumerateArray().Single(l => l.GetProperty("name").GetString() == "sd15-locon");
        Assert.Equal("watercolor style", lora.GetProperty("user").GetProperty("activation_text").GetString());
        using var bad = await server.Http.PutAsJsonAsync("/api/v1/loras/sd15-locon/user-metadata", new { preferred_weight = "heavy" });
        Assert.Equal(HttpStatusCode.BadRequest, bad.StatusCode);
    }

    [SkippableFact]
    public async Task NativeErrorsAreJsonWithAKind()
    {
        async Task<(HttpStatusCode, JsonElement)> Post(object body)
        {
            using var r = await server.Http.PostAsJsonAsync("/api/v1/generate", body);
            return (r.StatusCode, JsonDocument.Parse(await r.Content.ReadAsStringAsync()).RootElement.Clone());
        }
        var (s1, b1) = await Post(new { prompt = "x", width = 65, height = 64 });
        Assert.Equal(HttpStatusCode.BadRequest, s1);
        Assert.Equal("width", b1.GetProperty("error").GetProperty("field").GetString());
        var (s2, b2) = await Post(new { prompt = "x", model = "nope" });
        Assert.Equal(HttpStatusCode.NotFound, s2);
        Assert.Equal("notfound", b2.GetProperty("error").GetProperty("kind").GetString());
        var (s3, _) = await Post(new { prompt = "x", init_image = "###" });
        Assert.Equal(HttpStatusCode.BadRequest, s3);
        using var missing = await server.Http.GetAsync("/api/v1/jobs/does-not-exist");
        Assert.Equal(HttpStatusCode.NotFound, missing.StatusCode);
    }
}

/// <summary>The same app in process (ASP.NET Core's TestServer): no socket, the same routes.</summary>
public sealed class InProcessServerTests
{
    [SkippableFact]
    public async Task TheAppAnswersInProcess()
    {
        var f = Fixture.Require();
        using var dir = new TempDir();
        Directory.CreateDirectory(dir.File("ckpt"));
        File.Copy(f.ModelFile("sd15"), dir.File("ckpt/tiny.safetensors"));
        var options = new ServerOptions { CheckpointsDir = dir.File("ckpt"), LoraDir = dir.File("lora"), OutputsDir = dir.File("out"), Port = 0 };
        await using var app = LoraServer.Build(options, b => b.WebHost.UseTestServer());
        await app.StartAsync();
        using var client = app.GetTestClient();
        var models = JsonDocument.Parse(await client.GetStringAsync("/sdapi/v1/sd-models")).RootElement;
        Assert.Equal("tiny.safetensors", models[0].GetProperty("title").GetString());
        var progress = JsonDocument.Parse(await client.GetStringAsync("/sdapi/v1/progress")).RootElement;
        Assert.Equal(0, progress.GetProperty("state").GetProperty("job_count").GetInt32());
        ((ServerEngine)app.Services.GetService(typeof(ServerEngine))!).Dispose();
    }
}
