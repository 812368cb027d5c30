using System.Net.Http.Json;
using System.Text.Json;
using LoraCraft.Server;
using LoraCraft.Tests.Conformance;
using Microsoft.AspNetCore.Builder;
using static TorchSharp.torch;

namespace LoraCraft.Tests.Server;

/// <summary>
/// A real server (Kestrel on 127.0.0.1, a free port) over temp folders holding copies of the tiny
/// fixture checkpoints (each with its config folder as NAME.config) and LoRAs, in float32 so its
/// numbers are the reference's. Shared by the tests of one class; everything is removed at the end.
/// </summary>
public sealed class ServerFixture : IAsyncDisposable, IDisposable
{
    readonly WebApplication? _app;
    readonly HttpClient? _http;
    readonly ServerEngine? _engine;

    public TempDir Dir { get; } = new();
    public WebApplication App => _app ?? throw new Xunit.SkipException(Fixture.MissingMessage);
    public HttpClient Http => _http ?? throw new Xunit.SkipException(Fixture.MissingMessage);
    public string BaseUrl { get; } = "";
    public ServerEngine Engine => _engine ?? throw new Xunit.SkipException(Fixture.MissingMessage);
    public string CheckpointsDir => Dir.File("checkpoints");
    public string LoraDir => Dir.File("Lora");
    public string OutputsDir => Dir.File("outputs");

    public ServerFixture() : this(o => o) { }

    internal ServerFixture(Func<ServerOptions, ServerOptions> adjust, bool sdxl = false)
    {
        // without the fixtures every test using the server skips, saying so
        if (Fixture.Instance is not { } f) return;
        Directory.CreateDirectory(CheckpointsDir);
        Directory.CreateDirectory(LoraDir);
        AddCheckpoint(f, "sd15");
        AddCheckpoint(f, "sd15-inpaint");
        if (sdxl) AddCheckpoint(f, "sdxl");
        foreach (var lora in new[] { "sd15-attn", "sd15-locon", "sdxl-attn" })
            File.Copy(Path.Combine(f.Root, "loras", lora + ".safetensors"), Path.Combine(LoraDir, lora + ".safetensors"));
        var options = adjust(new ServerOptions
        {
            Host = "127.0.0.1", Port = 0, CheckpointsDir = CheckpointsDir, LoraDir = LoraDir, OutputsDir = OutputsDir,
            EmbeddingsDir = Dir.File("embeddings"), DataDir = Dir.File("user"), DType = ScalarType.Float32,
        });
        _app = LoraServer.Build(options);
        _app.StartAsync().GetAwaiter().GetResult();
        BaseUrl = LoraServer.Address(_app);
        _engine = (ServerEngine)_app.Services.GetService(typeof(ServerEngine))!;
        _http = new HttpClient { BaseAddress = new Uri(BaseUrl), Timeout = TimeSpan.FromMinutes(5) };
    }

    void AddCheckpoint(Fixture f, string kind)
    {
        File.Copy(f.ModelFile(kind), Path.Combine(CheckpointsDir, $"tiny-{kind}.safetensors"));
        CopyDir(f.DiffusersDir(kind), Path.Combine(CheckpointsDir, $"tiny-{kind}.config"));
    }

    static void CopyDir(string from, string to)
    {
        Directory.CreateDirectory(to);
        foreach (var file in Directory.EnumerateFiles(from, "*.*", SearchOption.AllDirectories))
        {
            var target = Path.Combine(to, Path.GetRelativePath(from, file));
            Directory.CreateDirectory(Path.GetDirectoryName(target)!);
            // the weights are not needed beside a single file: configs and tokenizers are
            if (file.EndsWith(".safetensors", StringComparison.Ordinal)) continue;
            File.Copy(file, target);
        }
    }

    public async Task<JsonElement> PostJson(string path, object body)
    {
        using var response = await Http.PostAsJsonAsync(path, body);
        var text = await response.Content.ReadAsStringAsync();
        if (!response.IsSuccessStatusCode) throw new HttpRequestException($"{(int)response.StatusCode} {path}: {text}", null, response.StatusCode);
        return JsonDocument.Parse(text).RootElement.Clone();
    }

    public async Task<JsonElement> GetJson(string path)
    {
        using var response = await Http.GetAsync(path);
        var text = await response.Content.ReadAsStringAsync();
        if (!response.IsSuccessStatusCode) throw new HttpRequestException($"{(int)response.StatusCode} {path}: {text}", null, response.StatusCode);
        return JsonDocument.Parse(text).RootElement.Clone();
    }

    public async ValueTask DisposeAsync()
    {
        _http?.Dispose();
        if (_app is not null)
        {
            await _app.StopAsync();
            await _app.DisposeAsync();
        }
        _engine?.Dispose();
        Dir.Dispose();
    }

    public void Dispose() => DisposeAsync().AsTask().GetAwaiter().GetResult();
}
