using System.Globalization;
using System.Security.Cryptography;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using LoraCraft.Pipelines;
using static TorchSharp.torch;

namespace LoraCraft.Server.Comfy.Nodes;

/// <summary>Loading, saving, previewing and scaling images (ComfyUI's image nodes).</summary>
public static partial class ImageNodes
{
    public static IEnumerable<NodeDefinition> All(ComfyEnvironment env)
    {
        string? ImageExists(NodeCall call) =>
            call.Inputs.GetValueOrDefault("image") is string name && env.AnnotatedPath(name) is { } p && File.Exists(p) ? null
                : $"Invalid image file: {call.Inputs.GetValueOrDefault("image")}";
        string? ImageHash(NodeCall call) =>
            call.Inputs.GetValueOrDefault("image") is string name && env.AnnotatedPath(name) is { } p && File.Exists(p)
                ? Convert.ToHexString(SHA256.HashData(File.ReadAllBytes(p))) : null;

        yield return new NodeDefinition
        {
            Name = "LoadImage", DisplayName = "Load Image", Category = "image",
            Required = [NodeInput.Combo("image", l => l.InputImages(), new JsonObject { ["image_upload"] = true })],
            Outputs = ["IMAGE", "MASK"],
            ChangeKey = ImageHash,
            ValidateInputs = (["image"], ImageExists),
            Run = call =>
            {
                var bytes = ReadInput(env, call.Text("image"));
                var image = ImageFiles.DecodeRgb(bytes, call.Text("image"));
                CheckSize(env, image);
                // MASK = 1 - alpha; 64x64 zeros when the image has no alpha (ComfyUI's LoadImage)
                var mask = ImageFiles.DecodeAlphaMask(bytes, call.Text("image")) ?? zeros(1, 1, 64, 64);
                return NodeResult.Of(new ImageValue(image), new MaskValue(mask));
            },
        };
        yield return new NodeDefinition
        {
            Name = "LoadImageMask", DisplayName = "Load Image (as Mask)", Category = "mask",
            Required = [NodeInput.Combo("image", l => l.InputImages(), new JsonObject { ["image_upload"] = true }), NodeInput.Combo("channel", ["alpha", "red", "green", "blue"])],
            Outputs = ["MASK"],
            ChangeKey = ImageHash,
            ValidateInputs = (["image"], ImageExists),
            Run = call =>
            {
                var bytes = ReadInput(env, call.Text("image"));
                string channel = call.Text("channel");
                if (channel == "alpha")
                {
                    var (w, h) = ImageFiles.Size(bytes, call.Text("image"));
                    return NodeResult.Of(new MaskValue(ImageFiles.DecodeAlphaMask(bytes, call.Text("image")) ?? zeros(1, 1, h, w)));
                }
                using var rgb = ImageFiles.DecodeRgb(bytes, call.Text("image"));
                int c = channel switch { "red" => 0, "green" => 1, _ => 2 };
                return NodeResult.Of(new MaskValue(rgb.narrow(1, c, 1).clone()));
            },
        };
        yield return new NodeDefinition
        {
            Name = "SaveImage", DisplayName = "Save Image", Category = "image",
            Description = "Saves the input images to your ComfyUI output directory.",
            Required =
            [
                NodeInput.Link("images", "IMAGE", "The images to save."),
                NodeInput.Text("filename_prefix", "ComfyUI", extra: new JsonObject { ["tooltip"] = "The prefix for the file to save. This may include formatting information such as %date:yyyy-MM-dd% or %Empty Latent Image.width% to include values from nodes." }),
            ],
            Hidden = new Dictionary<string, string> { ["prompt"] = "PROMPT", ["extra_pnginfo"] = "EXTRA_PNGINFO" },
            OutputNode = true,
            Run = call => Save(env, call, env.OutputDir, "output", call.Text("filename_prefix")),
        };
        yield return new NodeDefinition
        {
            Name = "PreviewImage", DisplayName = "Preview Image", Category = "image",
            Description = "Saves the input images to your ComfyUI output directory.",
            Required = [NodeInput.Link("images", "IMAGE")],
            Hidden = new Dictionary<string, string> { ["prompt"] = "PROMPT", ["extra_pnginfo"] = "EXTRA_PNGINFO" },
            OutputNode = true,
            Run = call => Save(env, call, env.TempDir, "temp", "ComfyUI_temp_" + RandomLetters(5)),
        };
        yield return new NodeDefinition
        {
            Name = "SaveImageWebsocket", Category = "api node/image/websocket",
            Required = [NodeInput.Link("images", "IMAGE")],
            OutputNode = true, AlwaysRun = true, PythonModule = "custom_nodes.websocket_image_save",
            Run = call =>
            {
                var images = call.Value<ImageValue>("images").Pixels;
                for (int i = 0; i < images.shape[0]; i++)
                {
                    using var one = images.narrow(0, i, 1);
                    call.Run.SendImage(ImageFiles.EncodePng(one));
                }
                return new NodeResult([], new JsonObject());
            },
        };
        yield return new NodeDefinition
        {
            Name = "ImageScale", DisplayName = "Upscale Image", Category = "image/upscaling",
            Required =
            [
                NodeInput.Link("image", "IMAGE"),
                NodeInput.Combo("upscale_method", ["nearest-exact", "bilinear", "area", "bicubic", "lanczos"]),
                NodeInput.Int("width", 512, 0, LatentNodes.MaxResolution),
                NodeInput.Int("height", 512, 0, LatentNodes.MaxResolution),
                NodeInput.Combo("crop", ["disabled", "center"]),
            ],
            Outputs = ["IMAGE"],
            Run = call =>
            {
                var image = call.Value<ImageValue>("image").Pixels;
                long width = call.Int("width"), height = call.Int("height");
                if (width == 0 && height == 0) return NodeResult.Of(new ImageValue(image.Handle()));
                if (width == 0) width = Math.Max(1, (long)Math.Round(image.shape[3] * (double)height / image.shape[2], MidpointRounding.ToEven));
                else if (height == 0) height = Math.Max(1, (long)Math.Round(image.shape[2] * (double)width / image.shape[3], MidpointRounding.ToEven));
                int max = env.Options.MaxImageSide;
                if (width > max || height > max) throw new UserErrorException($"{width}x{height} is larger than this server allows ({max}x{max})");
                using var scope = NewDisposeScope();
                var scaled = Resize.Common(image, width, height, call.Text("upscale_method"), call.Text("crop")).Clamp(0, 1);
                return NodeResult.Of(new ImageValue(scaled.MoveToOuterDisposeScope()));
            },
        };
    }

    static void CheckSize(ComfyEnvironment env, Tensor image)
    {
        int max = env.Options.MaxImageSide;
        if (image.shape[2] > max || image.shape[3] > max)
        {
            image.Dispose();
            throw new UserErrorException($"the image is larger than this server takes ({max}x{max})");
        }
    }

    static byte[] ReadInput(ComfyEnvironment env, string name)
    {
        var path = env.AnnotatedPath(name) ?? throw new UserErrorException($"Invalid image file: {name}") { Field = "image" };
        return File.Exists(path) ? File.ReadAllBytes(path) : throw new UserErrorException(ErrorKind.NotFound, $"Invalid image file: {name}") { Field = "image" };
    }

    static string RandomLetters(int n)
    {
        const string letters = "abcdefghijklmnopqrstupvxyz";
        return string.Concat(Enumerable.Range(0, n).Select(_ => letters[RandomNumberGenerator.GetInt32(letters.Length)]));
    }

    [GeneratedRegex(@"%date:([^%]+)%")]
    private static partial Regex DateToken();

    /// <summary>
    /// ComfyUI's save: `PREFIX_00001_.png` numbered on from the highest number already there, the
    /// prefix's folder part as the subfolder (never outside the folder), PNG text chunks `prompt`
    /// (the API prompt) and one per extra_pnginfo key (`workflow`), `ui.images` for the frontend.
    /// </summary>
    static NodeResult Save(ComfyEnvironment env, NodeCall call, string root, string type, string prefix)
    {
        var images = call.Value<ImageValue>("images").Pixels;
        var now = DateTime.Now;
        prefix = prefix.Replace("%width%", images.shape[3].ToString(CultureInfo.InvariantCulture))
                       .Replace("%height%", images.shape[2].ToString(CultureInfo.InvariantCulture))
                       .Replace("%year%", now.ToString("yyyy", CultureInfo.InvariantCulture)).Replace("%month%", now.ToString("MM", CultureInfo.InvariantCulture))
                       .Replace("%day%", now.ToString("dd", CultureInfo.InvariantCulture)).Replace("%hour%", now.ToString("HH", CultureInfo.InvariantCulture))
                       .Replace("%minute%", now.ToString("mm", CultureInfo.InvariantCulture)).Replace("%second%", now.ToString("ss", CultureInfo.InvariantCulture));
        prefix = DateToken().Replace(prefix, m => now.ToString(m.Groups[1].Value.Replace("m", "M").Replace("MM", "MM").Replace("h", "H").Replace("s", "s"), CultureInfo.InvariantCulture));
        prefix = prefix.Replace('\\', '/').Trim('/');
        string subfolder = prefix.Contains('/') ? prefix[..prefix.LastIndexOf('/')] : "";
        string name = prefix.Contains('/') ? prefix[(prefix.LastIndexOf('/') + 1)..] : prefix;
        if (name.Length == 0) name = "ComfyUI";
        var folder = Path.GetFullPath(Path.Combine(root, subfolder));
        if (subfolder.Length > 0 && (!SafePaths.IsSafeRelative(subfolder) || !SafePaths.IsInside(root, folder)))
            throw new UserErrorException($"Saving image outside the output folder is not allowed: {prefix}") { Field = "filename_prefix" };
        Directory.CreateDirectory(folder);

        var text = new Dictionary<string, string> { ["prompt"] = call.Run.Prompt.Graph.Json.ToJsonString() };
        if (call.Run.Prompt.ExtraData["extra_pnginfo"] is JsonObject extra)
            foreach (var (k, v) in extra) text[k] = v?.ToJsonString() ?? "null";

        var results = new JsonArray();
        lock (SaveLock)
        {
            int counter = NextCounter(folder, name);
            for (int i = 0; i < images.shape[0]; i++)
            {
                using var one = images.narrow(0, i, 1);
                string file = $"{name.Replace("%batch_num%", i.ToString(CultureInfo.InvariantCulture))}_{counter:D5}_.png";
                AtomicFile.WriteAllBytes(Path.Combine(folder, file), ImageFiles.EncodePng(one, text));
                results.Add(new JsonObject { ["filename"] = file, ["subfolder"] = subfolder, ["type"] = type });
                counter++;
            }
        }
        return new NodeResult([], new JsonObject { ["images"] = results });
    }

    static readonly object SaveLock = new();

    static int NextCounter(string folder, string name)
    {
        int max = 0;
        foreach (var f in Directory.EnumerateFiles(folder))
        {
            var file = Path.GetFileName(f);
            if (!file.StartsWith(name + "_", StringComparison.OrdinalIgnoreCase)) continue;
            var digits = file[(name.Length + 1)..].Split('_')[0];
            if (int.TryParse(digits, NumberStyles.None, CultureInfo.InvariantCulture, out int n)) max = Math.Max(max, n);
        }
        return max + 1;
    }
}
