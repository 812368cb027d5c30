using System.Reflection;
using System.Security.Cryptography;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;

namespace LoraCraft.Server.WebUi;

/// <summary>
/// The web UI: static HTML, CSS and ES modules embedded in this assembly (WebUi/static), served at
/// `/` and `/ui/*`. The page talks only to the native /api/v1 API; nothing here generates.
/// Each file is sent with an ETag (revalidated on every load, so an upgraded server never serves
/// a stale module) and a content security policy that allows this origin only.
/// </summary>
public static class WebUiRoutes
{
    const string Prefix = "webui/";

    /// <summary>Name (relative to static/) -> bytes and ETag, read once from the assembly.</summary>
    static readonly Lazy<IReadOnlyDictionary<string, (byte[] Bytes, string ETag)>> Files = new(Load);

    public static void Map(WebApplication app)
    {
        app.MapMethods("/", ["GET", "HEAD"], (HttpContext http) => Serve(http, "index.html"));
        app.MapGet("/index.html", (HttpContext http) => Serve(http, "index.html"));
        app.MapGet("/ui/{**path}", (string path, HttpContext http) => Serve(http, path));
        app.MapGet("/favicon.ico", (HttpContext http) => Serve(http, "icon.svg"));
    }

    /// <summary>The embedded file names (tests check that each screen's module is there).</summary>
    public static IEnumerable<string> Names => Files.Value.Keys;

    static IResult Serve(HttpContext http, string path)
    {
        if (!Files.Value.TryGetValue(path, out var file))
            return Results.Json(new { error = new { kind = "notfound", message = $"web UI file '{path}' not found" } }, LoraServer.Json, statusCode: 404);
        var headers = http.Response.Headers;
        headers.ETag = file.ETag;
        headers.CacheControl = "no-cache";
        headers.XContentTypeOptions = "nosniff";
        headers.ContentSecurityPolicy = "default-src 'self'; img-src 'self' data: blob:; connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'self'";
        headers["Referrer-Policy"] = "no-referrer";
        if (http.Request.Headers.IfNoneMatch == file.ETag) return Results.StatusCode(304);
        return Results.Bytes(file.Bytes, ContentType(path));
    }

    static string ContentType(string path) => Path.GetExtension(path) switch
    {
        ".html" => "text/html; charset=utf-8",
        ".js" => "text/javascript; charset=utf-8",
        ".css" => "text/css; charset=utf-8",
        ".svg" => "image/svg+xml",
        ".png" => "image/png",
        _ => "application/octet-stream",
    };

    static IReadOnlyDictionary<string, (byte[], string)> Load()
    {
        var assembly = typeof(WebUiRoutes).Assembly;
        var files = new Dictionary<string, (byte[], string)>(StringComparer.Ordinal);
        foreach (var name in assembly.GetManifestResourceNames().Where(n => n.StartsWith(Prefix, StringComparison.Ordinal)))
        {
            using var stream = assembly.GetManifestResourceStream(name)!;
            using var memory = new MemoryStream();
            stream.CopyTo(memory);
            var bytes = memory.ToArray();
            files[name[Prefix.Length..].Replace('\\', '/')] = (bytes, "\"" + Convert.ToHexString(SHA256.HashData(bytes))[..16] + "\"");
        }
        return files;
    }
}
