using LoraCraft.Generation;
using LoraCraft.IO;
using LoraCraft.Lora;
using LoraCraft.Lora.Hub;
using LoraCraft.Models;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;

namespace LoraCraft.Server;

/// <summary>POST /api/v1/lora/get: what to download (as `loracraft lora get` takes it) and under which name.</summary>
public sealed record HubGetRequest(string? UrlOrId = null, string? Name = null, bool? Force = null);

/// <summary>POST /api/v1/lora/fetch-info: the LoRAs to look up on Civitai (null: every file of the folder).</summary>
public sealed record HubFetchInfoRequest(IReadOnlyList<string>? Names = null, bool? Force = null);

/// <summary>
/// The server's one connection to Civitai and Hugging Face: base URLs and tokens from the server's
/// configuration (<see cref="ServerOptions.Hub"/>, tokens also from the environment), never from a request.
/// </summary>
public sealed class HubService(ServerOptions options) : IDisposable
{
    readonly Lazy<HubClient> _client = new(() => new HubClient((options.Hub ?? new HubOptions()).WithEnvironmentTokens()));

    public HubClient Client => _client.Value;

    public void Dispose()
    {
        if (_client.IsValueCreated) _client.Value.Dispose();
    }
}

/// <summary>
/// Getting LoRAs on the server (issue 17), under /api/v1/lora: `get` and `fetch-info` run as jobs
/// on the engine's queue (followed like generations: /api/v1/jobs/{id} and its events, with
/// `download` and `fetch` progress events), `search` answers at once. Files land only in the LoRA
/// folder, under a plain name (no paths), checked and renamed into place by <see cref="HubClient"/>.
/// </summary>
public static class HubRoutes
{
    public static void Map(WebApplication app)
    {
        var api = app.MapGroup("/api/v1/lora");
        api.MapPost("/get", (HubGetRequest body, ServerEngine engine, HubService hub) =>
        {
            var source = body.UrlOrId?.Trim();
            if (string.IsNullOrEmpty(source)) throw new UserErrorException("url_or_id is empty: paste a Civitai or Hugging Face link or id") { Field = "url_or_id" };
            var reference = Field("url_or_id", () => LoraReference.Parse(source, hub.Client.Options));
            if (reference is UrlReference && !engine.Options.HubAllowUrls)
                throw new UserErrorException(ErrorKind.Unsupported,
                    "this server downloads LoRAs from Civitai and Hugging Face only; a plain URL needs the server's permission (serve --allow-url-downloads)") { Field = "url_or_id" };
            var name = string.IsNullOrWhiteSpace(body.Name) ? null : body.Name.Trim();
            if (name is not null && (name.Contains('/') || name.Contains('\\') || name.Contains("..", StringComparison.Ordinal) || name.StartsWith('.') ||
                                     name.IndexOfAny(Path.GetInvalidFileNameChars()) >= 0))
                throw new UserErrorException($"name '{name}' must be a plain file name in the LoRA folder (no path separators, no leading dot, no '..')") { Field = "name" };
            string dir = engine.Loras.Root;
            var job = engine.Queue.Submit("lora-get", new { url_or_id = reference.ToString(), name }, ctx =>
            {
                ctx.Report(new JobPhase(ctx.Id, "download", reference.ToString()));
                var progress = new DownloadReporter(p => ctx.Report(DownloadEvent(ctx.Id, p)));
                var got = hub.Client.GetAsync(reference, dir, name, body.Force == true, progress, ctx.Cancel).GetAwaiter().GetResult();
                foreach (var w in got.Warnings) ctx.Warn(w);
                engine.Loras.Refresh();
                engine.Loras.Forget(got.Path);
                return GetJson(engine, got);
            });
            return Results.Accepted($"/api/v1/jobs/{job.Id}", new { id = job.Id, state = job.State.ToString().ToLowerInvariant(), position = engine.Queue.Pending.Count });
        });
        api.MapPost("/fetch-info", (HubFetchInfoRequest? body, ServerEngine engine, HubService hub) =>
        {
            var files = body?.Names is { } names ? names.Select(n => engine.Loras.Resolve(n)).Distinct().ToList() : engine.Loras.Files.ToList();
            var job = engine.Queue.Submit("lora-fetch-info", new { names = body?.Names, force = body?.Force ?? false }, ctx =>
            {
                int index = 0;
                var progress = new FetchReporter(r => ctx.Report(new ServerEvent(ctx.Id, "fetch", new
                {
                    id = ctx.Id, index = index++, count = files.Count, name = LoraLibrary.NameOf(r.Path), status = Status(r.Status),
                })));
                var results = hub.Client.FetchInfoAsync(files, body?.Force == true, engine.Hashes, progress, ctx.Cancel).GetAwaiter().GetResult();
                engine.Loras.Refresh();
                foreach (var r in results) engine.Loras.Forget(r.Path);
                int Count(FetchInfoStatus s) => results.Count(r => r.Status == s);
                return new
                {
                    found = Count(FetchInfoStatus.Found), not_found = Count(FetchInfoStatus.NotFound), skipped = Count(FetchInfoStatus.Skipped),
                    failed = Count(FetchInfoStatus.Failed),
                    results = results.Select(r => new
                    {
                        name = LoraLibrary.NameOf(r.Path), status = Status(r.Status), version_id = r.VersionId,
                        get_id = r.VersionId is { } v ? $"civitai:{v}" : null, model = r.ModelName, version = r.VersionName, base_model = r.BaseModel,
                        info = r.CivitaiInfoPath is not null, preview = r.PreviewPath is null ? null : PreviewUrl(r.Path), error = r.Error,
                    }).ToList(),
                };
            });
            return Results.Accepted($"/api/v1/jobs/{job.Id}", new { id = job.Id, state = job.State.ToString().ToLowerInvariant(), position = engine.Queue.Pending.Count });
        });
        api.MapGet("/search", async (string? q, string? @base, string? source, int? limit, ServerEngine engine, HubService hub, CancellationToken ct) =>
        {
            if (string.IsNullOrWhiteSpace(q)) throw new UserErrorException("q is empty: give some words to search for") { Field = "q" };
            ModelFamily? family = @base?.ToLowerInvariant() switch
            {
                null or "" or "any" => null,
                "sd1" or "sd15" or "sd1.5" => ModelFamily.Sd1,
                "sd2" => ModelFamily.Sd2,
                "sdxl" => ModelFamily.Sdxl,
                var b => throw new UserErrorException($"base must be sd1, sd2 or sdxl, got '{b}'") { Field = "base" },
            };
            HubSite[] sites = source?.ToLowerInvariant() switch
            {
                null or "" or "all" => [HubSite.Civitai, HubSite.HuggingFace],
                "civitai" => [HubSite.Civitai],
                "hf" or "huggingface" => [HubSite.HuggingFace],
                var s => throw new UserErrorException($"source must be civitai or hf, got '{s}'") { Field = "source" },
            };
            int n = Math.Clamp(limit ?? 20, 1, 100);
            var hits = new List<LoraSearchHit>();
            var errors = new List<string>();
            foreach (var site in sites)
            {
                try { hits.AddRange(await hub.Client.SearchAsync(q, site, family, n, ct)); }
                catch (UserErrorException e) when (sites.Length > 1) { errors.Add($"{site.Id()}: {e.Message}"); }
            }
            if (errors.Count == sites.Length) throw new UserErrorException(string.Join("; ", errors));
            var installed = InstalledSources(engine);
            return Results.Json(new
            {
                results = hits.Select(h => new
                {
                    id = h.Id, site = h.Site.Id(), name = h.Name, version = h.Version, base_model = h.BaseModel, family = h.Family?.Id(),
                    downloads = h.Downloads, page_url = h.PageUrl, installed = installed.GetValueOrDefault(h.Id),
                }),
                errors,
            }, LoraServer.Json);
        });
    }

    /// <summary>`civitai:VERSION` -> LoRA name, for the LoRAs whose info file says where they came from.</summary>
    static Dictionary<string, string> InstalledSources(ServerEngine engine)
    {
        var map = new Dictionary<string, string>(StringComparer.OrdinalIgnoreCase);
        foreach (var file in engine.Loras.Files)
            if (LoraSidecars.Read(file).Civitai?.VersionId is { } v) map.TryAdd($"civitai:{v}", LoraLibrary.NameOf(file));
        return map;
    }

    static object GetJson(ServerEngine engine, LoraDownload got) => new
    {
        name = LoraLibrary.NameOf(got.Path),
        file = Path.GetRelativePath(engine.Loras.Root, got.Path).Replace(Path.DirectorySeparatorChar, '/'),
        site = got.Site.Id(), source = got.Source, size_bytes = got.SizeBytes, sha256 = got.Sha256, already_present = got.AlreadyPresent,
        model_name = got.ModelName, version_name = got.VersionName, base_model = got.BaseModel, trigger_words = got.TriggerWords,
        info = got.CivitaiInfoPath is not null, preview = got.PreviewPath is null ? null : PreviewUrl(got.Path), warnings = got.Warnings,
    };

    static string PreviewUrl(string path) => $"/api/v1/loras/{Uri.EscapeDataString(LoraLibrary.NameOf(path))}/preview";

    static string Status(FetchInfoStatus s) => s switch
    {
        FetchInfoStatus.Found => "found",
        FetchInfoStatus.NotFound => "not_found",
        FetchInfoStatus.Skipped => "skipped",
        _ => "failed",
    };

    /// <summary>A parse error of one request field, named so.</summary>
    static T Field<T>(string field, Func<T> parse)
    {
        try { return parse(); }
        catch (HubException e) { throw new UserErrorException(e.Message) { Field = field }; }
    }

    /// <summary>Bytes of a download so far: SSE event `download` {file, bytes, total, fraction}.</summary>
    static ServerEvent DownloadEvent(string id, DownloadProgress d) => new(id, "download", new
    {
        id, file = d.FileName, bytes = d.BytesReceived, total = d.TotalBytes,
        fraction = d.TotalBytes is > 0 and var t ? Math.Min(1, d.BytesReceived / (double)t) : (double?)null,
    });

    /// <summary>Reports on the calling thread, in order (Progress&lt;T&gt; would post to the thread pool).</summary>
    sealed class DownloadReporter(Action<DownloadProgress> report) : IProgress<DownloadProgress>
    {
        public void Report(DownloadProgress value) => report(value);
    }

    sealed class FetchReporter(Action<FetchInfoResult> report) : IProgress<FetchInfoResult>
    {
        public void Report(FetchInfoResult value) => report(value);
    }

    /// <summary>Registers the hub's service (one HTTP connection pool for the server's life).</summary>
    public static void AddServices(IServiceCollection services) => services.AddSingleton(sp => new HubService(sp.GetRequiredService<ServerOptions>()));
}
