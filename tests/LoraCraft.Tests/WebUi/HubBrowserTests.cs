using Deque.AxeCore.Commons;
using Deque.AxeCore.Playwright;
using LoraCraft.Server;
using LoraCraft.Tests.Lora.Hub;
using Microsoft.AspNetCore.Builder;
using Microsoft.Playwright;
using Xunit;
using static Microsoft.Playwright.Assertions;

namespace LoraCraft.Tests.WebUi;

/// <summary>
/// The LoRA tab's "Add from Civitai / Hugging Face" in the shared headless chromium, against a
/// server of its own whose Civitai, CDN and Hugging Face are fake sites on 127.0.0.1: paste a
/// link, watch the progress bar, find the new card with its preview and trigger words; search and
/// see what is installed; fetch info by hash for the folder and for one card.
/// </summary>
[Collection("webui")]
public sealed class HubBrowserTests(WebUiServer shared)
{
    [SkippableFact]
    public async Task UserPastesACivitaiLinkAndTheLoraAppearsWithItsPreviewAndTriggerWords()
    {
        shared.Require();
        using var hub = new FakeHub();
        using var dir = new TempDir();
        string loraDir = dir.File("Lora");
        Directory.CreateDirectory(loraDir);
        Directory.CreateDirectory(dir.File("checkpoints"));
        var file = HubFixtures.Lora;
        // one LoRA already there that Civitai knows by its hash, without any sidecar yet
        File.WriteAllBytes(Path.Combine(loraDir, "mystery.safetensors"), file);
        hub.ServeVersion(file);
        hub.ServeByHash(file, "cloudStyle_v10.safetensors");
        hub.ServeSearch();
        await using var app = LoraServer.Build(new ServerOptions
        {
            Port = 0, CheckpointsDir = dir.File("checkpoints"), LoraDir = loraDir, EmbeddingsDir = dir.File("embeddings"),
            OutputsDir = dir.File("outputs"), DataDir = dir.File("user"), Hub = hub.Options,
        });
        await app.StartAsync();
        using var engine = (ServerEngine)app.Services.GetService(typeof(ServerEngine))!;

        var context = await shared.Browser.NewContextAsync(new BrowserNewContextOptions { ViewportSize = new ViewportSize { Width = 1280, Height = 900 } });
        context.SetDefaultTimeout(30_000);
        await using var ui = new UiPage(nameof(UserPastesACivitaiLinkAndTheLoraAppearsWithItsPreviewAndTriggerWords), context, await context.NewPageAsync());
        var page = ui.Page;
        await page.GotoAsync(LoraServer.Address(app));
        await page.Locator("body[data-ready=true]").WaitForAsync();
        await ui.RunAsync(async () =>
        {
            var card = (string name) => page.Locator($"#lora-cards .card[data-lora='{name}']");
            await Expect(card("mystery").Locator(".placeholder")).ToBeVisibleAsync();
            await Expect(card("mystery").Locator(".type")).ToHaveTextAsync("LoRA");

            // paste a Civitai page link: a progress bar, then the card with its preview and trigger words
            await page.GetByText("Add from Civitai / Hugging Face").ClickAsync();
            await page.GetByLabel("Civitai or Hugging Face link or id").FillAsync($"{hub.Civitai.Url}/models/7/cloud-style?modelVersionId=11");
            await page.GetByRole(AriaRole.Button, new() { Name = "Download", Exact = true }).ClickAsync();
            await Expect(page.Locator("#hub-status")).ToContainTextAsync("Installed: cloudStyle_v10", new() { Timeout = 60_000 });
            await Expect(page.Locator("#hub-status")).ToContainTextAsync("zzcloud style");
            Assert.Equal("1", await page.Locator("#hub-progress").EvaluateAsync<string>("p => String(p.value)"));
            await Expect(card("cloudStyle_v10").Locator("img.thumb")).ToBeVisibleAsync();
            await Expect(card("cloudStyle_v10").Locator(".triggers")).ToContainTextAsync("zzcloud style, fluffy");
            Assert.True(await card("cloudStyle_v10").Locator("img.thumb").EvaluateAsync<bool>("i => i.complete && i.naturalWidth === 24"));
            await Expect(page.GetByLabel("Civitai or Hugging Face link or id")).ToHaveValueAsync("");
            await ui.ShotAsync("hub-installed");

            // a click on the card puts its tag into the prompt, like any other card
            await card("cloudStyle_v10").Locator(".pick").ClickAsync();
            await Expect(page.GetByLabel("Prompt", new() { Exact = true })).ToHaveValueAsync("<lora:cloudStyle_v10:1>");

            // a refused link says why
            await page.GetByLabel("Civitai or Hugging Face link or id").FillAsync("civitai:notanumber");
            await page.GetByRole(AriaRole.Button, new() { Name = "Download", Exact = true }).ClickAsync();
            await Expect(page.Locator("#hub-status")).ToContainTextAsync("Not installed: 'civitai:notanumber'");
            // (chromium logs the refusal's HTTP 400 as a console error: that one was meant)
            lock (ui.Errors) ui.Errors.RemoveAll(e => e.Contains("status of 400", StringComparison.Ordinal));

            // search: the Civitai hit is marked installed, the Hugging Face one can be downloaded
            await page.GetByLabel("Search LoRAs online").FillAsync("cloud");
            await page.GetByRole(AriaRole.Button, new() { Name = "Search", Exact = true }).ClickAsync();
            await Expect(page.Locator("#hub-results li")).ToHaveCountAsync(2);
            await Expect(page.Locator("#hub-results li[data-id='civitai:11']")).ToContainTextAsync("installed as cloudStyle_v10");
            await Expect(page.Locator("#hub-results li[data-id='hf:someone/cloud-lora']").GetByRole(AriaRole.Button)).ToHaveTextAsync("Download");
            await Expect(page.Locator("#hub-search-status")).ToHaveTextAsync("2 results");
            await ui.ShotAsync("hub-search");
            var axe = await page.RunAxe(new AxeRunOptions { RunOnly = new RunOnlyOptions { Type = "tag", Values = ["wcag2a", "wcag2aa"] } });
            Assert.True(axe.Violations.Length == 0, string.Join("\n", axe.Violations.Select(v => $"{v.Id}: {v.Help} ({string.Join(", ", v.Nodes.Select(n => n.Target))})")));

            // fetch info for the folder: the file found by its hash gets its trigger words and preview
            await page.GetByRole(AriaRole.Button, new() { Name = "Fetch info for all LoRAs" }).ClickAsync();
            await Expect(page.Locator("#hub-fetch-status")).ToContainTextAsync("1 found, 0 not found on Civitai, 1 skipped", new() { Timeout = 60_000 });
            await Expect(card("mystery").Locator(".triggers")).ToContainTextAsync("zzcloud style");
            await Expect(card("mystery").Locator("img.thumb")).ToBeVisibleAsync();

            // and for one card, from its details, which show its type
            await card("mystery").Locator(".details").ClickAsync();
            await Expect(page.Locator("#lora-summary")).ToContainTextAsync("TypeLoRA");
            await page.GetByRole(AriaRole.Button, new() { Name = "Fetch info from Civitai" }).ClickAsync();
            await Expect(page.Locator("#lora-fetch-status")).ToContainTextAsync("Found on Civitai: Cloud Style v1.0", new() { Timeout = 60_000 });
            await Expect(page.Locator("#lora-summary")).ToContainTextAsync("zzcloud style, fluffy");
        });
        await context.DisposeAsync();
        Assert.DoesNotContain(HubFixtures.Token, string.Concat(hub.Civitai.Requests.Select(r => r.Url)));
    }
}
