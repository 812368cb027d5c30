using System.Net.Http.Headers;
using System.Text;
using System.Text.Json.Nodes;
using LoraCraft.Pipelines;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace LoraCraft.Tests.Server;

/// <summary>Whole workflows: the same pixels as `loracraft generate`, upload then LoadImage, crop-and-stitch, ComfyUI's example scripts.</summary>
[Collection(ComfyServerCollection.Name)]
public class ComfyWorkflowTests(ComfyServer server)
{
    async Task<(string Id, JsonObject Executed)> Run(JsonObject prompt, ComfySocket ws, string output = "9")
    {
        var (status, body) = await server.PostJson("/prompt", ComfyPrompts.Body(prompt, ws.ClientId));
        Assert.True(status == 200, body?.ToJsonString());
        string id = (string)body!["prompt_id"]!;
        await ws.WaitDone(id);
        var events = ws.Of(id);
        Assert.True(events.Any(e => e.Type == "execution_success"), string.Join("\n", events.Where(e => e.Data is not null).Select(e => e.Type + " " + e.Data!.ToJsonString())));
        return (id, events.Last(e => e.Type == "executed" && (string)e.Data!["node"]! == output).Data!);
    }

    async Task<byte[]> Fetch(JsonNode image) =>
        await server.Http.GetByteArrayAsync($"{server.BaseUrl}/view?filename={Uri.EscapeDataString((string)image["filename"]!)}&subfolder={image["subfolder"]}&type={image["type"]}");

    /// <summary>A 96x80 PNG with a colour gradient; transparent (alpha 0) in the square [x0, x0+16) x [y0, y0+16).</summary>
    static byte[] TestPng(int x0 = 24, int y0 = 32)
    {
        int w = 96, h = 80;
        var rgba = new float[4 * h * w];
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w; x++)
            {
                int i = y * w + x;
                rgba[i] = x / (float)w;
                rgba[h * w + i] = y / (float)h;
                rgba[2 * h * w + i] = 0.5f;
            }
        using var image = torch.tensor(rgba[..(3 * h * w)], [1, 3, h, w]);
        var png = ImageFiles.EncodePng(image);
        // alpha: decode to RGBA with SkiaSharp and clear the square
        using var bitmap = SkiaSharp.SKBitmap.Decode(png).Copy(SkiaSharp.SKColorType.Rgba8888);
        using var unpremul = new SkiaSharp.SKBitmap(new SkiaSharp.SKImageInfo(w, h, SkiaSharp.SKColorType.Rgba8888, SkiaSharp.SKAlphaType.Unpremul));
        var src = bitmap.GetPixelSpan();
        var dst = unpremul.GetPixelSpan();
        src.CopyTo(dst);
        for (int y = y0; y < y0 + 16; y++)
            for (int x = x0; x < x0 + 16; x++) dst[4 * (y * w + x) + 3] = 0;
        using var data = unpremul.Encode(SkiaSharp.SKEncodedImageFormat.Png, 100);
        return data.ToArray();
    }

    async Task<JsonNode> Upload(byte[] png, string name, string? subfolder = null, string path = "/upload/image")
    {
        using var form = new MultipartFormDataContent();
        var file = new ByteArrayContent(png);
        file.Headers.ContentType = new MediaTypeHeaderValue("image/png");
        form.Add(file, "image", name);
        if (subfolder is not null) form.Add(new StringContent(subfolder), "subfolder");
        form.Add(new StringContent("input"), "type");
        using var response = await server.Http.PostAsync(server.BaseUrl + path, form);
        Assert.True(response.IsSuccessStatusCode, await response.Content.ReadAsStringAsync());
        return JsonNode.Parse(await response.Content.ReadAsStringAsync())!;
    }

    [SkippableFact]
    public async Task A_ksampler_graph_gives_the_same_pixels_as_loracraft_generate()
    {
        server.Require();
        await using var ws = await ComfySocket.Connect(server);
        var prompt = ComfyPrompts.Txt2Img(seed: 12345, steps: 3, sampler: "euler_ancestral", scheduler: "karras", cfg: 6.5,
                                          positive: "a (red:1.2) apple on a table", negative: "blurry", prefix: "parity");
        var (_, executed) = await Run(prompt, ws);
        var comfyPng = await Fetch(executed["output"]!["images"]![0]!);

        using var dir = new TempDir();
        var o = new StringWriter();
        var e = new StringWriter();
        var checkpoints = Path.Combine(server.Root, "checkpoints");
        int code = LoraCraft.Cli.Cli.Run(["generate", "--model", Path.Combine(checkpoints, ComfyServer.Checkpoint), "--config", Path.Combine(checkpoints, "tiny-sd15.config"),
            "--dtype", "fp32", "--prompt-style", "comfy", "--prompt", "a (red:1.2) apple on a table", "--negative", "blurry", "--seed", "12345", "--steps", "3",
            "--cfg", "6.5", "--sampler", "euler_ancestral", "--scheduler", "karras", "--width", "64", "--height", "64", "--out", dir.File("cli.png"), "--quiet"], o, e);
        Assert.True(code == 0, e.ToString());
        using var comfy = ImageFiles.DecodeRgb(comfyPng, "comfy");
        using var cli = ImageFiles.LoadRgb(dir.File("cli.png"));
        Assert.Equal(cli.data<float>().ToArray(), comfy.data<float>().ToArray());
    }

    [SkippableFact]
    public async Task An_uploaded_image_loads_with_its_alpha_as_mask_and_goes_through_img2img()
    {
        server.Require();
        await using var ws = await ComfySocket.Connect(server);
        var png = TestPng();
        var first = await Upload(png, "upload-test.png");
        Assert.Equal("upload-test.png", (string)first["name"]!);
        Assert.Equal("input", (string)first["type"]!);
        Assert.Equal("upload-test.png", (string)(await Upload(png, "upload-test.png"))["name"]!); // same bytes: same file
        Assert.Equal("upload-test (1).png", (string)(await Upload(TestPng(0, 0), "upload-test.png"))["name"]!);
        var info = (await server.GetJson("/object_info/LoadImage"))!;
        Assert.Contains("upload-test.png", info["LoadImage"]!["input"]!["required"]!["image"]![0]!.AsArray().Select(x => (string)x!));

        // LoadImage -> VAEEncode -> KSampler (denoise 0.5) -> VAEDecode -> SaveImage; the MASK goes through SetLatentNoiseMask
        var prompt = ComfyPrompts.Txt2Img(seed: 777, steps: 2, prefix: "img2img");
        prompt["10"] = Node("LoadImage", new JsonObject { ["image"] = "upload-test.png" });
        prompt["11"] = Node("VAEEncode", new JsonObject { ["pixels"] = Link("10", 0), ["vae"] = Link("4", 2) });
        prompt["12"] = Node("SetLatentNoiseMask", new JsonObject { ["samples"] = Link("11", 0), ["mask"] = Link("10", 1) });
        prompt["3"]!["inputs"]!["latent_image"] = Link("12", 0);
        prompt["3"]!["inputs"]!["denoise"] = 0.5;
        prompt.Remove("5");
        var (_, executed) = await Run(prompt, ws);
        using var result = ImageFiles.DecodeRgb(await Fetch(executed["output"]!["images"]![0]!), "result");
        Assert.Equal(new long[] { 1, 3, 80, 96 }, result.shape);

        var missing = ComfyPrompts.Txt2Img(seed: 1);
        missing["10"] = Node("LoadImage", new JsonObject { ["image"] = "not-there.png" });
        missing["11"] = Node("PreviewImage", new JsonObject { ["images"] = Link("10", 0) });
        var (status, body) = await server.PostJson("/prompt", ComfyPrompts.Body(missing));
        Assert.Equal(200, status); // the other output is fine; the bad one is reported and skipped
        Assert.Equal("custom_validation_failed", (string)body!["node_errors"]!["10"]!["errors"]![0]!["type"]!);
    }

    static JsonObject Node(string type, JsonObject inputs) => new() { ["class_type"] = type, ["inputs"] = inputs };
    static JsonArray Link(string node, int output) => new(node, output);

    [SkippableFact]
    public async Task Crop_and_stitch_inpainting_leaves_pixels_far_from_the_mask_unchanged()
    {
        server.Require();
        await using var ws = await ComfySocket.Connect(server);
        var png = TestPng();
        await Upload(png, "stitch-test.png", subfolder: "clipspace");
        var prompt = ComfyPrompts.Txt2Img(seed: 888, steps: 2, prefix: "stitched");
        prompt["10"] = Node("LoadImage", new JsonObject { ["image"] = "clipspace/stitch-test.png [input]" });
        prompt["11"] = Node("InpaintCropImproved", new JsonObject
        {
            ["image"] = Link("10", 0), ["mask"] = Link("10", 1), ["downscale_algorithm"] = "bilinear", ["upscale_algorithm"] = "bicubic",
            ["preresize"] = false, ["preresize_mode"] = "ensure minimum resolution", ["preresize_min_width"] = 1024, ["preresize_min_height"] = 1024,
            ["preresize_max_width"] = 16384, ["preresize_max_height"] = 16384, ["mask_fill_holes"] = true, ["mask_expand_pixels"] = 0,
            ["mask_invert"] = false, ["mask_blend_pixels"] = 8, ["mask_hipass_filter"] = 0.1, ["extend_for_outpainting"] = false,
            ["extend_up_factor"] = 1.0, ["extend_down_factor"] = 1.0, ["extend_left_factor"] = 1.0, ["extend_right_factor"] = 1.0,
            ["context_from_mask_extend_factor"] = 1.2, ["output_resize_to_target_size"] = true, ["output_target_width"] = 64,
            ["output_target_height"] = 64, ["output_padding"] = "32", ["device_mode"] = "cpu (compatible)",
        });
        prompt["12"] = Node("InpaintModelConditioning", new JsonObject
        {
            ["positive"] = Link("6", 0), ["negative"] = Link("7", 0), ["vae"] = Link("4", 2), ["pixels"] = Link("11", 1), ["mask"] = Link("11", 2), ["noise_mask"] = true,
        });
        prompt["3"]!["inputs"]!["positive"] = Link("12", 0);
        prompt["3"]!["inputs"]!["negative"] = Link("12", 1);
        prompt["3"]!["inputs"]!["latent_image"] = Link("12", 2);
        prompt["3"]!["inputs"]!["denoise"] = 0.8;
        prompt["13"] = Node("InpaintStitchImproved", new JsonObject { ["stitcher"] = Link("11", 0), ["inpainted_image"] = Link("8", 0) });
        prompt["9"]!["inputs"]!["images"] = Link("13", 0);
        prompt.Remove("5");
        var (_, executed) = await Run(prompt, ws);
        using var result = ImageFiles.DecodeRgb(await Fetch(executed["output"]!["images"]![0]!), "result");
        using var original = ImageFiles.DecodeRgb(png, "original");
        Assert.Equal(original.shape, result.shape);
        // the mask is the square [24,40) x [32,48); beyond the blend (8 px) every pixel is the original's
        using var far = torch.ones(1, 1, 80, 96, dtype: ScalarType.Bool);
        far[.., .., 20..60, 12..52] = torch.tensor(false);
        using var diff = (result - original).abs().amax([1], keepdim: true);
        Assert.Equal(0f, diff.masked_select(far).max().item<float>());
        // and inside the mask something was repainted
        Assert.True(diff[.., .., 34..46, 26..38].max().item<float>() > 0);
    }

    /// <summary>
    /// ComfyUI's script_examples, their exact calls: basic_api_example.py (POST /prompt with only
    /// {"prompt"} as urllib sends it, form content type), websockets_api_example.py (a uuid4 client
    /// id on /ws, POST /prompt, read until `executing` with node null for the prompt, GET
    /// /history/{id}, GET /view for each image) and websockets_api_example_ws_images.py
    /// (SaveImageWebsocket: the PNG after the 8-byte header of the frames sent while that node runs).
    /// </summary>
    [SkippableFact]
    public async Task Comfyuis_example_scripts_work_unchanged()
    {
        server.Require();
        JsonObject Example(string prefix)
        {
            var p = ComfyPrompts.Txt2Img(seed: 8566257, steps: 20, size: 512, prefix: prefix);
            p["6"]!["inputs"]!["text"] = "masterpiece best quality man";
            p["3"]!["inputs"]!["seed"] = 5;
            // the scripts run 512x512, 20 steps; here the same graph at 64x64, 2 steps on the tiny model
            p["5"]!["inputs"]!["width"] = 64;
            p["5"]!["inputs"]!["height"] = 64;
            p["3"]!["inputs"]!["steps"] = 2;
            return p;
        }

        // basic_api_example.py: request.Request(url, data=json bytes) posts as application/x-www-form-urlencoded
        var basic = new JsonObject { ["prompt"] = Example("basic") };
        using (var content = new ByteArrayContent(Encoding.UTF8.GetBytes(basic.ToJsonString())))
        {
            content.Headers.ContentType = new MediaTypeHeaderValue("application/x-www-form-urlencoded");
            using var r = await server.Http.PostAsync("http://" + server.BaseUrl["http://".Length..] + "/prompt", content);
            Assert.Equal(200, (int)r.StatusCode);
        }

        // websockets_api_example.py
        string clientId = Guid.NewGuid().ToString();
        await using var ws = await ComfySocket.Connect(server, clientId);
        var queued = new JsonObject { ["prompt"] = Example("ccniyUI"), ["client_id"] = clientId };
        using var post = await server.Http.PostAsync(server.BaseUrl + "/prompt", new ByteArrayContent(Encoding.UTF8.GetBytes(queued.ToJsonString())));
        string promptId = (string)JsonNode.Parse(await post.Content.ReadAsStringAsync())!["prompt_id"]!;
        await ws.WaitFor(m => (string?)m["type"] == "executing" && m["data"]!["node"] is null && (string?)m["data"]!["prompt_id"] == promptId);
        var history = JsonNode.Parse(await server.Http.GetStringAsync($"{server.BaseUrl}/history/{promptId}"))![promptId]!;
        var images = new List<byte[]>();
        foreach (var (node, output) in history["outputs"]!.AsObject())
            if (output!["images"] is JsonArray list)
                foreach (var image in list)
                {
                    var query = string.Join("&", new[] { "filename", "subfolder", "type" }.Select(k => $"{k}={Uri.EscapeDataString((string)image![k]!)}"));
                    images.Add(await server.Http.GetByteArrayAsync($"{server.BaseUrl}/view?{query}"));
                }
        var one = Assert.Single(images);
        Assert.Equal(new long[] { 1, 3, 64, 64 }, ImageFiles.DecodeRgb(one, "view").shape);

        // websockets_api_example_ws_images.py
        var wsImages = Example("unused");
        wsImages.Remove("9");
        wsImages["save_image_websocket_node"] = Node("SaveImageWebsocket", new JsonObject { ["images"] = Link("8", 0) });
        using var post2 = await server.Http.PostAsync(server.BaseUrl + "/api/prompt",
            new ByteArrayContent(Encoding.UTF8.GetBytes(new JsonObject { ["prompt"] = wsImages, ["client_id"] = clientId }.ToJsonString())));
        string id2 = (string)JsonNode.Parse(await post2.Content.ReadAsStringAsync())!["prompt_id"]!;
        await ws.WaitDone(id2);
        string current = "";
        var sent = new List<byte[]>();
        foreach (var item in ws.All)
        {
            if (item is JsonObject m && (string?)m["type"] == "executing" && (string?)m["data"]!["prompt_id"] == id2)
            {
                if (m["data"]!["node"] is null) break;
                current = (string)m["data"]!["node"]!;
            }
            else if (item is byte[] frame && current == "save_image_websocket_node") sent.Add(frame[8..]);
        }
        var png = Assert.Single(sent);
        Assert.Equal(new long[] { 1, 3, 64, 64 }, ImageFiles.DecodeRgb(png, "ws image").shape);
    }
}
