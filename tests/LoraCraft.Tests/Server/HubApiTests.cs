using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using LoraCraft.Server;
using LoraCraft.Tests.Lora.Hub;
using Microsoft.AspNetCore.Builder;
using Xunit;

namespace LoraCraft.Tests.Server;

/// <summary>
/// Getting LoRAs through the native API (/api/v1/lora/get, fetch-info, search) from fake Civitai,
/// CDN and Hugging Face servers on 127.0.0.1: jobs with download progress, files only in the LoRA
/// folder, refusals that leave nothing behind, the server's token never in an answer. No models needed.
/// </summary>
public sealed class HubApiTests : IAsyncLifetime
{
    readonly FakeHub _hub = new();
    readonly TempDir _dir = new();
    readonly CancellationTokenSource _timeout = new(TimeSpan.FromSeconds(90));
    WebApplication _app = null!;
    HttpClient _http = null!;

    string LoraDir => _dir.File("Lora");

    public Task InitializeAsync() => Start(allowUrls: false);

    async Task Start(bool allowUrls)
    {
        Directory.CreateDirectory(_dir.File("checkpoints"));
        Directory.CreateDirectory(LoraDir);
        _app = LoraServer.Build(new ServerOptions
        {
            Port = 0, CheckpointsDir = _dir.File("checkpoints"), LoraDir = LoraDir, EmbeddingsDir = _dir.File("embeddings"),
            OutputsDir = _dir.File("outputs"), DataDir = _dir.File("user"), Hub = _hub.Options, HubAllowUrls = allowUrls,
        });
        await _app.StartAsync();
        _http = new HttpClient { BaseAddress = new Uri(LoraServer.Address(_app)), Timeout = TimeSpan.FromSeconds(60) };
    }

    string[] Entries() => Directory.EnumerateFileSystemEntries(LoraDir).Select(Path.GetFileName).Order(StringComparer.Ordinal).ToArray()!;

    async Task<(HttpStatusCode Status, JsonElement Body)> Post(string path, object body)
    {
        using var response = await _http.PostAsJsonAsync(path, body, _timeout.Token);
        var text = await response.Content.ReadAsStringAsync(_timeout.Token);
        Assert.DoesNotContain(HubFixtures.Token, text);
        return (response.StatusCode, JsonDocument.Parse(text).RootElement.Clone());
    }

    /// <summary>Every SSE event of a job, in order, until it ends.</summary>
    async Task<List<(string Type, JsonElement Data)>> Events(string id)
    {
        var text = await _http.GetStringAsync($"/api/v1/jobs/{id}/events", _timeout.Token);
        Assert.DoesNotContain(HubFixtures.Token, text);
        Assert.DoesNotContain("secret-signature", text);
        var events = new List<(string, JsonElement)>();
        foreach (var block in text.Split("\n\n", StringSplitOptions.RemoveEmptyEntries))
        {
            var lines = block.Split('\n');
            string type = lines.Single(l => l.StartsWith("event: ", StringComparison.Ordinal))[7..];
            var data = lines.Single(l => l.StartsWith("data: ", StringComparison.Ordinal))[6..];
            events.Add((type, JsonDocument.Parse(data).RootElement.Clone()));
        }
        return events;
    }

    async Task<(string Type, JsonElement Data, List<(string Type, JsonElement Data)> All)> RunJob(string path, object body)
    {
        var (status, submitted) = await Post(path, body);
        Assert.True(status == HttpStatusCode.Accepted, submitted.ToString());
        var events = await Events(submitted.GetProperty("id").GetString()!);
        return (events[^1].Type, events[^1].Data, events);
    }

    [Fact]
    public async Task APastedCivitaiIdIsDownloadedWithProgressAndTheLoraListsItsTriggersAndPreview()
    {
        var file = HubFixtures.Lora;
        _hub.ServeVersion(file);

        var (type, data, events) = await RunJob("/api/v1/lora/get", new { url_or_id = $"{_hub.Civitai.Url}/models/7?modelVersionId=11" });

        Assert.True(type == "completed", data.ToString());
        var downloads = events.Where(e => e.Type == "download").Select(e => e.Data).ToList();
        Assert.NotEmpty(downloads);
        Assert.Equal(file.Length, downloads[^1].GetProperty("bytes").GetInt64());
        Assert.Equal(1.0, downloads[^1].GetProperty("fraction").GetDouble());
        Assert.Equal("cloudStyle_v10.safetensors", downloads[^1].GetProperty("file").GetString());
        var result = data.GetProperty("result");
        Assert.Equal("cloudStyle_v10", result.GetProperty("name").GetString());
        Assert.Equal(HubFixtures.Sha256(file), result.GetProperty("sha256").GetString());
        Assert.Equal(["zzcloud style", "fluffy"], result.GetProperty("trigger_words").EnumerateArray().Select(w => w.GetString()));
        Assert.Equal("/api/v1/loras/cloudStyle_v10/preview", result.GetProperty("preview").GetString());
        Assert.Equal(["cloudStyle_v10.civitai.info", "cloudStyle_v10.preview.png", "cloudStyle_v10.safetensors"], Entries());

        // the LoRA list has it at once (no refresh), with what its card shows
        var listed = (await _http.GetFromJsonAsync<JsonElement>("/api/v1/loras", _timeout.Token)).EnumerateArray().Single(l => l.GetProperty("name").GetString() == "cloudStyle_v10");
        Assert.Equal(["zzcloud style", "fluffy"], listed.GetProperty("triggers").EnumerateArray().Select(w => w.GetString()));
        Assert.Equal("SD 1.5", listed.GetProperty("base_model").GetString());
        Assert.Equal(11, listed.GetProperty("civitai").GetProperty("version_id").GetInt64());
        var preview = await _http.GetByteArrayAsync(listed.GetProperty("preview").GetString(), _timeout.Token);
        Assert.Equal(new byte[] { 137, 80, 78, 71 }, preview[..4]);

        // the server's token went to Civitai as a header, and never to the CDN
        Assert.All(_hub.Civitai.Requests, r => Assert.Equal("Bearer " + HubFixtures.Token, r.Authorization));
        Assert.All(_hub.Cdn.Requests, r => Assert.Null(r.Authorization));
        Assert.All(_hub.Civitai.Requests.Concat(_hub.Cdn.Requests), r => Assert.DoesNotContain(HubFixtures.Token, r.Url));

        // a second get finds the same file in place; under another name it is a second copy
        (type, data, _) = await RunJob("/api/v1/lora/get", new { url_or_id = "civitai:11" });
        Assert.True(data.GetProperty("result").GetProperty("already_present").GetBoolean());
        (type, data, _) = await RunJob("/api/v1/lora/get", new { url_or_id = "civitai:11", name = "clouds" });
        Assert.Equal("clouds", data.GetProperty("result").GetProperty("name").GetString());
        Assert.Contains("clouds.safetensors", Entries());
    }

    [Fact]
    public async Task RefusalsSayWhyAndLeaveNothingInTheFolder()
    {
        var file = HubFixtures.Lora;
        // names are plain file names inside the LoRA folder
        _hub.ServeVersion(file);
        foreach (var name in new[] { "../outside", "sub/dir", ".hidden", "a\\b" })
        {
            var (code, error) = await Post("/api/v1/lora/get", new { url_or_id = "civitai:11", name });
            Assert.Equal(HttpStatusCode.BadRequest, code);
            Assert.Equal("name", error.GetProperty("error").GetProperty("field").GetString());
            Assert.Contains("plain file name", error.GetProperty("error").GetProperty("message").GetString());
        }
        Assert.Empty(_hub.Civitai.Requests);
        Assert.Empty(Entries());
        Assert.False(File.Exists(_dir.File("outside.safetensors")));

        // nothing to parse: 400 with the field, before any job
        var (status, body) = await Post("/api/v1/lora/get", new { url_or_id = "  " });
        Assert.Equal(HttpStatusCode.BadRequest, status);
        Assert.Equal("url_or_id", body.GetProperty("error").GetProperty("field").GetString());
        (status, body) = await Post("/api/v1/lora/get", new { url_or_id = "civitai:abc" });
        Assert.Equal(HttpStatusCode.BadRequest, status);

        // a plain URL: only when the server allows it
        (status, body) = await Post("/api/v1/lora/get", new { url_or_id = $"{_hub.Cdn.Url}/files/cloud.safetensors" });
        Assert.Equal(HttpStatusCode.UnprocessableEntity, status);
        Assert.Contains("Civitai and Hugging Face only", body.GetProperty("error").GetProperty("message").GetString());

        // a pickle: refused before any download
        _hub.ServeVersion(file, fileName: "cloudStyle.ckpt", format: "PickleTensor");
        var (t, d, _) = await RunJob("/api/v1/lora/get", new { url_or_id = "civitai:11" });
        Assert.Equal("failed", t);
        Assert.Contains("pickle", d.GetProperty("message").GetString());
        Assert.Empty(_hub.Cdn.RequestsTo("/files/cloud.safetensors"));

        // a file whose hash is not the one Civitai publishes: downloaded, refused, removed
        _hub.ServeVersion(file, sha256: new string('b', 64));
        (t, d, _) = await RunJob("/api/v1/lora/get", new { url_or_id = "civitai:11" });
        Assert.Equal("failed", t);
        Assert.Contains("SHA-256 mismatch", d.GetProperty("message").GetString());
        Assert.Empty(Entries());
        Assert.NotEmpty(_hub.Cdn.RequestsTo("/files/cloud.safetensors"));
    }

    [Fact]
    public async Task APlainUrlDownloadsWhenTheServerAllowsIt()
    {
        await DisposeServer();
        await Start(allowUrls: true);
        _hub.Cdn.File("/files/plain.safetensors", HubFixtures.Lora);
        var (type, data, _) = await RunJob("/api/v1/lora/get", new { url_or_id = $"{_hub.Cdn.Url}/files/plain.safetensors" });
        Assert.True(type == "completed", data.ToString());
        Assert.Equal(["plain.safetensors"], Entries());
    }

    [Fact]
    public async Task FetchInfoFindsTheFolderFilesByHashAndWritesTheirSidecars()
    {
        var file = HubFixtures.Lora;
        File.WriteAllBytes(Path.Combine(LoraDir, "mystery.safetensors"), file);
        var other = file.ToArray();
        other[^1] ^= 1; // another file: Civitai does not know it
        File.WriteAllBytes(Path.Combine(LoraDir, "unknown.safetensors"), other);
        _hub.ServeByHash(file, "cloudStyle_v10.safetensors");

        var (type, data, events) = await RunJob("/api/v1/lora/fetch-info", new { });
        Assert.True(type == "completed", data.ToString());
        var result = data.GetProperty("result");
        Assert.Equal((1, 1, 0, 0), (result.GetProperty("found").GetInt32(), result.GetProperty("not_found").GetInt32(),
                                    result.GetProperty("skipped").GetInt32(), result.GetProperty("failed").GetInt32()));
        Assert.Equal(2, events.Count(e => e.Type == "fetch"));
        var found = result.GetProperty("results").EnumerateArray().Single(r => r.GetProperty("name").GetString() == "mystery");
        Assert.Equal(("found", "civitai:11"), (found.GetProperty("status").GetString(), found.GetProperty("get_id").GetString()));
        Assert.Contains("mystery.civitai.info", Entries());
        Assert.Contains("mystery.preview.png", Entries());
        var listed = (await _http.GetFromJsonAsync<JsonElement>("/api/v1/loras/mystery", _timeout.Token));
        Assert.Equal(["zzcloud style", "fluffy"], listed.GetProperty("triggers").EnumerateArray().Select(w => w.GetString()));

        // one card's fetch: a second run skips what has its info, unless forced
        (type, data, _) = await RunJob("/api/v1/lora/fetch-info", new { names = new[] { "mystery" } });
        Assert.Equal("skipped", data.GetProperty("result").GetProperty("results")[0].GetProperty("status").GetString());
        (type, data, _) = await RunJob("/api/v1/lora/fetch-info", new { names = new[] { "mystery" }, force = true });
        Assert.Equal("found", data.GetProperty("result").GetProperty("results")[0].GetProperty("status").GetString());
        var (status, _) = await Post("/api/v1/lora/fetch-info", new { names = new[] { "nope" } });
        Assert.Equal(HttpStatusCode.NotFound, status);
    }

    [Fact]
    public async Task SearchGivesIdsForGetFromBothSitesAndMarksWhatIsInstalled()
    {
        _hub.ServeSearch();
        var all = await _http.GetFromJsonAsync<JsonElement>("/api/v1/lora/search?q=cloud%20style", _timeout.Token);
        Assert.Equal(["civitai:11", "hf:someone/cloud-lora"], all.GetProperty("results").EnumerateArray().Select(r => r.GetProperty("id").GetString()));
        var first = all.GetProperty("results")[0];
        Assert.Equal(("Cloud Style", "sd1", 1234L), (first.GetProperty("name").GetString(), first.GetProperty("family").GetString(), first.GetProperty("downloads").GetInt64()));
        Assert.Equal(JsonValueKind.Null, first.GetProperty("installed").ValueKind);

        var civitai = await _http.GetFromJsonAsync<JsonElement>("/api/v1/lora/search?q=cloud&base=sd1&source=civitai", _timeout.Token);
        Assert.Single(civitai.GetProperty("results").EnumerateArray());
        Assert.Contains("baseModels=SD%201.5", _hub.Civitai.Requests[^1].Url);

        // after a get the hit says under which name it is installed
        _hub.ServeVersion(HubFixtures.Lora);
        await RunJob("/api/v1/lora/get", new { url_or_id = "civitai:11" });
        civitai = await _http.GetFromJsonAsync<JsonElement>("/api/v1/lora/search?q=cloud&source=civitai", _timeout.Token);
        Assert.Equal("cloudStyle_v10", civitai.GetProperty("results")[0].GetProperty("installed").GetString());

        using var bad = await _http.GetAsync("/api/v1/lora/search?q=x&base=flux", _timeout.Token);
        Assert.Equal(HttpStatusCode.BadRequest, bad.StatusCode);
        using var empty = await _http.GetAsync("/api/v1/lora/search?q=", _timeout.Token);
        Assert.Equal(HttpStatusCode.BadRequest, empty.StatusCode);
    }

    async Task DisposeServer()
    {
        _http.Dispose();
        var engine = (ServerEngine)_app.Services.GetService(typeof(ServerEngine))!;
        await _app.StopAsync();
        await _app.DisposeAsync();
        engine.Dispose();
    }

    public async Task DisposeAsync()
    {
        await DisposeServer();
        _hub.Dispose();
        _dir.Dispose();
        _timeout.Dispose();
    }
}
