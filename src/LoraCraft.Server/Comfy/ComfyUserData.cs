using System.Text.Json;
using System.Text.Json.Nodes;
using LoraCraft.Pipelines;
using Microsoft.AspNetCore.Http;

namespace LoraCraft.Server.Comfy;

/// <summary>
/// ComfyUI's single-user data (app/user_manager.py, app/app_settings.py) in the user folder
/// (DataDir/default): `/users`, `/settings` (comfy.settings.json), `/userdata` files (workflows,
/// templates …) listed, read, written (409 without overwrite), deleted and moved; 404 when absent,
/// 403 for paths that leave the folder.
/// </summary>
public sealed class ComfyUserData(string root)
{
    readonly object _lock = new();

    public string Root { get; } = Path.GetFullPath(root);
    string SettingsFile => Path.Combine(Root, "comfy.settings.json");

    public JsonObject Users() => new() { ["storage"] = "server", ["migrated"] = Directory.Exists(Root) };

    public JsonObject Settings()
    {
        lock (_lock)
        {
            if (!File.Exists(SettingsFile)) return new JsonObject();
            try { return JsonNode.Parse(File.ReadAllText(SettingsFile)) as JsonObject ?? new JsonObject(); }
            catch (JsonException) { return new JsonObject(); }
        }
    }

    public void SaveSettings(Action<JsonObject> change)
    {
        lock (_lock)
        {
            var settings = Settings();
            change(settings);
            Directory.CreateDirectory(Root);
            AtomicFile.WriteAllBytes(SettingsFile, System.Text.Encoding.UTF8.GetBytes(settings.ToJsonString(new JsonSerializerOptions { WriteIndented = true })));
        }
    }

    /// <summary>A path from a request (URL-encoded, '/'-separated) inside the user folder, or null.</summary>
    public string? PathOf(string? relative)
    {
        if (string.IsNullOrEmpty(relative)) return null;
        if (relative.Contains('%')) relative = Uri.UnescapeDataString(relative);
        relative = relative.Replace('\\', '/').TrimEnd('/');
        if (!SafePaths.IsSafeRelative(relative)) return null;
        var full = Path.GetFullPath(Path.Combine(Root, relative));
        return SafePaths.IsInside(Root, full) ? full : null;
    }

    JsonObject Info(string path) => new()
    {
        ["path"] = Path.GetRelativePath(Root, path).Replace(Path.DirectorySeparatorChar, '/'),
        ["size"] = new FileInfo(path).Length,
        ["modified"] = new DateTimeOffset(File.GetLastWriteTimeUtc(path)).ToUnixTimeMilliseconds(),
        ["created"] = new DateTimeOffset(File.GetCreationTimeUtc(path)).ToUnixTimeMilliseconds(),
    };

    public IResult List(HttpRequest request)
    {
        string? dir = request.Query["dir"];
        if (string.IsNullOrEmpty(dir)) return Results.Text("Directory not provided", statusCode: 400);
        var path = PathOf(dir);
        if (path is null) return Results.Text("Invalid directory", statusCode: 403);
        if (!Directory.Exists(path)) return Results.Text("Directory not found", statusCode: 404);
        bool recurse = Flag(request, "recurse"), full = Flag(request, "full_info"), split = Flag(request, "split");
        var files = Directory.EnumerateFiles(path, "*", recurse ? SearchOption.AllDirectories : SearchOption.TopDirectoryOnly).Order(StringComparer.Ordinal);
        var result = new JsonArray();
        foreach (var f in files)
        {
            var rel = Path.GetRelativePath(path, f).Replace(Path.DirectorySeparatorChar, '/');
            if (full)
            {
                var info = Info(f);
                info["path"] = rel;
                result.Add(info);
            }
            else if (split) result.Add(new JsonArray(new[] { rel }.Concat(rel.Split('/')).Select(p => (JsonNode?)p).ToArray()));
            else result.Add(rel);
        }
        return Results.Content(result.ToJsonString(), "application/json");
    }

    public IResult ListV2(HttpRequest request)
    {
        string? requested = request.Query["path"];
        var target = string.IsNullOrEmpty(requested) ? Root : PathOf(requested);
        if (target is null) return Results.Text("Invalid path requested", statusCode: 400);
        if (!Directory.Exists(target)) return target == Root ? Results.Content("[]", "application/json") : Results.Text("Requested path not found", statusCode: 404);
        var entries = new List<JsonObject>();
        foreach (var d in Directory.EnumerateDirectories(target, "*", SearchOption.AllDirectories))
            entries.Add(new JsonObject { ["name"] = Path.GetFileName(d), ["path"] = Path.GetRelativePath(Root, d).Replace(Path.DirectorySeparatorChar, '/'), ["type"] = "directory" });
        foreach (var f in Directory.EnumerateFiles(target, "*", SearchOption.AllDirectories))
            entries.Add(new JsonObject
            {
                ["name"] = Path.GetFileName(f), ["path"] = Path.GetRelativePath(Root, f).Replace(Path.DirectorySeparatorChar, '/'), ["type"] = "file",
                ["size"] = new FileInfo(f).Length, ["modified"] = new DateTimeOffset(File.GetLastWriteTimeUtc(f)).ToUnixTimeMilliseconds() / 1000.0,
            });
        var sorted = entries.OrderBy(e => e["type"]!.GetValue<string>() != "directory").ThenBy(e => e["name"]!.GetValue<string>().ToLowerInvariant());
        return Results.Content(new JsonArray(sorted.Select(e => (JsonNode?)e).ToArray()).ToJsonString(), "application/json");
    }

    public IResult Get(string file)
    {
        var path = PathOf(file);
        if (path is null) return Results.StatusCode(403);
        if (!File.Exists(path)) return Results.NotFound();
        bool css = path == Path.Combine(Root, "user.css");
        string type = css ? "text/css" : Path.GetExtension(path).ToLowerInvariant() == ".json" ? "application/json" : "application/octet-stream";
        return new UserFile(path, type, css ? "inline" : "attachment");
    }

    sealed class UserFile(string path, string type, string disposition) : IResult
    {
        public async Task ExecuteAsync(HttpContext http)
        {
            http.Response.ContentType = type;
            http.Response.Headers.XContentTypeOptions = "nosniff";
            http.Response.Headers.ContentDisposition = disposition;
            await http.Response.SendFileAsync(path);
        }
    }

    public async Task<IResult> Post(HttpRequest request, string file)
    {
        var path = PathOf(file);
        if (path is null) return Results.StatusCode(403);
        bool overwrite = request.Query["overwrite"] != "false";
        if (!overwrite && File.Exists(path)) return Results.Text("File already exists", statusCode: 409);
        using var body = new MemoryStream();
        await request.Body.CopyToAsync(body);
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        AtomicFile.WriteAllBytes(path, body.ToArray());
        return Describe(request, path);
    }

    IResult Describe(HttpRequest request, string path) => Flag(request, "full_info")
        ? Results.Content(Info(path).ToJsonString(), "application/json")
        : Results.Content(JsonValue.Create(Path.GetRelativePath(Root, path).Replace(Path.DirectorySeparatorChar, '/')).ToJsonString(), "application/json");

    public IResult Delete(string file)
    {
        var path = PathOf(file);
        if (path is null) return Results.StatusCode(403);
        if (!File.Exists(path)) return Results.NotFound();
        File.Delete(path);
        return Results.StatusCode(204);
    }

    public IResult Move(HttpRequest request, string file, string dest)
    {
        var source = PathOf(file);
        var target = PathOf(dest);
        if (source is null || target is null) return Results.StatusCode(403);
        if (!File.Exists(source)) return Results.NotFound();
        bool overwrite = request.Query["overwrite"] != "false";
        if (!overwrite && File.Exists(target)) return Results.Text("File already exists", statusCode: 409);
        Directory.CreateDirectory(Path.GetDirectoryName(target)!);
        File.Move(source, target, overwrite: true);
        return Describe(request, target);
    }

    static bool Flag(HttpRequest request, string name) => string.Equals(request.Query[name], "true", StringComparison.OrdinalIgnoreCase);
}
