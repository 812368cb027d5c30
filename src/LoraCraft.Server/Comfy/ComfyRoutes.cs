using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using LoraCraft.IO;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;

namespace LoraCraft.Server.Comfy;

/// <summary>
/// ComfyUI's HTTP API (server.py, user_manager.py), each route at /X, /api/X and — for the
/// frontend served at /comfy/ — /comfy/api/X; the WebSocket at /ws, /api/ws and /comfy/ws.
/// Handlers only translate: prompts are validated and queued, the worker runs them.
/// </summary>
public static class ComfyRoutes
{
    /// <summary>Registers the ComfyUI API (and the frontend when one is configured) on the app.</summary>
    public static void Map(WebApplication app, ServerOptions options)
    {
        var engine = app.Services.GetRequiredService<ServerEngine>();
        var comfy = new ComfyService(engine, options);
        app.Services.GetRequiredService<IHostApplicationLifetime>().ApplicationStopped.Register(comfy.Dispose);

        foreach (var prefix in new[] { "", "/api", "/comfy/api" })
        {
            var g = app.MapGroup(prefix).ExcludeFromDescription();
            MapApi(g, comfy, options);
            if (prefix != "") MapJobs(g, comfy);
        }
        foreach (var ws in new[] { "/ws", "/api/ws", "/comfy/ws" })
            app.Map(ws, (HttpContext http) => comfy.Hub.Accept(http)).ExcludeFromDescription();
        if (options.ComfyFrontendDir is { } dir) ComfyFrontend.Map(app, dir);
    }

    static IResult Json(JsonNode? node, int status = 200) => Results.Content(node?.ToJsonString() ?? "null", "application/json", statusCode: status);

    static async Task<JsonNode?> Body(HttpRequest request)
    {
        // ComfyUI reads the body as JSON whatever the content type (urllib posts it as a form)
        using var reader = new StreamReader(request.Body);
        var text = await reader.ReadToEndAsync();
        if (string.IsNullOrWhiteSpace(text)) return null;
        try { return JsonNode.Parse(text); }
        catch (JsonException e) { throw new BadHttpRequestException("the request body is not valid JSON: " + e.Message); }
    }

    static IEnumerable<string>? Ids(JsonNode? body) =>
        body?["delete"] is JsonArray d ? d.Select(x => x?.ToString() ?? "") : null;

    static void MapApi(RouteGroupBuilder g, ComfyService comfy, ServerOptions options)
    {
        var env = comfy.Env;
        var engine = comfy.Engine;

        g.MapGet("/prompt", () => Json(new JsonObject { ["exec_info"] = new JsonObject { ["queue_remaining"] = comfy.QueueRemaining() } }));
        g.MapPost("/prompt", async (HttpRequest request) =>
        {
            JsonNode? body;
            try { body = await Body(request); }
            catch (BadHttpRequestException e)
            {
                return Json(new JsonObject { ["error"] = ComfyValidation.Error("invalid_prompt", "Invalid JSON", e.Message), ["node_errors"] = new JsonObject() }, 400);
            }
            try
            {
                var (status, response) = comfy.Submit(body);
                return Json(response, status);
            }
            catch (UserErrorException e) when (e.Kind == ErrorKind.Busy)
            {
                return Json(new JsonObject { ["error"] = ComfyValidation.Error("queue_full", e.Message, ""), ["node_errors"] = new JsonObject() }, 503);
            }
        });
        g.MapGet("/queue", () => Json(comfy.QueueJson()));
        g.MapPost("/queue", async (HttpRequest request) =>
        {
            var body = await Body(request);
            if (body?["clear"] is JsonValue c && c.TryGetValue<bool>(out var clear) && clear) comfy.DeleteQueued(null);
            if (Ids(body) is { } ids) comfy.DeleteQueued(ids);
            return Results.Ok();
        });
        g.MapGet("/history", (int? max_items, int? offset) => Json(comfy.HistoryJson(max_items, offset)));
        g.MapGet("/history/{id}", (string id) => Json(comfy.HistoryOf(id)));
        g.MapPost("/history", async (HttpRequest request) =>
        {
            var body = await Body(request);
            if (body?["clear"] is JsonValue c && c.TryGetValue<bool>(out var clear) && clear) comfy.ClearHistory(null);
            if (Ids(body) is { } ids) comfy.ClearHistory(ids);
            return Results.Ok();
        });
        g.MapPost("/interrupt", async (HttpRequest request) =>
        {
            var body = await Body(request);
            comfy.Interrupt(body?["prompt_id"] is JsonValue v && v.TryGetValue<string>(out var id) ? id : null);
            return Results.Ok();
        });
        g.MapPost("/free", async (HttpRequest request) =>
        {
            var body = await Body(request);
            if (body?["unload_models"] is JsonValue u && u.TryGetValue<bool>(out var unload) && unload) engine.Models.UnloadIdle();
            if (body?["free_memory"] is JsonValue f && f.TryGetValue<bool>(out var free) && free)
            {
                comfy.Cache.Trim(0);
                engine.Models.UnloadIdle();
            }
            return Results.Ok();
        });

        g.MapGet("/object_info", () => Json(new JsonObject(env.Nodes.Values.Select(n => KeyValuePair.Create(n.Name, (JsonNode?)n.Describe(env.Lists))))));
        g.MapGet("/object_info/{name}", (string name) =>
            Json(env.Nodes.TryGetValue(name, out var n) ? new JsonObject { [name] = n.Describe(env.Lists) } : new JsonObject()));
        g.MapGet("/system_stats", () => Json(SystemStats(options)));
        g.MapGet("/features", () => Json(ComfySocketHub.ServerFeatures(options.MaxBodyBytes)));
        g.MapGet("/embeddings", () => Json(new JsonArray(engine.Service.Embeddings.ToSet().All.Select(e => e.Name).Distinct().Select(n => (JsonNode?)n).ToArray())));
        g.MapGet("/models", () => Json(new JsonArray(Folders.Keys.Select(k => (JsonNode?)k).ToArray())));
        g.MapGet("/models/{folder}", (string folder) => Folders.TryGetValue(folder, out var list)
            ? Json(new JsonArray(list(comfy).Select(f => (JsonNode?)f).ToArray())) : Results.NotFound());
        g.MapGet("/view_metadata/{folder}", (string folder, string? filename) => ViewMetadata(comfy, folder, filename));
        g.MapGet("/extensions", () => Json(new JsonArray()));
        g.MapGet("/i18n", () => Json(new JsonObject()));
        g.MapGet("/workflow_templates", () => Json(new JsonObject()));
        g.MapGet("/experiment/models", () => Json(new JsonArray(Folders.Keys.Select(k => (JsonNode?)new JsonObject
        {
            ["name"] = k, ["folders"] = new JsonArray(k == "checkpoints" ? engine.Catalog.Root : k == "loras" ? engine.Loras.Root : options.EmbeddingsDir),
        }).ToArray())));

        g.MapGet("/view", (HttpContext http) => ComfyFiles.View(env, http));
        g.MapPost("/upload/image", (HttpRequest request) => ComfyFiles.Upload(env, request, mask: false));
        g.MapPost("/upload/mask", (HttpRequest request) => ComfyFiles.Upload(env, request, mask: true));

        var user = comfy.UserData;
        g.MapGet("/users", () => Json(user.Users()));
        g.MapGet("/settings", () => Json(user.Settings()));
        g.MapPost("/settings", async (HttpRequest request) =>
        {
            if (await Body(request) is not JsonObject values) return Results.BadRequest();
            user.SaveSettings(s =>
            {
                foreach (var (k, v) in values) s[k] = v?.DeepClone();
            });
            return Results.Ok();
        });
        g.MapGet("/settings/{id}", (string id) => Json(user.Settings()[id]?.DeepClone()));
        g.MapPost("/settings/{id}", async (HttpRequest request, string id) =>
        {
            var value = await Body(request);
            user.SaveSettings(s => s[id] = value?.DeepClone());
            return Results.Ok();
        });
        g.MapGet("/userdata", (HttpRequest request) => user.List(request));
        g.MapGet("/v2/userdata", (HttpRequest request) => user.ListV2(request));
        g.MapGet("/userdata/{file}", (string file) => user.Get(file));
        g.MapPost("/userdata/{file}", (HttpRequest request, string file) => user.Post(request, file));
        g.MapDelete("/userdata/{file}", (string file) => user.Delete(file));
        g.MapPost("/userdata/{file}/move/{dest}", (HttpRequest request, string file, string dest) => user.Move(request, file, dest));
    }

    /// <summary>ComfyUI's model folders and what this server has in each.</summary>
    static readonly Dictionary<string, Func<ComfyService, IReadOnlyList<string>>> Folders = new(StringComparer.Ordinal)
    {
        ["checkpoints"] = c => c.Env.CheckpointNames(),
        ["loras"] = c => c.Env.LoraNames(),
        ["embeddings"] = c => c.Engine.Service.Embeddings.ToSet().All.Select(e => e.Name).Distinct().ToList(),
    };

    static IResult ViewMetadata(ComfyService comfy, string folder, string? filename)
    {
        if (filename is null || !filename.EndsWith(".safetensors", StringComparison.Ordinal)) return Results.NotFound();
        string? path = folder switch
        {
            "checkpoints" => comfy.Env.CheckpointNames().Contains(filename) ? comfy.Env.Checkpoint(filename).Path : null,
            "loras" => comfy.Env.LoraNames().Contains(filename) ? comfy.Env.LoraPath(filename) : null,
            _ => null,
        };
        if (path is null || !File.Exists(path)) return Results.NotFound();
        var header = SafetensorsHeader.Read(path);
        if (header.Metadata is not { Count: > 0 } meta) return Results.NotFound();
        return Json(new JsonObject(meta.Select(kv => KeyValuePair.Create(kv.Key, (JsonNode?)kv.Value))));
    }

    static JsonObject SystemStats(ServerOptions options)
    {
        long total = (long)GC.GetGCMemoryInfo().TotalAvailableMemoryBytes;
        long free = options.AvailableMemory?.Invoke() ?? Runtime.SystemMemory.AvailableBytes();
        string device = options.Device?.type.ToString().ToLowerInvariant() ?? "cpu";
        return new JsonObject
        {
            ["system"] = new JsonObject
            {
                ["os"] = OperatingSystem.IsWindows() ? "nt" : "posix",
                ["ram_total"] = total, ["ram_free"] = free,
                ["comfyui_version"] = options.Version,
                ["required_frontend_version"] = "",
                ["python_version"] = $".NET {Environment.Version}",
                ["pytorch_version"] = "libtorch (TorchSharp)",
                ["embedded_python"] = false,
                ["argv"] = new JsonArray(Environment.GetCommandLineArgs().Select(a => (JsonNode?)a).ToArray()),
            },
            ["devices"] = new JsonArray(new JsonObject
            {
                ["name"] = device, ["type"] = device, ["index"] = 0,
                ["vram_total"] = total, ["vram_free"] = free, ["torch_vram_total"] = total, ["torch_vram_free"] = free,
            }),
        };
    }

    /// <summary>The jobs API (ComfyUI's /api/jobs, used by newer frontends' queue and history panels).</summary>
    static void MapJobs(RouteGroupBuilder g, ComfyService comfy)
    {
        g.MapGet("/jobs", (HttpRequest request) =>
        {
            var statuses = request.Query["status"].ToString() is { Length: > 0 } s ? s.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries).ToHashSet() : null;
            string? workflow = request.Query["workflow_id"];
            bool asc = request.Query["sort_order"] == "asc";
            bool byDuration = request.Query["sort_by"] == "execution_duration";
            int offset = int.TryParse(request.Query["offset"], NumberStyles.Integer, CultureInfo.InvariantCulture, out var o) ? Math.Max(0, o) : 0;
            int? limit = int.TryParse(request.Query["limit"], NumberStyles.Integer, CultureInfo.InvariantCulture, out var l) ? Math.Max(0, l) : null;
            var jobs = ComfyJobs.All(comfy).Where(j => statuses is null || statuses.Contains(j["status"]!.GetValue<string>()))
                .Where(j => string.IsNullOrEmpty(workflow) || j["workflow_id"]?.ToString() == workflow).ToList();
            Func<JsonObject, double> key = byDuration
                ? j => (NodeInput.Number(j["execution_end_time"]) - NodeInput.Number(j["execution_start_time"])) ?? 0
                : j => NodeInput.Number(j["create_time"]) ?? 0;
            jobs = (asc ? jobs.OrderBy(key) : jobs.OrderByDescending(key)).ToList();
            int total = jobs.Count;
            var page = jobs.Skip(offset).Take(limit ?? int.MaxValue).ToList();
            return Json(new JsonObject
            {
                ["jobs"] = new JsonArray(page.Select(j => (JsonNode?)j).ToArray()),
                // the frontend needs a number here; without a limit the page is everything
                ["pagination"] = new JsonObject { ["offset"] = offset, ["limit"] = limit ?? total, ["total"] = total, ["has_more"] = offset + page.Count < total },
            });
        });
        g.MapGet("/jobs/{id}", (string id) => ComfyJobs.One(comfy, id) is { } job ? Json(job) : Json(new JsonObject { ["error"] = "Job not found" }, 404));
        g.MapPost("/jobs/{id}/cancel", (string id) => Json(new JsonObject { ["cancelled"] = comfy.Cancel(id) }));
        g.MapPost("/jobs/cancel", async (HttpRequest request) =>
        {
            var body = await Body(request);
            bool any = false;
            if (body?["job_ids"] is JsonArray ids)
                foreach (var id in ids) any |= id is not null && comfy.Cancel(id.ToString());
            return Json(new JsonObject { ["cancelled"] = any });
        });
    }
}
