using System.Net.Http.Headers;
using System.Text.Json.Nodes;
using LoraCraft.Pipelines;
using TorchSharp;
using Xunit;
using Xunit.Abstractions;

namespace LoraCraft.Tests.Server;

/// <summary>
/// ComfyUI's LoRA hook nodes and conditioning properties through the ComfyUI API (a real server,
/// real websocket): a hook on the CLIP is the LoRA loader's image, keyframes move it over the run,
/// a scheduled CLIP is the same as timestep-ranged encodings, masks split the prompt.
/// </summary>
[Collection(ComfyServerCollection.Name)]
public class ComfyHookTests(ComfyServer server, ITestOutputHelper output)
{
    const ulong Seed = 4242;

    async Task<byte[]> Image(JsonObject prompt)
    {
        await using var ws = await ComfySocket.Connect(server);
        var (status, body) = await server.PostJson("/prompt", ComfyPrompts.Body(prompt, ws.ClientId));
        Assert.True(status == 200, body?.ToJsonString());
        string id = (string)body!["prompt_id"]!;
        await ws.WaitDone(id);
        var events = ws.Of(id);
        Assert.True(events.Any(e => e.Type == "execution_success"), string.Join("\n", events.Where(e => e.Data is not null).Select(e => e.Type + " " + e.Data!.ToJsonString())));
        var image = events.Last(e => e.Type == "executed" && (string)e.Data!["node"]! == "9").Data!["output"]!["images"]![0]!;
        return await server.Http.GetByteArrayAsync($"{server.BaseUrl}/view?filename={Uri.EscapeDataString((string)image["filename"]!)}&subfolder={image["subfolder"]}&type={image["type"]}");
    }

    static JsonObject Base(int steps = 4) => ComfyPrompts.Txt2Img(seed: Seed, steps: steps, sampler: "euler", scheduler: "normal", cfg: 5,
                                                                  positive: "a small red boat", negative: "blurry", prefix: "hooks");

    static JsonObject Node(string type, JsonObject inputs) => new() { ["class_type"] = type, ["inputs"] = inputs };
    static JsonArray Link(string node, int slot = 0) => new(node, slot);

    /// <summary>The graph with the LoRA loader between the checkpoint and its users.</summary>
    static JsonObject WithLoader(double model, double clip, int steps = 4)
    {
        var p = Base(steps);
        p["10"] = Node("LoraLoader", new() { ["model"] = Link("4"), ["clip"] = Link("4", 1), ["lora_name"] = ComfyServer.LoraName, ["strength_model"] = model, ["strength_clip"] = clip });
        p["3"]!["inputs"]!["model"] = Link("10");
        p["6"]!["inputs"]!["clip"] = Link("10", 1);
        p["7"]!["inputs"]!["clip"] = Link("10", 1);
        return p;
    }

    /// <summary>The graph with a hook LoRA set on the CLIP both prompts are encoded with; <paramref name="keyframes"/> (strength, start) when given.</summary>
    static JsonObject WithClipHooks(double model, double clip, (double Strength, double Start)[]? keyframes = null, bool scheduleClip = false, int steps = 4)
    {
        var p = Base(steps);
        p["20"] = Node("CreateHookLora", new() { ["lora_name"] = ComfyServer.LoraName, ["strength_model"] = model, ["strength_clip"] = clip });
        string hooks = "20";
        if (keyframes is not null)
        {
            string? prev = null;
            for (int i = 0; i < keyframes.Length; i++)
            {
                var inputs = new JsonObject { ["strength_mult"] = keyframes[i].Strength, ["start_percent"] = keyframes[i].Start };
                if (prev is not null) inputs["prev_hook_kf"] = Link(prev);
                p[prev = $"3{i}"] = Node("CreateHookKeyframe", inputs);
            }
            p["21"] = Node("SetHookKeyframes", new() { ["hooks"] = Link("20"), ["hook_kf"] = Link(prev!) });
            hooks = "21";
        }
        p["22"] = Node("SetClipHooks", new() { ["clip"] = Link("4", 1), ["apply_to_conds"] = true, ["schedule_clip"] = scheduleClip, ["hooks"] = Link(hooks) });
        p["6"]!["inputs"]!["clip"] = Link("22");
        p["7"]!["inputs"]!["clip"] = Link("22");
        return p;
    }

    static float[] Pixels(byte[] png)
    {
        using var t = ImageFiles.DecodeRgb(png, "image");
        return t.data<float>().ToArray();
    }

    static double MaxDiff(float[] a, float[] b) => a.Zip(b, (x, y) => Math.Abs(x - y)).Max() * 255;

    [SkippableFact]
    public async Task A_hook_on_the_clip_gives_the_lora_loaders_image()
    {
        server.Require();
        var loader = Pixels(await Image(WithLoader(0.8, 0.6)));
        var hooked = Pixels(await Image(WithClipHooks(0.8, 0.6)));
        var plain = Pixels(await Image(Base()));
        double diff = MaxDiff(loader, hooked), effect = MaxDiff(loader, plain);
        output.WriteLine($"hook vs loader: {diff} levels at most; the LoRA itself moves pixels by up to {effect} levels");
        // the hook runs beside the layers, the loader merges: the same within float rounding
        Assert.True(diff <= 1, $"{diff}");
        Assert.True(effect > 5, $"{effect}");
    }

    [SkippableFact]
    public async Task Keyframes_move_the_hooks_strength_over_the_run()
    {
        server.Require();
        var plain = Pixels(await Image(Base()));
        var full = Pixels(await Image(WithClipHooks(1, 0)));
        // strength 0 from the start: exactly the model without the LoRA
        Assert.Equal(plain, Pixels(await Image(WithClipHooks(1, 0, [(0, 0)]))));
        // on for the first half only (the early steps set the composition): far from none, near the hook throughout
        var early = Pixels(await Image(WithClipHooks(1, 0, [(1, 0), (0, 0.5)])));
        // off for the first call only (from 10 % on): neither
        var late = Pixels(await Image(WithClipHooks(1, 0, [(0, 0), (1, 0.1)])));
        output.WriteLine($"early hook vs none: {MaxDiff(early, plain)} levels, vs the hook throughout: {MaxDiff(early, full)}; " +
                         $"late hook vs none: {MaxDiff(late, plain)}, vs throughout: {MaxDiff(late, full)}");
        Assert.True(MaxDiff(early, plain) > 5);
        Assert.NotEqual(early, full);
        Assert.True(MaxDiff(late, plain) > 2);
        Assert.True(MaxDiff(late, full) > 5);
        // the hook only on the positive (SetModelHooksOnCond) is yet another image
        var p = Base();
        p["20"] = Node("CreateHookLoraModelOnly", new() { ["lora_name"] = ComfyServer.LoraName, ["strength_model"] = 1.0 });
        p["23"] = Node("SetModelHooksOnCond", new() { ["conditioning"] = Link("6"), ["hooks"] = Link("20") });
        p["3"]!["inputs"]!["positive"] = Link("23");
        var positiveOnly = Pixels(await Image(p));
        Assert.True(MaxDiff(positiveOnly, full) > 1 && MaxDiff(positiveOnly, plain) > 1);
    }

    [SkippableFact]
    public async Task A_scheduled_clip_is_the_same_as_encodings_over_timestep_ranges()
    {
        server.Require();
        var scheduled = Pixels(await Image(WithClipHooks(0, 1, [(0, 0), (1, 0.5)], scheduleClip: true)));
        // by hand: the text encoded without and with the LoRA, each over its half of the run
        var p = Base();
        p["10"] = Node("LoraLoader", new() { ["model"] = Link("4"), ["clip"] = Link("4", 1), ["lora_name"] = ComfyServer.LoraName, ["strength_model"] = 0.0, ["strength_clip"] = 1.0 });
        foreach (var (encode, text) in new[] { ("6", "a small red boat"), ("7", "blurry") })
        {
            p["4" + encode] = Node("CLIPTextEncode", new() { ["clip"] = Link("10", 1), ["text"] = text });
            p["5" + encode] = Node("ConditioningSetTimestepRange", new() { ["conditioning"] = Link(encode), ["start"] = 0.0, ["end"] = 0.5 });
            p["6" + encode] = Node("ConditioningSetTimestepRange", new() { ["conditioning"] = Link("4" + encode), ["start"] = 0.5, ["end"] = 1.0 });
            p["7" + encode] = Node("ConditioningCombine", new() { ["conditioning_1"] = Link("5" + encode), ["conditioning_2"] = Link("6" + encode) });
        }
        p["3"]!["inputs"]!["positive"] = Link("76");
        p["3"]!["inputs"]!["negative"] = Link("77");
        var byHand = Pixels(await Image(p));
        Assert.Equal(byHand, scheduled);
        var allLora = Pixels(await Image(WithLoader(0, 1)));
        Assert.True(MaxDiff(scheduled, allLora) > 1 && MaxDiff(scheduled, Pixels(await Image(Base()))) > 1);
    }

    [SkippableFact]
    public async Task Masked_and_default_conditionings_and_a_combined_negative_run()
    {
        server.Require();
        // a mask from an uploaded PNG's alpha (LoadImage's MASK: 1 where transparent)
        var png = ImageWithHole();
        using var form = new MultipartFormDataContent();
        var file = new ByteArrayContent(png);
        file.Headers.ContentType = new MediaTypeHeaderValue("image/png");
        form.Add(file, "image", "hole.png");
        using (var up = await server.Http.PostAsync(server.BaseUrl + "/upload/image", form)) Assert.True(up.IsSuccessStatusCode);
        var p = Base(steps: 3);
        p["40"] = Node("LoadImage", new() { ["image"] = "hole.png" });
        p["41"] = Node("CLIPTextEncode", new() { ["clip"] = Link("4", 1), ["text"] = "a green tree" });
        p["42"] = Node("ConditioningSetMask", new() { ["conditioning"] = Link("41"), ["mask"] = Link("40", 1), ["strength"] = 1.0, ["set_cond_area"] = "default" });
        p["43"] = Node("PairConditioningSetDefaultCombine", new()
        {
            ["positive"] = Link("42"), ["negative"] = Link("7"), ["positive_DEFAULT"] = Link("6"), ["negative_DEFAULT"] = Link("7"),
        });
        p["3"]!["inputs"]!["positive"] = Link("43");
        p["3"]!["inputs"]!["negative"] = Link("43", 1);
        var regional = Pixels(await Image(p));
        var plain = Pixels(await Image(Base(steps: 3)));
        Assert.True(MaxDiff(regional, plain) > 1);
        // a mask over nothing leaves the default everywhere: the plain image, with the negative twice (averaged: the same)
        p["40"] = Node("LoadImage", new() { ["image"] = "solid.png" });
        using var solid = torch.full(1, 3, 64, 64, 0.5f);
        using var form2 = new MultipartFormDataContent();
        var file2 = new ByteArrayContent(ImageFiles.EncodePng(solid));
        file2.Headers.ContentType = new MediaTypeHeaderValue("image/png");
        form2.Add(file2, "image", "solid.png");
        using (var up = await server.Http.PostAsync(server.BaseUrl + "/upload/image", form2)) Assert.True(up.IsSuccessStatusCode);
        var empty = Pixels(await Image(p));
        output.WriteLine($"regional vs plain {MaxDiff(regional, plain)} levels; empty mask vs plain {MaxDiff(empty, plain)}");
        Assert.True(MaxDiff(empty, plain) <= 1);
    }

    /// <summary>A 64x64 PNG, transparent in its left half.</summary>
    static byte[] ImageWithHole()
    {
        using var image = torch.full(1, 3, 64, 64, 0.5f);
        var png = ImageFiles.EncodePng(image);
        using var bitmap = SkiaSharp.SKBitmap.Decode(png).Copy(SkiaSharp.SKColorType.Rgba8888);
        using var unpremul = new SkiaSharp.SKBitmap(new SkiaSharp.SKImageInfo(64, 64, SkiaSharp.SKColorType.Rgba8888, SkiaSharp.SKAlphaType.Unpremul));
        bitmap.GetPixelSpan().CopyTo(unpremul.GetPixelSpan());
        var dst = unpremul.GetPixelSpan();
        for (int y = 0; y < 64; y++)
            for (int x = 0; x < 32; x++) dst[4 * (y * 64 + x) + 3] = 0;
        using var data = unpremul.Encode(SkiaSharp.SKEncodedImageFormat.Png, 100);
        return data.ToArray();
    }

    [SkippableFact]
    public async Task Object_info_describes_the_hook_nodes_as_comfyui_does()
    {
        server.Require();
        var info = (await server.GetJson("/api/object_info"))!.AsObject();
        foreach (var name in new[] { "CreateHookLora", "CreateHookLoraModelOnly", "SetHookKeyframes", "CreateHookKeyframe", "CreateHookKeyframesInterpolated",
                                     "CombineHooks2", "CombineHooks4", "CombineHooks8", "SetClipHooks", "ConditioningSetProperties", "ConditioningSetPropertiesAndCombine",
                                     "PairConditioningSetProperties", "PairConditioningSetPropertiesAndCombine", "ConditioningSetDefaultCombine",
                                     "PairConditioningSetDefaultCombine", "PairConditioningCombine", "SetModelHooksOnCond", "ConditioningTimestepsRange",
                                     "ConditioningSetTimestepRange", "ConditioningSetMask", "ConditioningSetAreaStrength", "ConditioningZeroOut" })
            Assert.True(info.ContainsKey(name), name);
        Assert.Equal([ComfyServer.LoraName], info["CreateHookLora"]!["input"]!["required"]!["lora_name"]![0]!.AsArray().Select(s => (string)s!).ToList());
        Assert.Equal("HOOKS", (string)info["CreateHookLora"]!["input"]!["optional"]!["prev_hooks"]![0]!);
        Assert.Equal(["linear", "ease_in", "ease_out", "ease_in_out"],
                     info["CreateHookKeyframesInterpolated"]!["input"]!["required"]!["interpolation"]![0]!.AsArray().Select(s => (string)s!).ToList());
        Assert.Equal(["HOOK_KF"], info["CreateHookKeyframe"]!["output_name"]!.AsArray().Select(s => (string)s!).ToList());
        Assert.Equal(["TIMESTEPS_RANGE", "BEFORE_RANGE", "AFTER_RANGE"], info["ConditioningTimestepsRange"]!["output_name"]!.AsArray().Select(s => (string)s!).ToList());
        Assert.Equal(["clip", "apply_to_conds", "schedule_clip"], info["SetClipHooks"]!["input_order"]!["required"]!.AsArray().Select(s => (string)s!).ToList());
        Assert.Equal("advanced/hooks/create", (string)info["CreateHookLora"]!["category"]!);
        // a hook wired to the wrong input type is refused before running, naming the node
        var p = Base();
        p["20"] = Node("CreateHookKeyframe", new() { ["strength_mult"] = 1.0, ["start_percent"] = 0.0 });
        p["22"] = Node("SetClipHooks", new() { ["clip"] = Link("4", 1), ["apply_to_conds"] = true, ["schedule_clip"] = false, ["hooks"] = Link("20") });
        p["6"]!["inputs"]!["clip"] = Link("22");
        var (status, body) = await server.PostJson("/prompt", ComfyPrompts.Body(p));
        Assert.Equal(400, status);
        Assert.Contains("22", body!["node_errors"]!.AsObject().Select(kv => kv.Key));
    }
}
