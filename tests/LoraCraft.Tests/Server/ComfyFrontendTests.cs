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
        // a returning user: no first-run templates dialog, English (another test sets Comfy.Locale on the shared server), and
        // the two navigation settings stored: frontend 1.28.8 throws "Cannot read properties of undefined (reading 'id')"
        // at boot on real ComfyUI too when they are absent (Comfy-Org/ComfyUI_frontend#6747: the NavigationMode setting's
        // onChange sets them before they are registered); these are the values its default mode ("legacy") implies
        await server.PostJson("/comfy/api/settings", new JsonObject
        {
            ["Comfy.TutorialCompleted"] = true, ["Comfy.Locale"] = "en",
            ["Comfy.Canvas.LeftMouseClickBehavior"] = "panning", ["Comfy.Canvas.MouseWheelScroll"] = "zoom",
        });

        using var playwright = await Playwright.CreateAsync();
        await using var browser = await playwright.Chromium.LaunchAsync(new() { ExecutablePath = Chromium, Headless = true, Args = ["--no-sandbox"] });
        var page = await browser.NewPageAsync(new() { ViewportSize = new() { Width = 1400, Height = 900 } });
        var errors = new List<string>();
        // Chromium logs every failed load as a console error; those are checked below as responses, by URL
        page.Console += (_, m) => { if (m.Type == "error" && !m.Text.StartsWith("Failed to load resource", StringComparison.Ordinal)) errors.Add(m.Text); };
        page.PageError += (_, e) => errors.Add("page error: " + e);
        // nothing beyond this server (the bundle may try comfy.org and others; offline they only slow it down)
        await page.RouteAsync(url => !url.StartsWith(server.BaseUrl, StringComparison.Ordinal), r => r.AbortAsync());

        await page.AddInitScriptAsync("window.addEventListener('error', e => console.warn('STACK ' + (e.error && e.error.stack)));");
        page.Console += (_, m) => { if (m.Text.StartsWith("STACK", StringComparison.Ordinal)) errors.Add(m.Text); };
        var requests = new List<string>();
        page.Response += (_, r) =>
        {
            requests.Add($"{r.Status} {r.Request.Method} {r.Url}");
            if (r.Status >= 400 && !AbsentOnFreshComfyUI(r.Url[server.BaseUrl.Length..])) errors.Add($"{r.Status} {r.Request.Method} {r.Url}");
        };
        // (a stylesheet that answers 404 also counts as a failed request)
        page.RequestFailed += (_, r) =>
        {
            if (r.Url.StartsWith(server.BaseUrl, StringComparison.Ordinal) && !AbsentOnFreshComfyUI(r.Url[server.BaseUrl.Length..])) errors.Add($"failed: {r.Method} {r.Url} {r.Failure}");
        };
        // a loaded CI machine takes longer than the default 30 s to parse the 13 MB bundle
        await page.GotoAsync(server.BaseUrl + "/comfy/", new() { Timeout = 60000 });
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
        // the object, not its JSON text: given a string, loadApiJson finds no class_type, shows its missing-nodes dialog
        // with an empty list and leaves the default 512x512 graph in place
        await page.EvaluateAsync("text => window.app.loadApiJson(JSON.parse(text), 'api-workflow')", prompt.ToJsonString());
        await page.WaitForFunctionAsync("() => window.app.graph.nodes.length === 7 && window.app.graph.nodes.some(n => n.type === 'SaveImage' && n.widgets?.[0]?.value === 'frontend')");
        await NoMissingNodes(page);
        // the frontend loads a node's output image only when it draws the node, and LiteGraph draws only what is in
        // view (after loadApiJson's arrange, Save Image lies right of a 1400 px window): zoom to fit, as a user would
        await page.EvaluateAsync("() => window.app.extensionManager.command.execute('Comfy.Canvas.FitView')");
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

    /// <summary>Every node of the graph is one the server registered, and the frontend shows no missing-nodes dialog.</summary>
    static async Task NoMissingNodes(IPage page)
    {
        string types = await page.EvaluateAsync<string>(
            "() => JSON.stringify((window.app.graph?.nodes ?? []).filter(n => !(window.LiteGraph?.registered_node_types ?? {})[n.type]).map(n => n.type))");
        Assert.Equal("[]", types);
        var dialog = page.GetByText("Some Nodes Are Missing");
        if (await dialog.CountAsync() > 0)
            Assert.Fail("the frontend says nodes are missing: " + (await page.Locator(".p-dialog").First.InnerTextAsync()).ReplaceLineEndings(" | "));
    }

    /// <summary>
    /// What ComfyUI itself answers 404 for on a profile that has never saved them, and the frontend expects (it reads
    /// a 404 as "none"): the optional user.css (beside index.html and in the user folder), the node templates file,
    /// and the saved-workflow and subgraph-blueprint folders (app/user_manager.py: "Directory not found").
    /// </summary>
    static bool AbsentOnFreshComfyUI(string pathAndQuery) =>
        pathAndQuery is "/comfy/user.css" or "/comfy/api/userdata/user.css" or "/comfy/api/userdata/comfy.templates.json" ||
        pathAndQuery.StartsWith("/comfy/api/userdata?dir=workflows&", StringComparison.Ordinal) ||
        pathAndQuery.StartsWith("/comfy/api/userdata?dir=subgraphs%2F&", StringComparison.Ordinal);
}
