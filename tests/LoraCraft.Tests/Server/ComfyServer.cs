using System.Net.WebSockets;
using System.Text;
using System.Text.Json.Nodes;
using LoraCraft.Server;
using Microsoft.AspNetCore.Builder;

namespace LoraCraft.Tests.Server;

/// <summary>
/// A real server (Kestrel on 127.0.0.1, a free port) over the tiny fixture SD1.5 model copied
/// into a temp checkpoints folder as `tiny-sd15.safetensors` with its `tiny-sd15.config` folder,
/// the fixture LoRA in a LoRA folder, and temp outputs and user folders. Shared by the ComfyUI
/// tests so the model loads once; each test uses its own seeds, so cached outputs never collide.
/// </summary>
public sealed class ComfyServer : IDisposable
{
    public const string Checkpoint = "tiny-sd15.safetensors";
    public const string LoraName = "sd15-attn.safetensors";

    readonly TempDir _dir = new();
    WebApplication? _app;

    public string Root => _dir.Path;
    public string OutputsDir => _dir.File("outputs");
    public string DataDir => _dir.File("user");
    public string BaseUrl { get; private set; } = "";
    public HttpClient Http { get; } = new() { Timeout = TimeSpan.FromMinutes(2) };
    public ServerEngine Engine { get; private set; } = null!;
    public bool Available { get; }

    public ComfyServer()
    {
        if (FixturePaths.Root is not { } fixtures) return;
        Available = true;
        var checkpoints = Directory.CreateDirectory(_dir.File("checkpoints")).FullName;
        File.Copy(Path.Combine(fixtures, "models", "sd15", "tiny-sd15.safetensors"), Path.Combine(checkpoints, Checkpoint));
        CopyDir(Path.Combine(fixtures, "models", "sd15", "diffusers"), Path.Combine(checkpoints, "tiny-sd15.config"));
        var loras = Directory.CreateDirectory(_dir.File("loras")).FullName;
        File.Copy(Path.Combine(fixtures, "loras", "sd15-attn.safetensors"), Path.Combine(loras, LoraName));
        var options = new ServerOptions
        {
            Host = "127.0.0.1", Port = 0, CheckpointsDir = checkpoints, LoraDir = loras, EmbeddingsDir = _dir.File("embeddings"),
            OutputsDir = OutputsDir, DataDir = DataDir, ComfyFrontendDir = ComfyFrontendFixture,
        };
        _app = LoraServer.Build(options);
        _app.StartAsync().GetAwaiter().GetResult();
        BaseUrl = _app.Urls.First().TrimEnd('/');
        Engine = (ServerEngine)_app.Services.GetService(typeof(ServerEngine))!;
    }

    /// <summary>The built ComfyUI frontend for tests (a third-party GPL-3.0 fixture in ../shared, never copied into the repo).</summary>
    public static string? ComfyFrontendFixture =>
        FixturePaths.Root is { } f && File.Exists(Path.Combine(f, "..", "comfyui-frontend", "index.html")) ? Path.GetFullPath(Path.Combine(f, "..", "comfyui-frontend")) : null;

    public void Require()
    {
        if (!Available) throw new Xunit.SkipException(Conformance.Fixture.MissingMessage);
    }

    static void CopyDir(string from, string to)
    {
        Directory.CreateDirectory(to);
        foreach (var f in Directory.GetFiles(from)) File.Copy(f, Path.Combine(to, Path.GetFileName(f)));
        foreach (var d in Directory.GetDirectories(from)) CopyDir(d, Path.Combine(to, Path.GetFileName(d)));
    }

    public string WsUrl(string path = "/ws") => "ws" + BaseUrl["http".Length..] + path;

    public async Task<(int Status, JsonNode? Body)> PostJson(string path, JsonNode body)
    {
        using var response = await Http.PostAsync(BaseUrl + path, new StringContent(body.ToJsonString(), Encoding.UTF8, "application/json"));
        var text = await response.Content.ReadAsStringAsync();
        return ((int)response.StatusCode, text.Length == 0 ? null : JsonNode.Parse(text));
    }

    public async Task<JsonNode?> GetJson(string path)
    {
        var text = await Http.GetStringAsync(BaseUrl + path);
        return JsonNode.Parse(text);
    }

    public void Dispose()
    {
        if (_app is not null)
        {
            _app.StopAsync().GetAwaiter().GetResult();
            ((IDisposable)_app).Dispose();
            Engine.Dispose();
        }
        Http.Dispose();
        _dir.Dispose();
    }
}

[Xunit.CollectionDefinition(Name)]
public sealed class ComfyServerCollection : Xunit.ICollectionFixture<ComfyServer>
{
    public const string Name = "comfy server";
}

/// <summary>A ComfyUI client on a real WebSocket: what it receives, text messages parsed, binary frames kept.</summary>
public sealed class ComfySocket : IAsyncDisposable
{
    readonly ClientWebSocket _ws = new();
    readonly List<JsonObject> _messages = new();
    readonly List<byte[]> _binary = new();
    readonly List<object> _all = new();
    readonly SemaphoreSlim _signal = new(0);
    Task? _reader;

    public string ClientId { get; private set; } = "";
    public IReadOnlyList<JsonObject> Messages { get { lock (_all) return _messages.ToList(); } }
    public IReadOnlyList<byte[]> Binary { get { lock (_all) return _binary.ToList(); } }
    /// <summary>Everything in arrival order: JsonObject for text, byte[] for binary.</summary>
    public IReadOnlyList<object> All { get { lock (_all) return _all.ToList(); } }

    public static async Task<ComfySocket> Connect(ComfyServer server, string? clientId = null, bool previewMetadata = false, string path = "/ws")
    {
        var s = new ComfySocket();
        var url = server.WsUrl(path) + (clientId is null ? "" : "?clientId=" + clientId);
        await s._ws.ConnectAsync(new Uri(url), CancellationToken.None);
        s._reader = Task.Run(s.Read);
        var status = await s.WaitFor(m => (string?)m["type"] == "status");
        s.ClientId = (string)status["data"]!["sid"]!;
        if (previewMetadata)
        {
            var flags = new JsonObject { ["type"] = "feature_flags", ["data"] = new JsonObject { ["supports_preview_metadata"] = true } };
            await s._ws.SendAsync(Encoding.UTF8.GetBytes(flags.ToJsonString()), WebSocketMessageType.Text, true, CancellationToken.None);
            await s.WaitFor(m => (string?)m["type"] == "feature_flags");
        }
        return s;
    }

    async Task Read()
    {
        var buffer = new byte[1 << 16];
        var message = new MemoryStream();
        try
        {
            while (_ws.State == WebSocketState.Open)
            {
                var r = await _ws.ReceiveAsync(buffer, CancellationToken.None);
                if (r.MessageType == WebSocketMessageType.Close) return;
                message.Write(buffer, 0, r.Count);
                if (!r.EndOfMessage) continue;
                lock (_all)
                {
                    if (r.MessageType == WebSocketMessageType.Text)
                    {
                        var json = (JsonObject)JsonNode.Parse(message.ToArray())!;
                        _messages.Add(json);
                        _all.Add(json);
                    }
                    else
                    {
                        var bytes = message.ToArray();
                        _binary.Add(bytes);
                        _all.Add(bytes);
                    }
                }
                message.SetLength(0);
                _signal.Release();
            }
        }
        catch (WebSocketException) { }
    }

    /// <summary>The first message (from the start) matching <paramref name="match"/>, waiting for it up to <paramref name="seconds"/>.</summary>
    public async Task<JsonObject> WaitFor(Func<JsonObject, bool> match, double seconds = 120)
    {
        var deadline = DateTime.UtcNow.AddSeconds(seconds);
        while (true)
        {
            if (Messages.FirstOrDefault(match) is { } m) return m;
            var left = deadline - DateTime.UtcNow;
            if (left <= TimeSpan.Zero) throw new TimeoutException("no such message; got: " + string.Join(", ", Messages.Select(x => x["type"])));
            await _signal.WaitAsync(left < TimeSpan.FromSeconds(1) ? left : TimeSpan.FromSeconds(1));
        }
    }

    /// <summary>Waits for `executing` with node null for the prompt: the end of its run.</summary>
    public Task<JsonObject> WaitDone(string promptId, double seconds = 120) =>
        WaitFor(m => (string?)m["type"] == "executing" && m["data"]!["node"] is null && (string?)m["data"]!["prompt_id"] == promptId, seconds);

    /// <summary>The messages of one prompt, in order (binary frames as "binary").</summary>
    public List<(string Type, JsonObject? Data)> Of(string promptId) =>
        All.Select(o => o is JsonObject j ? ((string)j["type"]!, j["data"] as JsonObject) : ("binary", null))
            .Where(x => x.Item1 == "binary" || (string?)x.Item2?["prompt_id"] == promptId).ToList();

    public async ValueTask DisposeAsync()
    {
        try { await _ws.CloseAsync(WebSocketCloseStatus.NormalClosure, null, CancellationToken.None); }
        catch (Exception e) when (e is WebSocketException or InvalidOperationException) { }
        if (_reader is not null) await _reader;
        _ws.Dispose();
    }
}
