using System.Net;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using LoraCraft.Pipelines;
using LoraCraft.Tests.Conformance;
using TorchSharp;
using Xunit;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace LoraCraft.Tests.Server;

/// <summary>What an A1111 client sees: A1111's fields in, A1111's shapes out, A1111's semantics.</summary>
public sealed class A1111ApiTests(ServerFixture server, ITestOutputHelper output) : IClassFixture<ServerFixture>
{
    static readonly JsonSerializerOptions Plain = new();

    static object Txt2Img(string prompt = "a red fox in snow", long seed = 42, int steps = 2, object? extra = null)
    {
        var body = new Dictionary<string, object?>
        {
            ["prompt"] = prompt, ["negative_prompt"] = "blurry", ["seed"] = seed, ["steps"] = steps, ["cfg_scale"] = 5,
            ["width"] = 64, ["height"] = 64, ["sampler_name"] = "Euler a", ["batch_size"] = 1, ["n_iter"] = 1,
        };
        if (extra is not null)
            foreach (var p in JsonSerializer.SerializeToElement(extra).EnumerateObject()) body[p.Name] = p.Value;
        return body;
    }

    static byte[] Image(JsonElement response, int i = 0) => Convert.FromBase64String(response.GetProperty("images")[i].GetString()!);

    static JsonElement Info(JsonElement response) => JsonDocument.Parse(response.GetProperty("info").GetString()!).RootElement;

    static string Infotext(byte[] png) => ImageFiles.ReadTextChunks(png, "png")[ImageFiles.ParametersKey];

    static double MaxPixelDifference(byte[] a, byte[] b)
    {
        using var x = ImageFiles.DecodeRgb(a, "a");
        using var y = ImageFiles.DecodeRgb(b, "b");
        Assert.Equal(x.shape, y.shape);
        using var d = (x - y).abs().max();
        return d.item<float>() * 255;
    }

    [SkippableFact]
    public async Task Txt2ImgGivesTheSamePixelsAsTheCommandLine()
    {
        var r = await server.PostJson("/sdapi/v1/txt2img", Txt2Img("a lighthouse <lora:sd15-attn:0.8>", seed: 1234, steps: 3));
        Assert.DoesNotContain("data:", r.GetProperty("images")[0].GetString()!);
        var png = Image(r);
        string infotext = Infotext(png);
        output.WriteLine(infotext);
        Assert.Contains("Seed: 1234", infotext);
        Assert.Contains("Lora hashes: \"sd15-attn: ", infotext);

        using var dir = new TempDir();
        var o = new StringWriter();
        var e = new StringWriter();
        int code = LoraCraft.Cli.Cli.Run(["generate", "--model", Path.Combine(server.CheckpointsDir, "tiny-sd15.safetensors"), "--dtype", "fp32",
            "--lora-dir", server.LoraDir, "--prompt", "a lighthouse <lora:sd15-attn:0.8>", "--negative", "blurry", "--seed", "1234", "--steps", "3",
            "--cfg", "5", "--sampler", "Euler a", "--width", "64", "--height", "64", "--out", dir.File("cli.png"), "--quiet"], o, e);
        Assert.True(code == 0, e.ToString());
        var cli = File.ReadAllBytes(dir.File("cli.png"));
        Assert.Equal(0, MaxPixelDifference(png, cli));
        Assert.Equal(Infotext(cli).Split('\n')[0], infotext.Split('\n')[0]);
    }

    [SkippableFact]
    public async Task TheResponseHasA1111sShape()
    {
        var r = await server.PostJson("/sdapi/v1/txt2img", Txt2Img(seed: 7));
        Assert.Equal(1, r.GetProperty("images").GetArrayLength());
        Assert.Equal("a red fox in snow", r.GetProperty("parameters").GetProperty("prompt").GetString());
        var info = Info(r);
        foreach (var key in new[] { "prompt", "all_prompts", "negative_prompt", "seed", "all_seeds", "subseed", "all_subseeds", "width", "height",
                                    "sampler_name", "cfg_scale", "steps", "batch_size", "sd_model_name", "sd_model_hash", "denoising_strength",
                                    "infotexts", "job_timestamp", "clip_skip", "version" })
            Assert.True(info.TryGetProperty(key, out _), $"info lacks {key}");
        Assert.Equal(7, info.GetProperty("seed").GetInt64());
        Assert.Equal("Euler a", info.GetProperty("sampler_name").GetString());
        Assert.Equal("tiny-sd15", info.GetProperty("sd_model_name").GetString());
    }

    [SkippableFact]
    public async Task WhatWebuiapiSendsIsAcceptedNullsAndDeprecatedFieldsIncluded()
    {
        // the body webuiapi 0.9.17 posts (interfaces.md §2), with its nulls and deprecated fields
        var body = new Dictionary<string, object?>
        {
            ["enable_hr"] = false, ["hr_scale"] = 2, ["hr_upscaler"] = "Latent", ["hr_second_pass_steps"] = 0, ["hr_resize_x"] = 0, ["hr_resize_y"] = 0,
            ["hr_checkpoint_name"] = null, ["hr_sampler_name"] = null, ["hr_scheduler"] = null, ["hr_prompt"] = "", ["hr_negative_prompt"] = "",
            ["denoising_strength"] = 0.7, ["firstphase_width"] = 0, ["firstphase_height"] = 0, ["prompt"] = "a cat", ["styles"] = Array.Empty<string>(),
            ["seed"] = -1, ["subseed"] = -1, ["subseed_strength"] = 0.0, ["seed_resize_from_h"] = 0, ["seed_resize_from_w"] = 0,
            ["batch_size"] = 1, ["n_iter"] = 1, ["steps"] = 2, ["cfg_scale"] = 7.0, ["width"] = 64, ["height"] = 64, ["restore_faces"] = false,
            ["tiling"] = false, ["do_not_save_samples"] = false, ["do_not_save_grid"] = false, ["negative_prompt"] = "", ["eta"] = 1.0,
            ["s_churn"] = 0, ["s_tmax"] = 0, ["s_tmin"] = 0, ["s_noise"] = 1, ["override_settings"] = new { },
            ["override_settings_restore_afterwards"] = true, ["sampler_name"] = "Euler a", ["scheduler"] = "automatic", ["sampler_index"] = "Euler a",
            ["script_name"] = null, ["script_args"] = Array.Empty<object>(), ["send_images"] = true, ["save_images"] = false,
            ["alwayson_scripts"] = new { }, ["some_field_from_a_newer_client"] = 3,
        };
        var r = await server.PostJson("/sdapi/v1/txt2img", body);
        var info = Info(r);
        long seed = info.GetProperty("seed").GetInt64();
        Assert.InRange(seed, 0, uint.MaxValue);
        Assert.Contains($"Seed: {seed}", Infotext(Image(r)));
    }

    [SkippableFact]
    public async Task BatchSizeTimesIterationsImagesWithConsecutiveSeeds()
    {
        var r = await server.PostJson("/sdapi/v1/txt2img", Txt2Img(seed: 100, steps: 1, extra: new { batch_size = 2, n_iter = 2 }));
        Assert.Equal(4, r.GetProperty("images").GetArrayLength());
        Assert.Equal([100L, 101, 102, 103], Info(r).GetProperty("all_seeds").EnumerateArray().Select(s => s.GetInt64()));
        Assert.Contains("Seed: 103", Infotext(Image(r, 3)));
    }

    [SkippableTheory]
    [InlineData("DPM++ 2M Karras", null, "DPM++ 2M")]
    [InlineData("dpm++ 2m", "karras", "DPM++ 2M")]
    [InlineData("dpmpp_2m", "Automatic", "DPM++ 2M")]
    [InlineData("euler a", null, "Euler a")]
    [InlineData("k_euler", "automatic", "Euler")]
    public async Task SamplerNamesInEveryFormClientsUse(string sampler, string? scheduler, string a1111)
    {
        var r = await server.PostJson("/sdapi/v1/txt2img", Txt2Img(steps: 1, extra: new { sampler_name = sampler, scheduler }));
        Assert.Equal(a1111, Info(r).GetProperty("sampler_name").GetString());
    }

    [SkippableFact]
    public async Task AnUnknownSamplerIsA1111s404()
    {
        using var response = await server.Http.PostAsJsonAsync("/sdapi/v1/txt2img", Txt2Img(extra: new { sampler_name = "Warp Drive" }));
        Assert.Equal(HttpStatusCode.NotFound, response.StatusCode);
        var body = await response.Content.ReadFromJsonAsync<JsonElement>();
        Assert.Equal("HTTPException", body.GetProperty("error").GetString());
        Assert.Equal("Sampler not found", body.GetProperty("detail").GetString());
        Assert.True(body.TryGetProperty("body", out _) && body.TryGetProperty("errors", out _));
    }

    public static TheoryData<string, string, HttpStatusCode> Mistakes() => new()
    {
        { "/sdapi/v1/txt2img", "{\"prompt\":\"x\",\"width\":63,\"height\":64,\"steps\":1}", HttpStatusCode.BadRequest },
        { "/sdapi/v1/txt2img", "{\"prompt\":\"x\",\"width\":8192,\"height\":64,\"steps\":1}", HttpStatusCode.BadRequest },
        { "/sdapi/v1/txt2img", "{\"prompt\":\"x <lora:no-such-lora:1>\",\"width\":64,\"height\":64,\"steps\":1}", HttpStatusCode.NotFound },
        { "/sdapi/v1/txt2img", "{\"prompt\":\"x\",\"width\":64,\"height\":64,\"steps\":1,\"override_settings\":{\"sd_model_checkpoint\":\"nope.safetensors\"}}", HttpStatusCode.NotFound },
        { "/sdapi/v1/txt2img", "{\"prompt\":\"x\",\"width\":64,\"steps\":\"many\"}", HttpStatusCode.BadRequest },
        { "/sdapi/v1/txt2img", "{\"prompt\": \"x\", ", HttpStatusCode.BadRequest },
        { "/sdapi/v1/img2img", "{\"prompt\":\"x\",\"init_images\":[\"not base64!\"],\"width\":64,\"height\":64,\"steps\":1}", HttpStatusCode.BadRequest },
        { "/sdapi/v1/img2img", "{\"prompt\":\"x\",\"init_images\":[\"aGVsbG8gd29ybGQ=\"],\"width\":64,\"height\":64,\"steps\":1}", HttpStatusCode.BadRequest },
        { "/sdapi/v1/img2img", "{\"prompt\":\"x\",\"width\":64,\"height\":64,\"steps\":1}", HttpStatusCode.BadRequest },
        { "/sdapi/v1/options", "{\"sd_model_checkpoint\":\"../../etc/passwd\"}", HttpStatusCode.BadRequest },
        { "/sdapi/v1/png-info", "{\"image\":\"%%%\"}", HttpStatusCode.BadRequest },
    };

    [SkippableTheory, MemberData(nameof(Mistakes))]
    public async Task MistakesAre4xxWithA1111sErrorShapeAndTheServerKeepsServing(string route, string json, HttpStatusCode expected)
    {
        Fixture.Require();
        using var response = await server.Http.PostAsync(route, new StringContent(json, Encoding.UTF8, "application/json"));
        string text = await response.Content.ReadAsStringAsync();
        output.WriteLine(text);
        Assert.Equal(expected, response.StatusCode);
        var body = JsonDocument.Parse(text).RootElement;
        Assert.True(body.TryGetProperty("error", out _) && body.TryGetProperty("detail", out _), text);
        Assert.DoesNotContain("   at ", text);
        // still serving
        var ok = await server.GetJson("/sdapi/v1/sd-models");
        Assert.True(ok.GetArrayLength() >= 1);
    }

    [SkippableFact]
    public async Task OptionsChooseTheCheckpointByTitleNameOrHash()
    {
        var models = await server.GetJson("/sdapi/v1/sd-models");
        var titles = models.EnumerateArray().Select(m => m.GetProperty("title").GetString()!).ToList();
        Assert.Contains("tiny-sd15.safetensors", titles);
        foreach (var m in models.EnumerateArray())
            foreach (var key in new[] { "title", "model_name", "hash", "sha256", "filename", "config" })
                Assert.True(m.TryGetProperty(key, out _), key);
        try
        {
            await server.PostJson("/sdapi/v1/options", new { sd_model_checkpoint = "tiny-sd15-inpaint.safetensors" });
            var options = await server.GetJson("/sdapi/v1/options");
            Assert.StartsWith("tiny-sd15-inpaint.safetensors", options.GetProperty("sd_model_checkpoint").GetString());
            var r = await server.PostJson("/sdapi/v1/txt2img", Txt2Img(steps: 1));
            Assert.Equal("tiny-sd15-inpaint", Info(r).GetProperty("sd_model_name").GetString());
            // by the hash A1111 shows (now known: the model was used)
            string hash = Info(r).GetProperty("sd_model_hash").GetString()!;
            await server.PostJson("/sdapi/v1/options", new { sd_model_checkpoint = "tiny-sd15" });
            Assert.StartsWith("tiny-sd15.safetensors", (await server.GetJson("/sdapi/v1/options")).GetProperty("sd_model_checkpoint").GetString());
            await server.PostJson("/sdapi/v1/options", new { sd_model_checkpoint = hash });
            Assert.StartsWith("tiny-sd15-inpaint.safetensors", (await server.GetJson("/sdapi/v1/options")).GetProperty("sd_model_checkpoint").GetString());
        }
        finally
        {
            await server.PostJson("/sdapi/v1/options", new { sd_model_checkpoint = "tiny-sd15" });
        }
    }

    [SkippableFact]
    public async Task ListingsHaveTheShapesClientsRead()
    {
        var loras = await server.GetJson("/sdapi/v1/loras");
        var attn = loras.EnumerateArray().Single(l => l.GetProperty("name").GetString() == "sd15-attn");
        Assert.True(attn.GetProperty("metadata").TryGetProperty("ss_network_dim", out _));
        Assert.False(string.IsNullOrEmpty(attn.GetProperty("alias").GetString()));
        Assert.EndsWith("sd15-attn.safetensors", attn.GetProperty("path").GetString());
        var samplers = await server.GetJson("/sdapi/v1/samplers");
        var dpm = samplers.EnumerateArray().Single(s => s.GetProperty("name").GetString() == "DPM++ 2M");
        Assert.Equal("karras", dpm.GetProperty("options").GetProperty("scheduler").GetString());
        Assert.Contains("k_dpmpp_2m", dpm.GetProperty("aliases").EnumerateArray().Select(a => a.GetString()));
        var schedulers = (await server.GetJson("/sdapi/v1/schedulers")).EnumerateArray().Select(s => s.GetProperty("name").GetString()).ToList();
        Assert.Contains("automatic", schedulers);
        Assert.Contains("karras", schedulers);
        Assert.Contains("sgm_uniform", schedulers);
        Assert.Equal(JsonValueKind.Array, (await server.GetJson("/sdapi/v1/upscalers")).ValueKind);
        Assert.Equal(JsonValueKind.Array, (await server.GetJson("/sdapi/v1/sd-vae")).ValueKind);
        var embeddings = await server.GetJson("/sdapi/v1/embeddings");
        Assert.True(embeddings.TryGetProperty("loaded", out _) && embeddings.TryGetProperty("skipped", out _));
        var scripts = await server.GetJson("/sdapi/v1/scripts");
        Assert.Equal(0, scripts.GetProperty("txt2img").GetArrayLength());
        Assert.True((await server.GetJson("/sdapi/v1/cmd-flags")).TryGetProperty("api", out _));
        Assert.True((await server.GetJson("/sdapi/v1/memory")).GetProperty("ram").GetProperty("total").GetInt64() > 0);
        var progress = await server.GetJson("/sdapi/v1/progress");
        Assert.Equal(0, progress.GetProperty("state").GetProperty("job_count").GetInt32());
        Assert.True(progress.TryGetProperty("progress", out _) && progress.TryGetProperty("eta_relative", out _));
        foreach (var route in new[] { "/sdapi/v1/interrupt", "/sdapi/v1/skip", "/sdapi/v1/refresh-loras", "/sdapi/v1/refresh-checkpoints" })
        {
            using var response = await server.Http.PostAsync(route, null);
            Assert.True(response.IsSuccessStatusCode, route);
            JsonDocument.Parse(await response.Content.ReadAsStringAsync()); // JSON, not an empty body
        }
    }

    [SkippableFact]
    public async Task PngInfoReadsTheParametersBack()
    {
        var r = await server.PostJson("/sdapi/v1/txt2img", Txt2Img(seed: 99, steps: 1));
        var info = await server.PostJson("/sdapi/v1/png-info", new { image = "data:image/png;base64," + r.GetProperty("images")[0].GetString() });
        Assert.Contains("Seed: 99", info.GetProperty("info").GetString());
        Assert.Equal("99", info.GetProperty("parameters").GetProperty("Seed").GetString());
        Assert.Equal("a red fox in snow", info.GetProperty("parameters").GetProperty("Prompt").GetString());
    }

    static string Png64(Tensor image) => Convert.ToBase64String(ImageFiles.EncodePng(image));

    [SkippableFact]
    public async Task InpaintingOnlyTheMaskedAreaLeavesFarPixelsUnchanged()
    {
        var f = Fixture.Require();
        using var init = ImageFiles.LoadRgb(Path.Combine(f.Root, "images", "init.png"), 96, 96);
        using var mask = zeros(1, 3, 96, 96);
        mask[.., .., 30..50, 30..50] = 1;
        var body = new Dictionary<string, object?>
        {
            ["prompt"] = "a red ball", ["init_images"] = new[] { "data:image/png;base64," + Png64(init) }, ["mask"] = Png64(mask),
            ["width"] = 64, ["height"] = 64, ["steps"] = 4, ["denoising_strength"] = 0.75, ["mask_blur"] = 2, ["inpainting_fill"] = 1,
            ["inpaint_full_res"] = true, ["inpaint_full_res_padding"] = 8, ["seed"] = 3, ["sampler_name"] = "Euler",
        };
        var r = await server.PostJson("/sdapi/v1/img2img", body);
        Assert.Equal(JsonValueKind.Null, r.GetProperty("parameters").GetProperty("init_images").ValueKind);
        using var result = ImageFiles.DecodeRgb(Image(r), "result");
        Assert.Equal(new long[] { 1, 3, 96, 96 }, result.shape);
        using var original = ImageFiles.DecodeRgb(ImageFiles.EncodePng(init), "init");
        // far from the mask (its blur and the 32 px blend ramp) nothing moved; inside, something did
        using var farDiff = (result[.., .., 90.., ..] - original[.., .., 90.., ..]).abs().max();
        Assert.Equal(0, farDiff.item<float>());
        using var nearDiff = (result[.., .., 30..50, 30..50] - original[.., .., 30..50, 30..50]).abs().max();
        Assert.True(nearDiff.item<float>() > 0.02);
        // A1111 runs int(steps * denoise) + 1 steps of a `steps` schedule
        var job = server.Engine.Queue.Finished.Last(j => j.Kind == "generate");
        Assert.Equal(4, job.LastStep!.Steps);
        Assert.Contains("Denoising strength: 0.75", Infotext(Image(r)));
    }

    [SkippableFact]
    public async Task Img2ImgRunsA1111sNumberOfSteps()
    {
        var f = Fixture.Require();
        using var init = ImageFiles.LoadRgb(Path.Combine(f.Root, "images", "init.png"));
        var body = new Dictionary<string, object?>
        {
            ["prompt"] = "x", ["init_images"] = new[] { Png64(init) }, ["width"] = 64, ["height"] = 64, ["steps"] = 10,
            ["denoising_strength"] = 0.45, ["seed"] = 5, ["sampler_name"] = "Euler", ["resize_mode"] = 1,
        };
        await server.PostJson("/sdapi/v1/img2img", body);
        var job = server.Engine.Queue.Finished.Last(j => j.Kind == "generate");
        Assert.Equal(5, job.LastStep!.Steps); // t_enc = int(0.45 * 10) = 4, then 4 + 1 steps
    }

    [SkippableFact]
    public async Task SaveImagesWritesA1111sFolderLayout()
    {
        var r = await server.PostJson("/sdapi/v1/txt2img", Txt2Img(seed: 555, steps: 1, extra: new { save_images = true }));
        var day = Path.Combine(server.OutputsDir, "txt2img-images", DateTime.Now.ToString("yyyy-MM-dd"));
        Assert.Contains(Directory.GetFiles(day), p => Path.GetFileName(p).EndsWith("-555.png") && Path.GetFileName(p).Length == "00000-555.png".Length);
    }

    [SkippableFact]
    public async Task ProgressShowsTheRunningJobAndInterruptReturnsWhatIsDone()
    {
        var request = server.PostJson("/sdapi/v1/txt2img", Txt2Img(seed: 8, steps: 40, extra: new { width = 128, height = 128 }));
        JsonElement progress = default;
        for (int i = 0; i < 600 && !request.IsCompleted; i++)
        {
            progress = await server.GetJson("/sdapi/v1/progress");
            if (progress.GetProperty("state").GetProperty("sampling_step").GetInt32() >= 2) break;
            await Task.Delay(50);
        }
        Assert.False(request.IsCompleted, "the job finished before it could be watched");
        Assert.Equal(1, progress.GetProperty("state").GetProperty("job_count").GetInt32());
        Assert.Equal(40, progress.GetProperty("state").GetProperty("sampling_steps").GetInt32());
        Assert.InRange(progress.GetProperty("progress").GetDouble(), 0.01, 0.99);
        Assert.Equal(JsonValueKind.String, progress.GetProperty("current_image").ValueKind);
        await server.PostJson("/sdapi/v1/interrupt", new { });
        var r = await request;
        Assert.Equal(1, r.GetProperty("images").GetArrayLength());
        var job = server.Engine.Queue.Finished.Last(j => j.Kind == "generate");
        Assert.True(job.LastStep!.Step < 40, $"ran {job.LastStep.Step} of 40 steps");
    }
}
