using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using LoraCraft.Server;
using Xunit;

namespace LoraCraft.Tests.Server;

/// <summary>A server that asks for credentials, limits its queue and bodies, and keeps names inside their folders.</summary>
public sealed class GuardedServer() : IDisposable
{
    public ServerFixture Server { get; } = new(o => o with
    {
        Auth = [("alice", "s3cret"), ("bob", "hunter2")], QueueLimit = 1, MaxBodyBytes = 1 << 20, MaxImageSide = 256,
    });

    public void Dispose() => Server.Dispose();
}

public sealed class ServerSecurityTests(GuardedServer guarded) : IClassFixture<GuardedServer>
{
    ServerFixture S => guarded.Server;

    HttpClient Client(string? user, string? password)
    {
        var c = new HttpClient { BaseAddress = new Uri(S.BaseUrl), Timeout = TimeSpan.FromMinutes(5) };
        if (user is not null)
            c.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Basic", Convert.ToBase64String(Encoding.UTF8.GetBytes($"{user}:{password}")));
        return c;
    }

    [SkippableTheory]
    [InlineData("/api/v1/models")]
    [InlineData("/sdapi/v1/sd-models")]
    [InlineData("/sdapi/v1/progress")]
    [InlineData("/openapi/v1.json")]
    public async Task EveryRouteNeedsCredentials(string route)
    {
        using var none = Client(null, null);
        using var r1 = await none.GetAsync(route);
        Assert.Equal(HttpStatusCode.Unauthorized, r1.StatusCode);
        Assert.Contains("Basic", r1.Headers.WwwAuthenticate.ToString());
        using var wrong = Client("alice", "s3cre");
        Assert.Equal(HttpStatusCode.Unauthorized, (await wrong.GetAsync(route)).StatusCode);
        using var swapped = Client("bob", "s3cret");
        Assert.Equal(HttpStatusCode.Unauthorized, (await swapped.GetAsync(route)).StatusCode);
        foreach (var (u, p) in new[] { ("alice", "s3cret"), ("bob", "hunter2") })
        {
            using var right = Client(u, p);
            using var ok = await right.GetAsync(route);
            Assert.Equal(HttpStatusCode.OK, ok.StatusCode);
        }
    }

    [SkippableTheory]
    [InlineData("../tiny-sd15")]
    [InlineData("/etc/passwd")]
    [InlineData("sub/../../x")]
    public async Task CheckpointNamesCannotLeaveTheirFolder(string name)
    {
        using var c = Client("alice", "s3cret");
        using var r = await c.PostAsJsonAsync("/sdapi/v1/options", new { sd_model_checkpoint = name });
        Assert.Equal(HttpStatusCode.BadRequest, r.StatusCode);
        using var n = await c.PostAsJsonAsync("/api/v1/generate", new { prompt = "x", model = name, steps = 1, width = 64, height = 64 });
        Assert.Equal(HttpStatusCode.BadRequest, n.StatusCode);
    }

    [SkippableTheory]
    [InlineData("<lora:../Lora/sd15-attn:1>")]
    [InlineData("<lora:/etc/passwd:1>")]
    public async Task LoraNamesCannotLeaveTheirFolder(string tag)
    {
        using var c = Client("alice", "s3cret");
        using var r = await c.PostAsJsonAsync("/sdapi/v1/txt2img", new { prompt = "x " + tag, steps = 1, width = 64, height = 64 });
        Assert.Equal(HttpStatusCode.BadRequest, r.StatusCode);
        using var n = await c.PostAsJsonAsync("/api/v1/generate", new { prompt = "x", loras = new[] { new { name = "../../secret" } }, steps = 1, width = 64, height = 64 });
        Assert.Equal(HttpStatusCode.BadRequest, n.StatusCode);
        using var p = await c.GetAsync("/api/v1/loras/..%2F..%2Fetc%2Fpasswd");
        Assert.True(p.StatusCode is HttpStatusCode.BadRequest or HttpStatusCode.NotFound, p.StatusCode.ToString());
    }

    [SkippableTheory]
    [InlineData("../../../../etc/passwd")]
    [InlineData("..%2F..%2Fetc%2Fpasswd")]
    [InlineData("%2Fetc%2Fpasswd")]
    public async Task OutputFilesCannotLeaveTheirFolder(string path)
    {
        using var c = Client("alice", "s3cret");
        using var r = await c.GetAsync("/api/v1/outputs/file/" + path);
        Assert.True(r.StatusCode is HttpStatusCode.NotFound or HttpStatusCode.BadRequest, r.StatusCode.ToString());
        Assert.DoesNotContain("root:", await r.Content.ReadAsStringAsync());
    }

    [SkippableFact]
    public async Task BodiesAndImagesAreBounded()
    {
        using var c = Client("alice", "s3cret");
        var big = new string('A', 16 << 20);
        // The server answers 413 from the Content-Length alone and then closes the connection; a client
        // that streams the whole body first can meet a broken pipe instead of the answer. Clients that
        // send large bodies ask "Expect: 100-continue" and wait for the verdict, as this one does.
        using var waiting = new HttpClient(new SocketsHttpHandler { Expect100ContinueTimeout = TimeSpan.FromMinutes(2) }) { BaseAddress = new Uri(S.BaseUrl), Timeout = TimeSpan.FromMinutes(5) };
        waiting.DefaultRequestHeaders.Authorization = c.DefaultRequestHeaders.Authorization;
        using var oversized = new HttpRequestMessage(HttpMethod.Post, "/sdapi/v1/txt2img") { Content = new StringContent($"{{\"prompt\":\"{big}\"}}", Encoding.UTF8, "application/json") };
        oversized.Headers.ExpectContinue = true;
        using var r = await waiting.SendAsync(oversized);
        Assert.Equal(HttpStatusCode.RequestEntityTooLarge, r.StatusCode);
        Assert.Contains("the limit is", await r.Content.ReadAsStringAsync());
        using var wide = await c.PostAsJsonAsync("/sdapi/v1/txt2img", new { prompt = "x", width = 512, height = 64, steps = 1 });
        Assert.Equal(HttpStatusCode.BadRequest, wide.StatusCode);
        Assert.Contains("at most 256", await wide.Content.ReadAsStringAsync());
        using var tall = TorchSharp.torch.zeros(1, 3, 300, 64);
        var png = LoraCraft.Pipelines.ImageFiles.EncodePng(tall);
        using var init = await c.PostAsJsonAsync("/sdapi/v1/img2img", new { prompt = "x", init_images = new[] { Convert.ToBase64String(png) }, width = 64, height = 64, steps = 1 });
        Assert.Equal(HttpStatusCode.BadRequest, init.StatusCode);
        Assert.Contains("300", await init.Content.ReadAsStringAsync());
    }

    [SkippableFact]
    public async Task AFullQueueAnswers503AndTheServerGoesOn()
    {
        using var c = Client("alice", "s3cret");
        async Task<HttpResponseMessage> Submit(int steps) => await c.PostAsJsonAsync("/api/v1/generate", new { prompt = "x", steps, width = 64, height = 64, save = false });
        using var first = await Submit(300);   // runs
        string firstId = (await first.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("id").GetString()!;
        for (int i = 0; i < 400 && S.Engine.Queue.Running.Count == 0; i++) await Task.Delay(25);
        using var second = await Submit(1);    // waits: the one place in the queue
        using var third = await Submit(1);     // no room
        Assert.Equal(HttpStatusCode.Accepted, second.StatusCode);
        Assert.Equal(HttpStatusCode.ServiceUnavailable, third.StatusCode);
        Assert.Contains("queue is full", await third.Content.ReadAsStringAsync());
        await c.PostAsync($"/api/v1/jobs/{firstId}/cancel", null);
        string secondId = (await second.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("id").GetString()!;
        await S.Engine.Queue.Get(secondId)!.Completion.WaitAsync(TimeSpan.FromMinutes(3));
        Assert.Equal(LoraCraft.Generation.JobState.Completed, S.Engine.Queue.Get(secondId)!.State);
    }
}

