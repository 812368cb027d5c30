using Deque.AxeCore.Commons;
using Deque.AxeCore.Playwright;
using LoraCraft.Tests.Training;
using Microsoft.Playwright;
using Xunit;
using static Microsoft.Playwright.Assertions;

namespace LoraCraft.Tests.WebUi;

/// <summary>
/// The Train and Tools tabs in headless chromium against the shared server: a tiny training run
/// (64 px, 3 steps) from a dataset folder to a LoRA used in Generate, and one tool (resize) end
/// to end with its report. Both screens pass axe's WCAG rules and fit a phone-width window.
/// </summary>
[Collection("webui")]
public sealed class WebUiTrainToolsTests(WebUiServer server)
{
    const float Slow = 180_000;

    /// <summary>DATA-DIR/train/NAME/10_sks disc with two 64 px images and captions.</summary>
    void Dataset(string name)
    {
        var sub = Path.Combine(Path.GetDirectoryName(server.LoraDir)!, "user", "train", name, "10_sks disc");
        if (Directory.Exists(sub)) return;
        Directory.CreateDirectory(sub);
        for (int i = 0; i < 2; i++)
        {
            TrainingData.WriteImage(Path.Combine(sub, $"img{i}.png"), i);
            File.WriteAllText(Path.Combine(sub, $"img{i}.txt"), "sks disc, red");
        }
    }

    /// <summary>The shared server's other tests count LoRA cards: the files made here go again.</summary>
    async Task Remove(params string[] names)
    {
        foreach (var name in names)
            foreach (var file in Directory.EnumerateFiles(server.LoraDir, name + ".*")) File.Delete(file);
        await server.Http.PostAsync("/api/v1/loras/refresh", null);
    }

    [SkippableFact]
    public async Task UserTrainsATinyLoraWatchesItsProgressAndUsesItInGenerate()
    {
        server.Require();
        Dataset("ui-discs");
        await using var ui = await server.OpenAsync(nameof(UserTrainsATinyLoraWatchesItsProgressAndUsesItInGenerate), hash: "#train");
        var page = ui.Page;
        try
        {
            await ui.RunAsync(async () =>
            {
                var form = page.Locator("#train-form");
                await page.Locator("#model").SelectOptionAsync("tiny-sd15");
                await form.GetByLabel("Dataset folder", new() { Exact = true }).SelectOptionAsync("ui-discs");
                await Expect(page.Locator("#train-dataset-info")).ToContainTextAsync("10_sks disc: 2 images, 2 captions, 10 repeats");
                await Expect(page.Locator("#train-output")).ToHaveValueAsync("ui-discs");
                await form.GetByLabel("Output name", new() { Exact = true }).FillAsync("ui-disc");
                await form.GetByLabel("Steps", new() { Exact = true }).FillAsync("3");
                await form.GetByLabel("Rank (network dim)", new() { Exact = true }).FillAsync("4");
                await form.GetByLabel("Alpha", new() { Exact = true }).FillAsync("4");
                await form.GetByLabel("Learning rate", new() { Exact = true }).FillAsync("1e-3");
                await form.GetByLabel("Resolution", new() { Exact = true }).FillAsync("64");
                await form.GetByLabel("Seed", new() { Exact = true }).FillAsync("7");
                await page.GetByRole(AriaRole.Button, new() { Name = "Start training" }).ClickAsync();

                await Expect(page.Locator("#train-result")).ToBeVisibleAsync(new() { Timeout = Slow });
                await Expect(page.Locator("#train-progress")).ToHaveAttributeAsync("data-step", "3");
                await Expect(page.Locator("#train-chart")).ToHaveAttributeAsync("data-points", "3");
                await Expect(page.Locator("#train-status")).ToContainTextAsync("done: 3 steps");
                await Expect(page.Locator("#train-messages")).ToContainTextAsync("saved ui-disc (ui-disc.safetensors)");
                await Expect(page.Locator("#train-start")).ToBeEnabledAsync();
                await Expect(page.Locator("#train-stop")).ToBeDisabledAsync();
                await ui.ShotAsync("train");

                // the LoRA link opens its details (kohya metadata); "Use in Generate" puts its tag into the prompt
                await page.Locator("#train-lora-link").ClickAsync();
                await Expect(page.Locator("#lora-dialog")).ToBeVisibleAsync();
                await Expect(page.Locator("#lora-meta")).ToContainTextAsync("ss_network_dim");
                await page.Locator("#lora-dialog").GetByRole(AriaRole.Button, new() { Name = "Close" }).ClickAsync();
                await page.GetByRole(AriaRole.Button, new() { Name = "Use in Generate" }).ClickAsync();
                await Expect(page.Locator("#screen-generate")).ToBeVisibleAsync();
                await Expect(page.Locator("#prompt")).ToHaveValueAsync(new System.Text.RegularExpressions.Regex("<lora:ui-disc:1>"));
                await Expect(page.Locator("#lora-cards .card[data-lora='ui-disc']")).ToBeVisibleAsync();
            });
        }
        finally { await Remove("ui-disc"); }
    }

    [SkippableFact]
    public async Task UserResizesALoraInTheToolsTabAndReadsTheReport()
    {
        server.Require();
        await using var ui = await server.OpenAsync(nameof(UserResizesALoraInTheToolsTabAndReadsTheReport), hash: "#tools");
        var page = ui.Page;
        try
        {
            await ui.RunAsync(async () =>
            {
                await page.GetByRole(AriaRole.Tab, new() { Name = "Resize" }).ClickAsync();
                await Expect(page.GetByRole(AriaRole.Tab, new() { Name = "Resize" })).ToHaveAttributeAsync("aria-selected", "true");
                await page.Locator("#tool-form").GetByLabel("LoRA", new() { Exact = true }).SelectOptionAsync("sd15-attn");
                await page.Locator("#tool-form").GetByLabel("New rank", new() { Exact = true }).FillAsync("2");
                await page.Locator("#tool-form").GetByLabel("Output name").FillAsync("ui-attn-r2");
                await page.GetByRole(AriaRole.Button, new() { Name = "Run" }).ClickAsync();
                await Expect(page.Locator("#tool-report")).ToBeVisibleAsync(new() { Timeout = Slow });
                await Expect(page.Locator("#tool-summary")).ToContainTextAsync("ui-attn-r2 (ui-attn-r2.safetensors in the LoRA folder)");
                await Expect(page.Locator("#tool-summary")).ToContainTextAsync("average fro retained");
                await Expect(page.Locator("#tool-status")).ToContainTextAsync("done in");
                await Expect(page.Locator("#tool-report-body table").Nth(1)).ToContainTextAsync("new rank");
                await ui.ShotAsync("tools-resize");

                // the new LoRA is in the list at once; the same name again is refused with the server's message
                await Expect(page.Locator("#lora-cards .card[data-lora='ui-attn-r2']")).ToHaveCountAsync(1);
                await page.GetByRole(AriaRole.Button, new() { Name = "Run" }).ClickAsync();
                await Expect(page.Locator("#notice")).ToContainTextAsync("exists already");
                // the browser logs the refused request (409) as a console error: that one is expected
                lock (ui.Errors) ui.Errors.RemoveAll(e => e.Contains("409 (Conflict)", StringComparison.Ordinal));
            });
        }
        finally { await Remove("ui-attn-r2"); }
    }

    [SkippableFact]
    public async Task TheTrainAndToolsScreensAreLabelledAndFitAPhoneWidthWindow()
    {
        server.Require();
        foreach (var (width, height, prefix) in new[] { (1280, 800, "desktop"), (390, 844, "phone") })
        {
            await using var ui = await server.OpenAsync(nameof(TheTrainAndToolsScreensAreLabelledAndFitAPhoneWidthWindow) + "-" + prefix, width, height);
            var page = ui.Page;
            await ui.RunAsync(async () =>
            {
                foreach (var screen in new[] { "train", "tools" })
                {
                    await page.EvaluateAsync("h => { location.hash = h; }", "#" + screen);
                    await Expect(page.Locator($"#screen-{screen}")).ToBeVisibleAsync();
                    if (screen == "train") await Expect(page.Locator("#train-dataset option").First).ToBeAttachedAsync();
                    if (prefix == "desktop")
                    {
                        var axe = await page.RunAxe(new AxeRunOptions { RunOnly = new RunOnlyOptions { Type = "tag", Values = ["wcag2a", "wcag2aa"] } });
                        Assert.True(axe.Violations.Length == 0, $"{screen}:\n" + string.Join("\n", axe.Violations.Select(v =>
                            $"{v.Id}: {v.Help} ({string.Join("; ", v.Nodes.Take(4).Select(n => n.Html))})")));
                    }
                    var overflow = await page.EvaluateAsync<int>("() => document.documentElement.scrollWidth - window.innerWidth");
                    Assert.True(overflow <= 0, $"{screen} at {width}px: {overflow}px wider than the window");
                    if (prefix == "phone") await ui.ShotAsync($"phone-{screen}", fullPage: true);
                }
            });
        }
    }
}
