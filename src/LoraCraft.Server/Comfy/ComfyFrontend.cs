using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.StaticFiles;

namespace LoraCraft.Server.Comfy;

/// <summary>
/// A built ComfyUI frontend (the `static` folder of comfyui-frontend-package, or a release
/// `dist`) under /comfy/: index.html never cached, every other file as is (JavaScript with a
/// JavaScript type, or module scripts fail), and its /assets/ at the root, which it names absolutely.
/// The frontend takes /comfy as its base, so its API calls go to /comfy/api/… and its socket to
/// /comfy/ws, which <see cref="ComfyRoutes"/> answer.
/// </summary>
public static class ComfyFrontend
{
    public static void Map(WebApplication app, string dir)
    {
        var root = Path.GetFullPath(dir);
        if (!File.Exists(Path.Combine(root, "index.html")))
            throw new UserErrorException($"ComfyUI frontend folder {root} has no index.html (give the built frontend: the wheel's static folder or a release's dist)");
        var types = new FileExtensionContentTypeProvider();
        types.Mappings[".js"] = "application/javascript; charset=utf-8";
        types.Mappings[".mjs"] = "application/javascript; charset=utf-8";
        types.Mappings[".json"] = "application/json";
        types.Mappings[".wasm"] = "application/wasm";

        IResult Index(HttpContext http)
        {
            http.Response.Headers.CacheControl = "no-store, must-revalidate";
            return Results.File(Path.Combine(root, "index.html"), "text/html; charset=utf-8");
        }
        // one route for /comfy and /comfy/ (templates ignore the slash); the frontend needs the slash for its base path
        app.MapGet("/comfy", (HttpContext http) => http.Request.Path.Value!.EndsWith('/') ? Index(http) : Results.Redirect("/comfy/")).ExcludeFromDescription();
        IResult Serve(HttpContext http, string path)
        {
            var full = Path.GetFullPath(Path.Combine(root, path));
            if (!SafePaths.IsSafeRelative(path) || !SafePaths.IsInside(root, full) || !File.Exists(full)) return Results.NotFound();
            if (path.EndsWith(".js", StringComparison.Ordinal) || path.EndsWith(".css", StringComparison.Ordinal)) http.Response.Headers.CacheControl = "no-cache";
            return Results.File(full, types.TryGetContentType(full, out var t) ? t : "application/octet-stream", enableRangeProcessing: true);
        }
        app.MapGet("/comfy/{**path}", (HttpContext http, string path) => Serve(http, path)).ExcludeFromDescription();
        // the frontend asks for some of its own files at the site root, where ComfyUI serves it (the tab's progress
        // favicon: /assets/images/favicon_progress_16x16/frame_N.png); our UI keeps its files under /ui/
        app.MapGet("/assets/{**path}", (HttpContext http, string path) => Serve(http, "assets/" + path)).ExcludeFromDescription();
    }
}
