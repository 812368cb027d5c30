using System.Net.Http.Json;
using System.Text.Json;
using LoraCraft.Server;
using Microsoft.AspNetCore.Builder;
using Microsoft.Playwright;
using SkiaSharp;
using Xunit;

namespace LoraCraft.Tests.WebUi;

/// <summary>
/// One real `serve` (Kestrel on a loopback port) over a temp folder laid out as a user's: the
/// fixture SD1.5 and SDXL checkpoints with their configs as NAME.config, the fixture LoRAs in
/// sub-folders; and one headless Debian chromium driven by Playwright. Shared by the browser tests.
/// Without the fixtures the tests skip; without chromium they FAIL (CI installs it).
/// </summary>
public sealed class WebUiServer : IAsyncLifetime
{
    public const string Chromium = "/usr/bin/chromium";
    static readonly string[] ChromiumArgs =
    [
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync",
    ];

    readonly TempDir _dir = new();
    WebApplication? _app;
    IPlaywright? _playwright;

    public string? SkipReason { get; private set; }
    public string Url { get; private set; } = "";
    public string LoraDir => Path.Combine(_dir.Path, "Lora");
    public string OutputsDir => Path.Combine(_dir.Path, "outputs");
    public IBrowser Browser { get; private set; } = null!;
    public HttpClient Http { get; } = new();
    public string FixturesRoot { get; private set; } = "";

    /// <summary>Where screenshots go: TestResults/webui at the top of the checkout.</summary>
    public static string ShotsDir { get; } = Path.Combine(RepoRoot(), "TestResults", "webui");

    public async Task InitializeAsync()
    {
        if (FixturePaths.Root is not { } fixtures)
        {
            SkipReason = Conformance.Fixture.MissingMessage;
            return;
        }
        FixturesRoot = fixtures;
        if (!File.Exists(Chromium) && Environment.GetEnvironmentVariable("LORACRAFT_SKIP_BROWSER_TESTS") != "1")
            throw new InvalidOperationException($"the web UI tests need Debian's chromium at {Chromium}: apt-get install -y chromium (.ci/run does), " +
                                                "or set LORACRAFT_SKIP_BROWSER_TESTS=1 to skip them on purpose");
        if (!File.Exists(Chromium))
        {
            SkipReason = "LORACRAFT_SKIP_BROWSER_TESTS=1 and no chromium: browser tests skipped on purpose";
            return;
        }
        var checkpoints = Path.Combine(_dir.Path, "checkpoints");
        foreach (var kind in new[] { "sd15", "sdxl" })
        {
            var model = Path.Combine(checkpoints, $"tiny-{kind}.safetensors");
            Copy(Path.Combine(fixtures, "models", kind, $"tiny-{kind}.safetensors"), model);
            CopyDir(Path.Combine(fixtures, "models", kind, "diffusers"), Path.ChangeExtension(model, ".config"));
        }
        Copy(Path.Combine(fixtures, "loras", "sd15-attn.safetensors"), Path.Combine(LoraDir, "sd15-attn.safetensors"));
        Copy(Path.Combine(fixtures, "loras", "sd15-locon.safetensors"), Path.Combine(LoraDir, "styles", "sd15-locon.safetensors"));
        Copy(Path.Combine(fixtures, "loras", "sdxl-attn.safetensors"), Path.Combine(LoraDir, "xl", "sdxl-attn.safetensors"));
        File.WriteAllBytes(Path.Combine(LoraDir, "sd15-attn.preview.png"), SolidPng(64, new SKColor(40, 120, 200)));

        _app = LoraServer.Build(new ServerOptions
        {
            Port = 0, CheckpointsDir = checkpoints, LoraDir = LoraDir, EmbeddingsDir = Path.Combine(_dir.Path, "embeddings"),
            OutputsDir = OutputsDir, DataDir = Path.Combine(_dir.Path, "user"),
        });
        await _app.StartAsync();
        Url = _app.Urls.First();
        Http.BaseAddress = new Uri(Url);

        Directory.CreateDirectory(ShotsDir);
        foreach (var stale in Directory.EnumerateFiles(ShotsDir, "FAILED-*.png")) File.Delete(stale);
        _playwright = await Playwright.CreateAsync();
        Browser = await _playwright.Chromium.LaunchAsync(new BrowserTypeLaunchOptions
        {
            ExecutablePath = Chromium, Headless = true, Args = ChromiumArgs, Timeout = 60_000,
        });
    }

    public void Require()
    {
        if (SkipReason is not null) throw new SkipException(SkipReason);
    }

    /// <summary>A fresh page (own context) at the UI, ready (lists loaded), collecting console errors.</summary>
    public async Task<UiPage> OpenAsync(string test, int width = 1280, int height = 800, string hash = "")
    {
        var context = await Browser.NewContextAsync(new BrowserNewContextOptions { ViewportSize = new ViewportSize { Width = width, Height = height } });
        context.SetDefaultTimeout(30_000);
        var page = await context.NewPageAsync();
        var ui = new UiPage(test, context, page);
        await page.GotoAsync(Url + hash);
        await page.Locator("body[data-ready=true]").WaitForAsync();
        return ui;
    }

    /// <summary>Generates through the API (no browser): the PNG of image 0.</summary>
    public async Task<byte[]> GenerateAsync(object request)
    {
        var submitted = await Http.PostAsJsonAsync("/api/v1/generate", request);
        submitted.EnsureSuccessStatusCode();
        var id = (await submitted.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("id").GetString();
        for (var until = DateTime.UtcNow.AddMinutes(2); DateTime.UtcNow < until; await Task.Delay(100))
        {
            var status = await Http.GetFromJsonAsync<JsonElement>($"/api/v1/jobs/{id}");
            var state = status.GetProperty("state").GetString();
            if (state == "completed") return await Http.GetByteArrayAsync($"/api/v1/jobs/{id}/images/0");
            if (state is "failed" or "cancelled") throw new InvalidOperationException($"job {state}: {status}");
        }
        throw new TimeoutException("the job did not finish");
    }

    public async Task DisposeAsync()
    {
        if (Browser is not null) await Browser.DisposeAsync();
        _playwright?.Dispose();
        if (_app is not null) await _app.DisposeAsync();
        Http.Dispose();
        _dir.Dispose();
    }

    /// <summary>RGBA pixels of a PNG (or any image SkiaSharp reads).</summary>
    public static (int Width, int Height, byte[] Rgba) Pixels(byte[] png)
    {
        using var bitmap = SKBitmap.Decode(png) ?? throw new InvalidOperationException("not an image");
        using var rgba = bitmap.Copy(SKColorType.Rgba8888);
        return (rgba.Width, rgba.Height, rgba.GetPixelSpan().ToArray());
    }

    static byte[] SolidPng(int size, SKColor color)
    {
        using var bitmap = new SKBitmap(size, size);
        bitmap.Erase(color);
        using var data = bitmap.Encode(SKEncodedImageFormat.Png, 100);
        return data.ToArray();
    }

    static void Copy(string from, string to)
    {
        Directory.CreateDirectory(Path.GetDirectoryName(to)!);
        File.Copy(from, to);
    }

    static void CopyDir(string from, string to)
    {
        foreach (var file in Directory.EnumerateFiles(from, "*.*", SearchOption.AllDirectories))
            Copy(file, Path.Combine(to, Path.GetRelativePath(from, file)));
    }

    static string RepoRoot() => FixturePaths.RepoRoot() ?? Path.GetTempPath();
}

[CollectionDefinition("webui")]
public sealed class WebUiCollection : ICollectionFixture<WebUiServer>;

/// <summary>A page of one test: console errors and page errors are collected; screenshots are named after the test.</summary>
public sealed class UiPage(string test, IBrowserContext context, IPage page) : IAsyncDisposable
{
    public IPage Page { get; } = page;
    public List<string> Errors { get; } = Attach(page);

    static List<string> Attach(IPage page)
    {
        var errors = new List<string>();
        page.Console += (_, m) => { if (m.Type == "error") lock (errors) errors.Add("console: " + m.Text); };
        page.PageError += (_, e) => { lock (errors) errors.Add("page error: " + e); };
        return errors;
    }

    public ILocator this[string selector] => Page.Locator(selector);

    public async Task ShotAsync(string name, bool fullPage = false) =>
        await Page.ScreenshotAsync(new PageScreenshotOptions { Path = Path.Combine(WebUiServer.ShotsDir, name + ".png"), FullPage = fullPage });

    /// <summary>Runs the steps; a failing step leaves TestResults/webui/FAILED-TEST.png behind. Ends with no console errors.</summary>
    public async Task RunAsync(Func<Task> steps)
    {
        try
        {
            await steps();
            lock (Errors) Assert.True(Errors.Count == 0, "the page logged errors:\n" + string.Join("\n", Errors));
        }
        catch
        {
            try { await ShotAsync("FAILED-" + test, fullPage: true); } catch (PlaywrightException) { }
            throw;
        }
    }

    public async ValueTask DisposeAsync() => await context.DisposeAsync();
}
