using System.Security.Cryptography;
using System.Text.Json;
using System.Text.Json.Nodes;
using LoraCraft.Pipelines;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.StaticFiles;
using SkiaSharp;

namespace LoraCraft.Server.Comfy;

/// <summary>
/// ComfyUI's file routes: /view (an output, input or temp file; `..` or an absolute name is 400,
/// a subfolder that leaves its folder 403; optional preview as webp/jpeg and rgb / alpha channel)
/// and /upload/image, /upload/mask (multipart `image`, `type`, `subfolder`, `overwrite`; a name
/// taken by another file gets " (1)"; the mask upload copies the uploaded alpha into the original).
/// </summary>
public static class ComfyFiles
{
    static readonly FileExtensionContentTypeProvider Types = new();

    public static IResult View(ComfyEnvironment env, HttpContext http)
    {
        var q = http.Request.Query;
        string? filename = q["filename"];
        if (string.IsNullOrEmpty(filename)) return Results.NotFound();
        string? type = q["type"];
        foreach (var t in new[] { "input", "output", "temp" })
            if (filename.EndsWith($" [{t}]", StringComparison.Ordinal))
            {
                filename = filename[..^(t.Length + 3)];
                type = t;
            }
        if (filename.StartsWith('/') || filename.Contains("..", StringComparison.Ordinal) || filename.StartsWith('\\') || Path.IsPathRooted(filename))
            return Results.BadRequest();
        var root = env.FolderOf(type);
        if (root is null) return Results.BadRequest();
        var folder = root;
        if (q.ContainsKey("subfolder"))
        {
            folder = Path.GetFullPath(Path.Combine(root, q["subfolder"].ToString()));
            if (!(folder == Path.GetFullPath(root) || SafePaths.IsInside(root, folder))) return Results.StatusCode(403);
        }
        var file = Path.Combine(folder, Path.GetFileName(filename));
        if (!File.Exists(file)) return Results.NotFound();
        string name = Path.GetFileName(file);
        http.Response.Headers.ContentDisposition = $"filename=\"{name}\"";
        string channel = q["channel"].ToString();
        if (q["preview"].ToString() is { Length: > 0 } preview)
        {
            var parts = preview.Split(';');
            string format = parts[0] is "webp" or "jpeg" && !channel.Contains('a') ? parts[0] : "webp";
            int quality = parts.Length > 1 && int.TryParse(parts[^1], out var qv) ? qv : 90;
            using var bitmap = SKBitmap.Decode(file);
            if (bitmap is null) return Results.File(file, ContentType(file));
            using var data = bitmap.Encode(format == "jpeg" ? SKEncodedImageFormat.Jpeg : SKEncodedImageFormat.Webp, quality);
            http.Response.Headers.ContentDisposition = $"filename=\"{name.Replace("png", format)}\"";
            return Results.Bytes(data.ToArray(), $"image/{format}");
        }
        if (channel is "rgb" or "a")
        {
            using var copy = Decode(File.ReadAllBytes(file));
            if (copy is null) return Results.File(file, ContentType(file));
            var px = copy.GetPixelSpan();
            for (int i = 0; i < px.Length; i += 4)
            {
                if (channel == "rgb") px[i + 3] = 255;
                else
                {
                    px[i] = px[i + 1] = px[i + 2] = 0;
                }
            }
            using var png = copy.Encode(SKEncodedImageFormat.Png, 100);
            return Results.Bytes(png.ToArray(), "image/png");
        }
        var contentType = ContentType(file);
        if (contentType.Contains("html", StringComparison.Ordinal) || contentType.Contains("javascript", StringComparison.Ordinal) || contentType.Contains("svg", StringComparison.Ordinal))
        {
            // never rendered inline from the app's origin
            http.Response.Headers.XContentTypeOptions = "nosniff";
            http.Response.Headers.ContentDisposition = $"attachment; filename=\"{name}\"";
            contentType = "application/octet-stream";
        }
        return Results.File(file, contentType);
    }

    static string ContentType(string file) => Types.TryGetContentType(file, out var t) ? t : "application/octet-stream";

    public static async Task<IResult> Upload(ComfyEnvironment env, HttpRequest request, bool mask)
    {
        if (!request.HasFormContentType) return Results.BadRequest();
        var form = await request.ReadFormAsync();
        var image = form.Files["image"];
        if (image is null || string.IsNullOrEmpty(image.FileName)) return Results.BadRequest();
        string type = form["type"].ToString() is { Length: > 0 } t ? t : "input";
        var root = env.FolderOf(type);
        if (root is null) return Results.BadRequest();
        root = Path.GetFullPath(root);
        string subfolder = form["subfolder"].ToString();
        string filename = Path.GetFileName(image.FileName.Replace('\\', '/'));
        var folder = Path.GetFullPath(Path.Combine(root, subfolder));
        var path = Path.GetFullPath(Path.Combine(folder, filename));
        if (filename.Length == 0 || !(folder == root || SafePaths.IsInside(root, folder)) || !SafePaths.IsInside(root, path)) return Results.BadRequest();
        Directory.CreateDirectory(folder);
        byte[] bytes;
        using (var ms = new MemoryStream())
        {
            await image.CopyToAsync(ms);
            bytes = ms.ToArray();
        }
        if (mask)
        {
            var merged = MergeMask(env, form["original_ref"].ToString(), bytes);
            if (merged.Error is { } error) return error;
            bytes = merged.Png!;
        }
        string overwrite = form["overwrite"].ToString();
        if (overwrite is not ("true" or "1"))
        {
            var stem = Path.GetFileNameWithoutExtension(filename);
            var ext = Path.GetExtension(filename);
            for (int i = 1; File.Exists(path); i++)
            {
                if (SHA256.HashData(File.ReadAllBytes(path)).AsSpan().SequenceEqual(SHA256.HashData(bytes))) break; // the same file: reuse it
                filename = $"{stem} ({i}){ext}";
                path = Path.Combine(folder, filename);
            }
        }
        if (!File.Exists(path) || overwrite is "true" or "1" || !File.ReadAllBytes(path).AsSpan().SequenceEqual(bytes))
            AtomicFile.WriteAllBytes(path, bytes);
        return Results.Content(new JsonObject { ["name"] = filename, ["subfolder"] = subfolder, ["type"] = type }.ToJsonString(), "application/json");
    }

    /// <summary>The mask editor's upload: the original image (from original_ref) with the uploaded image's alpha.</summary>
    static (byte[]? Png, IResult? Error) MergeMask(ComfyEnvironment env, string originalRef, byte[] uploaded)
    {
        JsonNode? reference;
        try { reference = JsonNode.Parse(originalRef); }
        catch (JsonException) { return (null, Results.BadRequest()); }
        string? name = reference?["filename"]?.ToString();
        if (string.IsNullOrEmpty(name)) return (null, Results.BadRequest());
        string type = reference?["type"]?.ToString() is { Length: > 0 } t ? t : "output";
        foreach (var tt in new[] { "input", "output", "temp" })
            if (name.EndsWith($" [{tt}]", StringComparison.Ordinal))
            {
                name = name[..^(tt.Length + 3)];
                type = tt;
            }
        if (name.StartsWith('/') || name.Contains("..", StringComparison.Ordinal)) return (null, Results.BadRequest());
        var root = env.FolderOf(type);
        if (root is null) return (null, Results.BadRequest());
        var folder = root;
        if (reference?["subfolder"]?.ToString() is { Length: > 0 } sub)
        {
            folder = Path.GetFullPath(Path.Combine(root, sub));
            if (!SafePaths.IsInside(root, folder)) return (null, Results.StatusCode(403));
        }
        var original = Path.Combine(folder, name);
        if (!File.Exists(original)) return (uploaded, null);
        var originalBytes = File.ReadAllBytes(original);
        using var o = Decode(originalBytes);
        using var m = Decode(uploaded);
        if (o is null || m is null) return (null, Results.BadRequest());
        using var resizedMask = m.Width == o.Width && m.Height == o.Height ? null : m.Resize(o.Info, new SKSamplingOptions(SKFilterMode.Linear));
        var maskPixels = (resizedMask ?? m).GetPixelSpan();
        var px = o.GetPixelSpan();
        for (int i = 3; i < px.Length; i += 4) px[i] = maskPixels[i];
        using var png = o.Encode(SKEncodedImageFormat.Png, 100);
        var bytes = png.ToArray();
        try
        {
            var text = ImageFiles.ReadTextChunks(originalBytes, name);
            if (text.Count > 0) bytes = ImageFiles.InsertTextChunks(bytes, text);
        }
        catch (UserErrorException) { /* not a PNG: no text to keep */ }
        return (bytes, null);
    }

    /// <summary>Any image as unpremultiplied RGBA (alpha 255 where the file has none).</summary>
    static SKBitmap? Decode(byte[] bytes)
    {
        using var stream = new SKMemoryStream(bytes);
        using var codec = SKCodec.Create(stream);
        if (codec is null) return null;
        var info = new SKImageInfo(codec.Info.Width, codec.Info.Height, SKColorType.Rgba8888, SKAlphaType.Unpremul);
        var rgba = new SKBitmap(info);
        if (codec.GetPixels(info, rgba.GetPixels()) is not (SKCodecResult.Success or SKCodecResult.IncompleteInput))
        {
            rgba.Dispose();
            return null;
        }
        return rgba;
    }
}
