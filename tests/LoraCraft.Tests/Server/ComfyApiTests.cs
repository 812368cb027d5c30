using System.Net;
using System.Text;
using System.Text.Json.Nodes;
using Xunit;

namespace LoraCraft.Tests.Server;

/// <summary>The ComfyUI HTTP routes: validation errors as ComfyUI shapes them, /view traversal, node info, settings, user data, jobs.</summary>
[Collection(ComfyServerCollection.Name)]
public class ComfyApiTests(ComfyServer server)
{
    async Task<JsonNode> Rejected(JsonNode body)
    {
        var (status, response) = await server.PostJson("/prompt", body);
        Assert.Equal(400, status);
        return response!;
    }

    static JsonObject ErrorOf(JsonNode response, string node) => response["node_errors"]![node]!["errors"]![0]!.AsObject();

    [SkippableFact]
    public async Task Invalid_prompts_get_comfyuis_400_body()
    {
        server.Require();
        var missing = ComfyPrompts.Txt2Img(1);
        missing["3"]!["inputs"]!.AsObject().Remove("steps");
        var r = await Rejected(ComfyPrompts.Body(missing));
        Assert.Equal("prompt_outputs_failed_validation", (string)r["error"]!["type"]!);
        var e = ErrorOf(r, "3");
        Assert.Equal("required_input_missing", (string)e["type"]!);
        Assert.Equal("steps", (string)e["extra_info"]!["input_name"]!);
        Assert.Equal("KSampler", (string)r["node_errors"]!["3"]!["class_type"]!);
        Assert.Equal("9", (string)r["node_errors"]!["3"]!["dependent_outputs"]![0]!);

        var wrongCkpt = ComfyPrompts.Txt2Img(1);
        wrongCkpt["4"]!["inputs"]!["ckpt_name"] = "v1-5-pruned-emaonly.safetensors";
        e = ErrorOf(await Rejected(ComfyPrompts.Body(wrongCkpt)), "4");
        Assert.Equal("value_not_in_list", (string)e["type"]!);
        Assert.Equal("ckpt_name", (string)e["extra_info"]!["input_name"]!);
        Assert.Contains(ComfyServer.Checkpoint, (string)e["details"]!);

        var tooMany = ComfyPrompts.Txt2Img(1, steps: 10001);
        e = ErrorOf(await Rejected(ComfyPrompts.Body(tooMany)), "3");
        Assert.Equal("value_bigger_than_max", (string)e["type"]!);
        Assert.Equal("Value 10001 bigger than max of 10000", (string)e["message"]!);

        var badSampler = ComfyPrompts.Txt2Img(1, sampler: "no_such_sampler");
        Assert.Equal("sampler_name", (string)ErrorOf(await Rejected(ComfyPrompts.Body(badSampler)), "3")["extra_info"]!["input_name"]!);

        var badType = ComfyPrompts.Txt2Img(1);
        badType["3"]!["inputs"]!["model"] = new JsonArray("5", 0); // a LATENT where a MODEL goes
        e = ErrorOf(await Rejected(ComfyPrompts.Body(badType)), "3");
        Assert.Equal("return_type_mismatch", (string)e["type"]!);

        var notInt = ComfyPrompts.Txt2Img(1);
        notInt["3"]!["inputs"]!["steps"] = "many";
        Assert.Equal("invalid_input_type", (string)ErrorOf(await Rejected(ComfyPrompts.Body(notInt)), "3")["type"]!);

        var unknown = ComfyPrompts.Txt2Img(1);
        unknown["10"] = new JsonObject { ["class_type"] = "NoSuchNode", ["inputs"] = new JsonObject() };
        r = await Rejected(ComfyPrompts.Body(unknown));
        Assert.Equal("missing_node_type", (string)r["error"]!["type"]!);
        Assert.Equal("NoSuchNode", (string)r["error"]!["extra_info"]!["class_type"]!);

        var noOutput = ComfyPrompts.Txt2Img(1);
        noOutput.Remove("9");
        Assert.Equal("prompt_no_outputs", (string)(await Rejected(ComfyPrompts.Body(noOutput)))["error"]!["type"]!);
        Assert.Equal("no_prompt", (string)(await Rejected(new JsonObject()))["error"]!["type"]!);

        // a UI-format workflow (what the frontend saves) posted by mistake
        var ui = new JsonObject { ["nodes"] = new JsonArray(), ["links"] = new JsonArray(), ["version"] = 0.4 };
        foreach (var body in new JsonNode[] { ComfyPrompts.Body(ui), ui })
        {
            var error = (await Rejected(body))["error"]!;
            Assert.Contains("UI-format", (string)error["message"]!);
            Assert.Contains("API", (string)error["details"]!);
        }
    }

    [SkippableFact]
    public async Task View_refuses_paths_that_leave_their_folder()
    {
        server.Require();
        Directory.CreateDirectory(server.OutputsDir);
        File.WriteAllText(Path.Combine(server.Root, "secret.txt"), "secret");
        async Task<HttpStatusCode> View(string query) => (await server.Http.GetAsync($"{server.BaseUrl}/view?{query}")).StatusCode;
        Assert.Equal(HttpStatusCode.BadRequest, await View("filename=../secret.txt&type=output"));
        Assert.Equal(HttpStatusCode.BadRequest, await View("filename=%2Fetc%2Fpasswd&type=output"));
        Assert.Equal(HttpStatusCode.BadRequest, await View("filename=..%2F..%2Fsecret.txt&type=input"));
        Assert.Equal(HttpStatusCode.Forbidden, await View("filename=secret.txt&type=output&subfolder=.."));
        Assert.Equal(HttpStatusCode.Forbidden, await View("filename=secret.txt&type=output&subfolder=%2Ftmp"));
        Assert.Equal(HttpStatusCode.BadRequest, await View("filename=x.png&type=system"));
        Assert.Equal(HttpStatusCode.NotFound, await View("filename=nothing.png&type=output"));
        Assert.Equal(HttpStatusCode.NotFound, (await server.Http.GetAsync($"{server.BaseUrl}/api/view?filename=nothing.png")).StatusCode);
    }

    [SkippableFact]
    public async Task Object_info_describes_the_nodes_with_comfyuis_inputs()
    {
        server.Require();
        var info = (await server.GetJson("/api/object_info"))!.AsObject();
        foreach (var name in new[] { "CheckpointLoaderSimple", "LoraLoader", "LoraLoaderModelOnly", "CLIPTextEncode", "CLIPSetLastLayer", "ConditioningCombine",
                                     "KSampler", "KSamplerAdvanced", "EmptyLatentImage", "LatentUpscale", "VAEDecode", "VAEEncode", "VAEEncodeForInpaint",
                                     "SetLatentNoiseMask", "InpaintModelConditioning", "LoadImage", "LoadImageMask", "SaveImage", "PreviewImage", "ImageScale",
                                     "InpaintCropImproved", "InpaintStitchImproved", "InpaintCrop", "InpaintStitch" })
            Assert.True(info.ContainsKey(name), name);
        var ks = info["KSampler"]!;
        var seed = ks["input"]!["required"]!["seed"]!;
        Assert.Equal("INT", (string)seed[0]!);
        Assert.Equal(ulong.MaxValue, (ulong)seed[1]!["max"]!);
        Assert.Equal(20, (int)ks["input"]!["required"]!["steps"]![1]!["default"]!);
        Assert.Equal(8.0, (double)ks["input"]!["required"]!["cfg"]![1]!["default"]!);
        var samplers = ks["input"]!["required"]!["sampler_name"]![0]!.AsArray().Select(s => (string)s!).ToList();
        Assert.Equal(LoraCraft.Sampling.SamplerRegistry.SamplerIds, samplers);
        Assert.Equal(["model", "seed", "steps", "cfg", "sampler_name", "scheduler", "positive", "negative", "latent_image", "denoise"],
                     ks["input_order"]!["required"]!.AsArray().Select(s => (string)s!).ToList());
        Assert.Equal(["LATENT"], ks["output"]!.AsArray().Select(s => (string)s!).ToList());
        Assert.Equal([ComfyServer.Checkpoint], info["CheckpointLoaderSimple"]!["input"]!["required"]!["ckpt_name"]![0]!.AsArray().Select(s => (string)s!).ToList());
        Assert.Equal([ComfyServer.LoraName], info["LoraLoader"]!["input"]!["required"]!["lora_name"]![0]!.AsArray().Select(s => (string)s!).ToList());
        Assert.True((bool)info["SaveImage"]!["output_node"]!);
        Assert.Equal("Load Checkpoint", (string)info["CheckpointLoaderSimple"]!["display_name"]!);
        Assert.Equal(["stitcher", "cropped_image", "cropped_mask"], info["InpaintCropImproved"]!["output_name"]!.AsArray().Select(s => (string)s!).ToList());
        Assert.True((bool)info["LoadImage"]!["input"]!["required"]!["image"]![1]!["image_upload"]!);
        var one = (await server.GetJson("/object_info/KSampler"))!.AsObject();
        Assert.Equal(["KSampler"], one.Select(kv => kv.Key).ToList());
        Assert.Empty((await server.GetJson("/object_info/Nope"))!.AsObject());
    }

    [SkippableFact]
    public async Task Boot_routes_settings_and_user_data_answer_as_comfyui_does()
    {
        server.Require();
        Assert.Equal("server", (string)(await server.GetJson("/comfy/api/users"))!["storage"]!);
        Assert.Empty((await server.GetJson("/api/extensions"))!.AsArray());
        Assert.Empty((await server.GetJson("/api/i18n"))!.AsObject());
        var stats = (await server.GetJson("/api/system_stats"))!;
        foreach (var key in new[] { "os", "python_version", "embedded_python", "comfyui_version", "pytorch_version", "argv", "ram_total", "ram_free" })
            Assert.NotNull(stats["system"]![key]);
        Assert.Equal(0, (int)(await server.GetJson("/prompt"))!["exec_info"]!["queue_remaining"]!);
        Assert.Contains("checkpoints", (await server.GetJson("/models"))!.AsArray().Select(x => (string)x!));
        Assert.Equal([ComfyServer.Checkpoint], (await server.GetJson("/api/models/checkpoints"))!.AsArray().Select(x => (string)x!));
        Assert.Equal(HttpStatusCode.NotFound, (await server.Http.GetAsync(server.BaseUrl + "/api/models/nothing")).StatusCode);
        Assert.Equal(HttpStatusCode.NotFound, (await server.Http.GetAsync(server.BaseUrl + "/api/view_metadata/loras?filename=missing.safetensors")).StatusCode);

        // settings: a merged object, and single values, kept in the user folder
        Assert.Equal(200, (await server.PostJson("/api/settings", new JsonObject { ["Comfy.TutorialCompleted"] = true, ["Comfy.Locale"] = "en" })).Status);
        Assert.Equal(200, (await server.PostJson("/api/settings/Comfy.Locale", JsonValue.Create("fr"))).Status);
        var settings = (await server.GetJson("/api/settings"))!;
        Assert.True((bool)settings["Comfy.TutorialCompleted"]!);
        Assert.Equal("fr", (string)(await server.GetJson("/api/settings/Comfy.Locale"))!);
        Assert.True(File.Exists(Path.Combine(server.DataDir, "default", "comfy.settings.json")));

        // user data: 404 while absent, write, 409 without overwrite, list, read, move, delete
        Assert.Equal(HttpStatusCode.NotFound, (await server.Http.GetAsync(server.BaseUrl + "/api/userdata?dir=workflows&recurse=true&split=false&full_info=true")).StatusCode);
        Assert.Equal(HttpStatusCode.NotFound, (await server.Http.GetAsync(server.BaseUrl + "/api/userdata/workflows%2Fa.json")).StatusCode);
        var post = await server.Http.PostAsync(server.BaseUrl + "/api/userdata/workflows%2Fa.json?overwrite=false&full_info=true", new StringContent("{\"x\":1}", Encoding.UTF8));
        Assert.Equal(HttpStatusCode.OK, post.StatusCode);
        Assert.Equal("workflows/a.json", (string)JsonNode.Parse(await post.Content.ReadAsStringAsync())!["path"]!);
        Assert.Equal(HttpStatusCode.Conflict, (await server.Http.PostAsync(server.BaseUrl + "/api/userdata/workflows%2Fa.json?overwrite=false", new StringContent("{}"))).StatusCode);
        var list = (await server.GetJson("/api/userdata?dir=workflows&recurse=true&split=false&full_info=true"))!.AsArray();
        Assert.Equal("a.json", (string)list.Single()!["path"]!);
        Assert.Equal("{\"x\":1}", await server.Http.GetStringAsync(server.BaseUrl + "/api/userdata/workflows%2Fa.json"));
        Assert.Equal(HttpStatusCode.OK, (await server.Http.PostAsync(server.BaseUrl + "/api/userdata/workflows%2Fa.json/move/workflows%2Fb.json", null)).StatusCode);
        Assert.Equal(HttpStatusCode.NoContent, (await server.Http.DeleteAsync(server.BaseUrl + "/api/userdata/workflows%2Fb.json")).StatusCode);
        Assert.Equal(HttpStatusCode.Forbidden, (await server.Http.GetAsync(server.BaseUrl + "/api/userdata/..%2F..%2Fsecret.txt")).StatusCode);
    }

    [SkippableFact]
    public async Task Jobs_queue_and_history_list_the_prompts()
    {
        server.Require();
        await using var ws = await ComfySocket.Connect(server);
        var (_, body) = await server.PostJson("/api/prompt", ComfyPrompts.Body(ComfyPrompts.Txt2Img(seed: 606, steps: 1), ws.ClientId));
        string id = (string)body!["prompt_id"]!;
        await ws.WaitDone(id);
        var jobs = (await server.GetJson("/api/jobs?status=completed,failed&limit=200&offset=0"))!;
        Assert.Equal(200, (int)jobs["pagination"]!["limit"]!);
        var job = jobs["jobs"]!.AsArray().Single(j => (string)j!["id"]! == id)!;
        Assert.Equal("completed", (string)job["status"]!);
        Assert.Equal(1, (int)job["outputs_count"]!);
        Assert.Equal("9", (string)job["preview_output"]!["nodeId"]!);
        Assert.True((long)job["execution_end_time"]! >= (long)job["execution_start_time"]!);
        var unlimited = (await server.GetJson("/api/jobs"))!;
        Assert.Equal((int)unlimited["pagination"]!["total"]!, (int)unlimited["pagination"]!["limit"]!);
        Assert.Equal("completed", (string)(await server.GetJson($"/api/jobs/{id}"))!["status"]!);
        Assert.Equal(HttpStatusCode.NotFound, (await server.Http.GetAsync(server.BaseUrl + "/api/jobs/nope")).StatusCode);
        Assert.False((bool)(await server.PostJson($"/api/jobs/{id}/cancel", new JsonObject())).Body!["cancelled"]!);
        var queue = (await server.GetJson("/queue"))!;
        Assert.Empty(queue["queue_running"]!.AsArray());
        Assert.True((await server.GetJson("/history?max_items=1"))!.AsObject().Count == 1);
        Assert.Equal(200, (await server.PostJson("/history", new JsonObject { ["delete"] = new JsonArray(id) })).Status);
        Assert.Empty((await server.GetJson($"/history/{id}"))!.AsObject());
    }
}
