using System.Text.Json.Nodes;
using Microsoft.Playwright;
using Xunit;
using Xunit.Abstractions;

namespace LoraCraft.Tests.Server;

/// <summary>
/// ComfyUI's own frontend (the built fixture in ../shared/comfyui-frontend) served at /comfy/ on
/// our server, in Debian's chromium: it boots without the missing-nodes dialog or console errors,
/// an API-format workflow on the tiny model runs from the Queue button and its image lands in the
/// Save Image node, and the queue panel lists the job. Skips when the fixture or chromium is absent.
/// </summary>
[Collection(ComfyServerCollection.Name)]
public class ComfyFrontendTests(ComfyServer server, ITestOutputHelper output)
{
    const string Chromium = "/usr/bin/chromium";

    [SkippableFact]
    public async Task The_comfyui_frontend_runs_a_workflow_on_our_server()
    {
        server.Require();
        Skip.If(ComfyServer.ComfyFrontendFixture is null, "the ComfyUI frontend fixture (../shared/comfyui-frontend) is absent: skipped");
        Skip.IfNot(File.Exists(Chromium), "chromium is not installed (apt-get install chromium): skipped");
        // a returning user: no first-run templates dialog
        await server.PostJson("/comfy/api/settings", new JsonObject { ["Comfy.TutorialCompleted"] = true });

        using var playwright = await Playwright.CreateAsync();
        await using var browser = await playwright.Chromium.LaunchAsync(new() { ExecutablePath = Chromium, Headless = true, Args = ["--no-sandbox"] });
        var page = await browser.NewPageAsync(new() { ViewportSize = new() { Width = 1400, Height = 900 } });
        var errors = new List<string>();
        page.Console += (_, m) => { if (m.Type == "error") errors.Add(m.Text); };
        page.PageError += (_, e) => errors.Add("page error: " + e);
        // nothing beyond this server (the bundle may try comfy.org and others; offline they only slow it down)
        await page.RouteAsync(url => !url.StartsWith(server.BaseUrl, StringComparison.Ordinal), r => r.AbortAsync());

        await page.AddInitScriptAsync("window.addEventListener('error', e => console.warn('STACK ' + (e.error && e.error.stack)));");
        page.Console += (_, m) => { if (m.Text.StartsWith("STACK", StringComparison.Ordinal)) errors.Add(m.Text); };
        var requests = new List<string>();
        page.Response += (_, r) => requests.Add($"{r.Status} {r.Request.Method} {r.Url}");
        await page.GotoAsync(server.BaseUrl + "/comfy/");
        try
        {
            await page.WaitForFunctionAsync("() => window.app && window.app.graph && window.app.graph.nodes.length > 0", null, new() { Timeout = 60000 });
        }
        catch (TimeoutException)
        {
            await page.ScreenshotAsync(new() { Path = "/tmp/comfy-frontend-boot.png" });
            throw new TimeoutException("the frontend did not boot; errors:\n" + string.Join("\n", errors) + "\nrequests:\n" + string.Join("\n", requests));
        }
        await page.WaitForTimeoutAsync(1000);
        await NoMissingNodes(page);

        var prompt = ComfyPrompts.Txt2Img(seed: 999, steps: 2, prefix: "frontend");
        await page.EvaluateAsync("json => window.app.loadApiJson(json, 'api-workflow')", JsonNode.Parse(prompt.ToJsonString())!.ToJsonString());
        await page.WaitForFunctionAsync("() => window.app.graph.nodes.length === 7");
        await NoMissingNodes(page);
        await page.Locator("[data-testid='queue-button'] button").First.ClickAsync();

        // the image arrives in the Save Image node
        try
        {
            await page.WaitForFunctionAsync("() => { const n = window.app.graph.nodes.find(n => n.type === 'SaveImage'); return n && n.imgs && n.imgs.length > 0 && n.imgs[0].naturalWidth === 64; }",
                                            null, new() { Timeout = 120000 });
        }
        catch (TimeoutException)
        {
            await page.ScreenshotAsync(new() { Path = Path.Combine(server.Root, "frontend-timeout.png") });
            throw new TimeoutException("no image in the Save Image node; errors:\n" + string.Join("\n", errors) + "\nrequests:\n" +
                                       string.Join("\n", requests.Where(r => !r.Contains("/comfy/assets/", StringComparison.Ordinal))));
        }
        var outputs = await page.EvaluateAsync<string>("() => JSON.stringify(Object.values(window.app.nodeOutputs ?? {}))");
        Assert.Contains("frontend_", outputs);

        // the queue panel lists the job
        await page.Locator(".queue-tab-button").First.ClickAsync();
        await page.WaitForSelectorAsync("img[src*='frontend_']", new() { Timeout = 30000 });
        await page.ScreenshotAsync(new() { Path = Path.Combine(server.Root, "frontend.png") });
        output.WriteLine(string.Join("\n", errors));
        Assert.Empty(errors);
    }

    /// <summary>
    /// Every node of the graph is one the server registered. The frontend may still open its
    /// missing-nodes dialog with an empty list (its registry lookups go to comfy.org, which the
    /// test blocks): then the dialog must list no node type, and it is closed.
    /// </summary>
    static async Task NoMissingNodes(IPage page)
    {
        string types = await page.EvaluateAsync<string>(
            "() => JSON.stringify((window.app.graph?.nodes ?? []).filter(n => !(window.LiteGraph?.registered_node_types ?? {})[n.type]).map(n => n.type))");
        Assert.Equal("[]", types);
        var dialog = page.GetByText("Some Nodes Are Missing");
        if (await dialog.CountAsync() == 0) return;
        string text = await page.Locator(".p-dialog").First.InnerTextAsync();
        Assert.True(text.Contains("No selected item", StringComparison.Ordinal), "the frontend says nodes are missing: " + text.ReplaceLineEndings(" | "));
        await page.Keyboard.PressAsync("Escape");
        await page.GetByText("Some Nodes Are Missing").WaitForAsync(new() { State = WaitForSelectorState.Detached, Timeout = 10000 });
    }
}
