using System.Net;
using System.Text.RegularExpressions;
using LoraCraft.Server;
using LoraCraft.Server.WebUi;
using Xunit;

namespace LoraCraft.Tests.WebUi;

/// <summary>The web UI's files as the server sends them (no browser, no models).</summary>
public sealed class WebUiRoutesTests
{
    static async Task<(HttpClient Http, IAsyncDisposable App, TempDir Dir)> Start()
    {
        var dir = new TempDir();
        var app = LoraServer.Build(new ServerOptions
        {
            Port = 0, CheckpointsDir = dir.File("checkpoints"), LoraDir = dir.File("Lora"), EmbeddingsDir = dir.File("embeddings"),
            OutputsDir = dir.File("outputs"), DataDir = dir.File("user"),
        });
        await app.StartAsync();
        return (new HttpClient { BaseAddress = new Uri(app.Urls.First()) }, app, dir);
    }

    [Fact]
    public async Task TheRootServesThePageWithItsModulesFromTheAssembly()
    {
        var (http, app, dir) = await Start();
        await using (app)
        using (dir)
        using (http)
        {
            var page = await http.GetAsync("/");
            Assert.Equal(HttpStatusCode.OK, page.StatusCode);
            Assert.Equal("text/html", page.Content.Headers.ContentType?.MediaType);
            var html = await page.Content.ReadAsStringAsync();
            Assert.Contains("<script type=\"module\" src=\"/ui/app.js\">", html);
            Assert.Contains("default-src 'self'", page.Headers.GetValues("Content-Security-Policy").Single());

            // every module the page imports is there, and only api.js names the API's URLs
            foreach (var name in new[] { "app.js", "api.js", "generate.js", "loras.js", "loradetails.js", "activeloras.js", "inpaint.js", "pnginfo.js", "compare.js", "history.js", "prompt.js", "ui.js", "train.js", "tools.js" })
                Assert.Contains(name, WebUiRoutes.Names);
            foreach (var name in WebUiRoutes.Names.Where(n => n.EndsWith(".js", StringComparison.Ordinal)))
            {
                var response = await http.GetAsync("/ui/" + name);
                Assert.Equal("text/javascript", response.Content.Headers.ContentType?.MediaType);
                var js = await response.Content.ReadAsStringAsync();
                foreach (Match import in Regex.Matches(js, @"from ""\./([\w.]+)""|import ""\./([\w.]+)"""))
                    Assert.Contains(import.Groups[1].Success ? import.Groups[1].Value : import.Groups[2].Value, WebUiRoutes.Names);
                if (name != "api.js") Assert.DoesNotContain("/api/v1", js);
            }
        }
    }

    [Fact]
    public async Task FilesRevalidateWithTheirETagAndUnknownOnesAre404()
    {
        var (http, app, dir) = await Start();
        await using (app)
        using (dir)
        using (http)
        {
            var first = await http.GetAsync("/ui/app.css");
            var etag = first.Headers.ETag!;
            Assert.Equal("no-cache", first.Headers.CacheControl!.ToString());
            var again = new HttpRequestMessage(HttpMethod.Get, "/ui/app.css");
            again.Headers.IfNoneMatch.Add(etag);
            Assert.Equal(HttpStatusCode.NotModified, (await http.SendAsync(again)).StatusCode);
            Assert.Equal(HttpStatusCode.NotFound, (await http.GetAsync("/ui/nothing.js")).StatusCode);
            Assert.Equal(HttpStatusCode.NotFound, (await http.GetAsync("/ui/../LoraServer.cs")).StatusCode);
            Assert.Equal(HttpStatusCode.OK, (await http.SendAsync(new HttpRequestMessage(HttpMethod.Head, "/"))).StatusCode);
            Assert.Equal("image/svg+xml", (await http.GetAsync("/favicon.ico")).Content.Headers.ContentType?.MediaType);
        }
    }
}
