using System.Globalization;
using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using System.Text.Json.Nodes;
using LoraCraft.Lora;
using LoraCraft.Models.Loading;
using LoraCraft.Models.Random;
using LoraCraft.Pipelines;
using LoraCraft.Runtime;
using LoraCraft.Server;
using LoraCraft.Tests.Lora;
using Microsoft.AspNetCore.Builder;
using Xunit;
using Xunit.Abstractions;

namespace LoraCraft.Tests.Server;

/// <summary>
/// A server over a tiny random SD1 checkpoint and a LoRA folder with one file of every adapter
/// type (<see cref="AdapterSamples"/>: LoRA, LoCon with CP, LoHa, LoKr, (IA)³, full diff, norm,
/// GLoRA, OFT, BOFT, DoRA, PEFT DoRA). Needs no fixtures. Float32, 64×64, two steps.
/// </summary>
public sealed class AdapterServer : IDisposable
{
    readonly TempDir _dir = new();
    readonly WebApplication _app;

    public string Checkpoint => _dir.File("checkpoints/tiny.safetensors");
    public string Config => _dir.File("checkpoints/tiny.config");
    public string LoraDir => _dir.File("Lora");
    public IReadOnlyList<AdapterSamples.Sample> Samples { get; }
    public HttpClient Http { get; }
    public ServerEngine Engine { get; }

    public AdapterServer()
    {
        TorchNative.Ensure();
        Directory.CreateDirectory(_dir.File("checkpoints"));
        Directory.CreateDirectory(LoraDir);
        RandomCheckpoint.Make(Checkpoint, RandomArchitecture.Of(RandomModelKind.Sd15, RandomModelSize.Tiny), seed: 11);
        using (var model = CheckpointLoader.Load(Checkpoint, new LoadOptions { ConfigDir = Config }))
            Samples = AdapterSamples.WriteAll(LoraDir, new LoraTargets(model));
        _app = LoraServer.Build(new ServerOptions
        {
            Port = 0, CheckpointsDir = _dir.File("checkpoints"), LoraDir = LoraDir, EmbeddingsDir = _dir.File("embeddings"),
            OutputsDir = _dir.File("outputs"), DataDir = _dir.File("user"), DType = TorchSharp.torch.ScalarType.Float32,
        });
        _app.StartAsync().GetAwaiter().GetResult();
        Http = new HttpClient { BaseAddress = new Uri(LoraServer.Address(_app)), Timeout = TimeSpan.FromMinutes(3) };
        Engine = (ServerEngine)_app.Services.GetService(typeof(ServerEngine))!;
    }

    public void Dispose()
    {
        Http.Dispose();
        _app.StopAsync().GetAwaiter().GetResult();
        _app.DisposeAsync().AsTask().GetAwaiter().GetResult();
        Engine.Dispose();
        _dir.Dispose();
    }
}

/// <summary>
/// Each adapter type loads and applies through the A1111 API (a `&lt;lora:…&gt;` tag), the native
/// API (the structured list, with block weights, schedules and `lora_mode`) and ComfyUI's
/// LoraLoader, with the same pixels as `loracraft generate`; the LoRA list names each file's type.
/// </summary>
public sealed class AdapterApiTests(AdapterServer shared, ITestOutputHelper output) : IClassFixture<AdapterServer>
{
    AdapterServer _server = shared;

    const string Prompt = "a small red boat";
    static readonly string Seed = "321";

    byte[] Cli(params string[] extra)
    {
        using var dir = new TempDir();
        var o = new StringWriter();
        var e = new StringWriter();
        int code = LoraCraft.Cli.Cli.Run(["generate", "--model", _server.Checkpoint, "--config", _server.Config, "--dtype", "fp32", "--lora-dir", _server.LoraDir,
            "--negative", "", "--seed", Seed, "--steps", "2", "--cfg", "5", "--sampler", "euler", "--width", "64", "--height", "64",
            "--out", dir.File("cli.png"), "--quiet", .. extra], o, e);
        Assert.True(code == 0, e.ToString());
        return File.ReadAllBytes(dir.File("cli.png"));
    }

    async Task<byte[]> A1111(string prompt)
    {
        using var response = await _server.Http.PostAsJsonAsync("/sdapi/v1/txt2img", new Dictionary<string, object>
        {
            ["prompt"] = prompt, ["negative_prompt"] = "", ["seed"] = long.Parse(Seed, CultureInfo.InvariantCulture), ["steps"] = 2, ["cfg_scale"] = 5,
            ["width"] = 64, ["height"] = 64, ["sampler_name"] = "Euler", ["batch_size"] = 1, ["n_iter"] = 1,
        });
        var text = await response.Content.ReadAsStringAsync();
        Assert.True(response.IsSuccessStatusCode, text);
        return Convert.FromBase64String(JsonDocument.Parse(text).RootElement.GetProperty("images")[0].GetString()!);
    }

    /// <summary>A native generation: the PNG and the job's LoRA report.</summary>
    async Task<(byte[] Png, JsonElement Loras)> Native(object? loras, string prompt = Prompt, string? mode = null)
    {
        using var submitted = await _server.Http.PostAsJsonAsync("/api/v1/generate", new Dictionary<string, object?>
        {
            ["prompt"] = prompt, ["negative"] = "", ["seed"] = long.Parse(Seed, CultureInfo.InvariantCulture), ["steps"] = 2, ["cfg"] = 5,
            ["sampler"] = "euler", ["width"] = 64, ["height"] = 64, ["loras"] = loras, ["lora_mode"] = mode, ["save"] = false, ["preview_every"] = 0,
        });
        var text = await submitted.Content.ReadAsStringAsync();
        Assert.True(submitted.StatusCode == HttpStatusCode.Accepted, text);
        string id = JsonDocument.Parse(text).RootElement.GetProperty("id").GetString()!;
        for (var until = DateTime.UtcNow.AddMinutes(3); DateTime.UtcNow < until; await Task.Delay(50))
        {
            var status = await _server.Http.GetFromJsonAsync<JsonElement>($"/api/v1/jobs/{id}");
            var state = status.GetProperty("state").GetString();
            if (state == "completed")
                return (await _server.Http.GetByteArrayAsync($"/api/v1/jobs/{id}/images/0"), status.GetProperty("result").GetProperty("loras").Clone());
            Assert.True(state is "pending" or "running", status.ToString());
        }
        throw new TimeoutException("the job did not finish");
    }

    /// <summary>ComfyUI's default graph with a LoraLoader between the checkpoint and its users.</summary>
    async Task<byte[]> Comfy(string loraFile, double strength)
    {
        var prompt = ComfyPrompts.Txt2Img(seed: ulong.Parse(Seed, CultureInfo.InvariantCulture), steps: 2, sampler: "euler", scheduler: "normal", cfg: 5,
                                          positive: Prompt, negative: "", prefix: "adapter");
        prompt["4"]!["inputs"]!["ckpt_name"] = "tiny.safetensors";
        prompt["10"] = new JsonObject
        {
            ["class_type"] = "LoraLoader",
            ["inputs"] = new JsonObject
            {
                ["model"] = new JsonArray("4", 0), ["clip"] = new JsonArray("4", 1), ["lora_name"] = loraFile,
                ["strength_model"] = strength, ["strength_clip"] = strength,
            },
        };
        prompt["3"]!["inputs"]!["model"] = new JsonArray("10", 0);
        prompt["6"]!["inputs"]!["clip"] = new JsonArray("10", 1);
        prompt["7"]!["inputs"]!["clip"] = new JsonArray("10", 1);
        using var posted = await _server.Http.PostAsJsonAsync("/prompt", ComfyPrompts.Body(prompt));
        var text = await posted.Content.ReadAsStringAsync();
        Assert.True(posted.IsSuccessStatusCode, text);
        string id = (string)JsonNode.Parse(text)!["prompt_id"]!;
        for (var until = DateTime.UtcNow.AddMinutes(3); DateTime.UtcNow < until; await Task.Delay(50))
        {
            var history = JsonNode.Parse(await _server.Http.GetStringAsync($"/history/{id}"))!.AsObject();
            if (history[id] is not { } entry) continue;
            var images = entry["outputs"]?["9"]?["images"];
            Assert.True(images is not null, entry.ToJsonString());
            var image = images![0]!;
            return await _server.Http.GetByteArrayAsync($"/view?filename={Uri.EscapeDataString((string)image["filename"]!)}&subfolder={image["subfolder"]}&type={image["type"]}");
        }
        throw new TimeoutException("the ComfyUI prompt did not finish");
    }

    static float MaxDifference(byte[] a, byte[] b)
    {
        using var x = ImageFiles.DecodeRgb(a, "a");
        using var y = ImageFiles.DecodeRgb(b, "b");
        using var d = (x - y).abs().max();
        return d.item<float>() * 255;
    }

    static string Type(AdapterSamples.Sample s) => s.Algorithm.Id() + (s.Name.Contains("dora", StringComparison.Ordinal) ? "+dora" : "");

    /// <summary>
    /// The norm adapter at 0.8, then its text-encoder part only, then its UNet part only, on one
    /// server: each image is `generate`'s. (Its float32 diffs used to be scaled in place by every
    /// merge, so a file kept between jobs drifted: 9 levels off here.)
    /// </summary>
    [Fact]
    public async Task SwitchingANormAdaptersPartsBetweenJobsKeepsTheCommandLinesPixels()
    {
        using var fresh = new AdapterServer();
        _server = fresh;
        Assert.Equal(0, MaxDifference(await A1111($"{Prompt} <lora:norm:0.8>"), Cli("--prompt", $"{Prompt} <lora:norm:0.8>")));
        Assert.Equal(0, MaxDifference(await A1111($"{Prompt} <lora:norm:0.8:0>"), Cli("--prompt", $"{Prompt} <lora:norm:0.8:0>")));
        Assert.Equal(0, MaxDifference(await A1111($"{Prompt} <lora:norm:0:0.8>"), Cli("--prompt", $"{Prompt} <lora:norm:0:0.8>")));
    }

    [Fact]
    public async Task TheLoraListNamesEveryFilesType()
    {
        var listed = await _server.Http.GetFromJsonAsync<JsonElement>("/api/v1/loras");
        foreach (var s in _server.Samples)
        {
            var l = listed.EnumerateArray().Single(x => x.GetProperty("name").GetString() == s.Name);
            Assert.True(l.GetProperty("error").ValueKind == JsonValueKind.Null, l.ToString());
            Assert.Equal(Type(s), l.GetProperty("algorithm").GetString() + (l.GetProperty("dora").GetBoolean() ? "+dora" : ""));
        }
        var details = await _server.Http.GetFromJsonAsync<JsonElement>("/api/v1/loras/locon");
        Assert.Equal(2, details.GetProperty("algorithms").GetProperty("locon").GetInt32());
    }

    [Fact]
    public async Task EveryTypeGivesTheCommandLinesPixelsThroughTheA1111AndNativeApis()
    {
        var plain = Cli("--prompt", Prompt);
        foreach (var s in _server.Samples)
        {
            string tag = $"<lora:{s.Name}:0.8>";
            var cli = Cli("--prompt", $"{Prompt} {tag}");
            var a1111 = await A1111($"{Prompt} {tag}");
            var (native, loras) = await Native(new[] { new { name = s.Name, unet = 0.8, te = 0.8 } });
            output.WriteLine($"{s.Name,-10} {Type(s),-10} vs no LoRA: {MaxDifference(cli, plain),5:0} levels; A1111 {MaxDifference(a1111, cli)}, native {MaxDifference(native, cli)}");
            Assert.Equal(0, MaxDifference(a1111, cli));
            Assert.Equal(0, MaxDifference(native, cli));
            var report = Assert.Single(loras.EnumerateArray());
            Assert.Equal(s.Name, report.GetProperty("name").GetString());
            Assert.True(report.GetProperty("layers").GetInt32() > 0, report.ToString());
            Assert.Equal(0, report.GetProperty("unmatched").GetInt32());
        }
    }

    [Fact]
    public async Task EveryTypeLoadsThroughComfysLoraLoaderWithTheCommandLinesPixels()
    {
        foreach (var s in _server.Samples)
        {
            var comfy = await Comfy(s.Name + ".safetensors", 0.8);
            var cli = Cli("--prompt-style", "comfy", "--prompt", Prompt, "--lora", s.Path + ":0.8");
            output.WriteLine($"{s.Name,-10} ComfyUI vs generate: {MaxDifference(comfy, cli)} levels");
            Assert.Equal(0, MaxDifference(comfy, cli));
        }
    }

    [Fact]
    public async Task BlockWeightsAndSchedulesAreTheSameInATagAndInTheNativeFields()
    {
        var plain = Cli("--prompt", Prompt);
        // the LoCon file adapts IN01 and IN02 only: with both at 0 the image is the plain one, exactly
        string zero = "1,0,0,1,1,1,1,1,1,1,1,1,1,1,1,1,1";
        string half = "1,1,0,1,1,1,1,1,1,1,1,1,1,1,1,1,1";
        Assert.Equal(0, MaxDifference(await A1111($"{Prompt} <lora:locon:1:lbw={zero}>"), plain));
        Assert.Equal(0, MaxDifference((await Native(new[] { new { name = "locon", lbw = zero } })).Png, plain));
        Assert.Equal(0, MaxDifference((await Native(new object[] { new { name = "locon", blocks = new { down = new[] { new[] { 0.0 } } } } })).Png, plain));
        var cliHalf = Cli("--prompt", $"{Prompt} <lora:locon:1:lbw={half}>");
        Assert.Equal(0, MaxDifference(await A1111($"{Prompt} <lora:locon:1:lbw={half}>"), cliHalf));
        Assert.Equal(0, MaxDifference((await Native(new[] { new { name = "locon", lbw = half } })).Png, cliHalf));

        // loractl keyframes: a 0 -> 1 ramp over the steps, as a tag and as unet_schedule, merged or beside the layers
        foreach (var name in new[] { "loha", "lokr", "oft" })
        {
            var cliRamp = Cli("--prompt", $"{Prompt} <lora:{name}:1:0@0,1@1>");
            Assert.Equal(0, MaxDifference(await A1111($"{Prompt} <lora:{name}:1:0@0,1@1>"), cliRamp));
            var scheduled = new[] { new { name, te = 1.0, unet_schedule = "0@0,1@1" } };
            Assert.Equal(0, MaxDifference((await Native(scheduled)).Png, cliRamp));
            var merged = (await Native(scheduled, mode: "merge")).Png;
            var bypass = (await Native(scheduled, mode: "bypass")).Png;
            output.WriteLine($"{name} ramp: merge vs bypass {MaxDifference(merged, bypass)} levels, auto vs merge {MaxDifference(cliRamp, merged)}");
            Assert.True(MaxDifference(merged, bypass) <= 1, name);
        }

        // mistakes are 400s naming the field, before any job
        foreach (var (body, field) in new (object, string)[]
                 {
                     (new { prompt = Prompt, lora_mode = "sideways" }, "lora_mode"),
                     (new { prompt = Prompt, loras = new[] { new { name = "locon", lbw = "1,2,3" } } }, "loras"),
                 })
        {
            using var r = await _server.Http.PostAsJsonAsync("/api/v1/generate", body);
            var text = await r.Content.ReadAsStringAsync();
            Assert.True(r.StatusCode == HttpStatusCode.BadRequest, text);
            Assert.Equal(field, JsonDocument.Parse(text).RootElement.GetProperty("error").GetProperty("field").GetString());
        }
        using var badSchedule = await _server.Http.PostAsJsonAsync("/api/v1/generate", new { prompt = Prompt, loras = new[] { new { name = "locon", unet_schedule = "x@y" } } });
        Assert.Equal(HttpStatusCode.BadRequest, badSchedule.StatusCode);
    }
}
