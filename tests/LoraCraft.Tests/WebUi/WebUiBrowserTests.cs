using System.Text.Json;
using Deque.AxeCore.Commons;
using Deque.AxeCore.Playwright;
using LoraCraft.Pipelines;
using Microsoft.Playwright;
using SkiaSharp;
using Xunit;
using static Microsoft.Playwright.Assertions;

namespace LoraCraft.Tests.WebUi;

/// <summary>
/// The web UI in Debian's headless chromium against a real server with the fixture models, as a
/// user works with it: pick LoRAs on their cards, move sliders, generate, read a PNG back, inpaint
/// with a painted mask, compare strengths on a grid. Each test leaves screenshots under
/// TestResults/webui (and FAILED-TEST.png where a step failed). 64×64 images, a few steps.
/// </summary>
[Collection("webui")]
public sealed class WebUiBrowserTests(WebUiServer server)
{
    const float Slow = 120_000;

    static ILocator Card(IPage page, string lora) => page.Locator($"#lora-cards .card[data-lora='{lora}']");

    /// <summary>Small, quick, reproducible settings on the Generate form.</summary>
    static async Task SmallSettings(IPage page, int steps, string seed)
    {
        await page.Locator("#sampler").SelectOptionAsync("euler");
        await page.Locator("#steps").FillAsync(steps.ToString());
        await page.Locator("#width").FillAsync("64");
        await page.Locator("#height").FillAsync("64");
        await page.Locator("#seed").FillAsync(seed);
    }

    /// <summary>The PNG the result image shows, fetched like the Download link does.</summary>
    async Task<byte[]> ResultPng(IPage page) =>
        await server.Http.GetByteArrayAsync(await page.Locator("#result-image").GetAttributeAsync("src"));

    [SkippableFact]
    public async Task UserPicksALoraCardSetsItsUNetStrengthAndGeneratesAnImageWithLoraHashes()
    {
        server.Require();
        await using var ui = await server.OpenAsync(nameof(UserPicksALoraCardSetsItsUNetStrengthAndGeneratesAnImageWithLoraHashes));
        var page = ui.Page;
        await ui.RunAsync(async () =>
        {
            await page.Locator("#model").SelectOptionAsync("tiny-sd15");
            // the cards, with family badges; the SDXL LoRA is hidden while an SD1 checkpoint is chosen
            await Expect(Card(page, "sd15-attn").Locator(".badge")).ToHaveTextAsync("SD1");
            await Expect(Card(page, "sd15-attn").Locator("img.thumb")).ToBeVisibleAsync();
            await Expect(Card(page, "sd15-locon").Locator(".placeholder")).ToBeVisibleAsync();
            await Expect(Card(page, "sdxl-attn")).ToHaveCountAsync(0);
            await Expect(page.Locator("#lora-hidden-note")).ToContainTextAsync("1 LoRA made for another family than SD1 hidden");
            await page.GetByLabel("Show all families").CheckAsync();
            await Expect(Card(page, "sdxl-attn").Locator(".badge")).ToHaveTextAsync("SDXL");
            await page.GetByLabel("Show all families").UncheckAsync();
            await Expect(Card(page, "sdxl-attn")).ToHaveCountAsync(0);

            // an SDXL checkpoint shows the SDXL LoRA and hides the SD1 ones
            await page.Locator("#model").SelectOptionAsync("tiny-sdxl");
            await Expect(Card(page, "sdxl-attn")).ToBeVisibleAsync();
            await Expect(Card(page, "sd15-attn")).ToHaveCountAsync(0);
            await page.Locator("#model").SelectOptionAsync("tiny-sd15");

            // folder filter and search
            await page.Locator("#lora-folders").GetByRole(AriaRole.Button, new() { Name = "styles" }).ClickAsync();
            await Expect(page.Locator("#lora-cards .card")).ToHaveCountAsync(1);
            await Expect(Card(page, "sd15-locon")).ToBeVisibleAsync();
            await page.Locator("#lora-folders").GetByRole(AriaRole.Button, new() { Name = "All folders" }).ClickAsync();
            await page.GetByLabel("Search LoRAs by name or tag").FillAsync("sd15_attn_style");
            await Expect(page.Locator("#lora-cards .card")).ToHaveCountAsync(1);
            await Expect(Card(page, "sd15-attn")).ToBeVisibleAsync();
            await page.GetByLabel("Search LoRAs by name or tag").FillAsync("");

            // a click puts the tag into the prompt; the Active LoRAs panel shows it with its coverage
            var prompt = page.GetByLabel("Prompt", new() { Exact = true });
            await prompt.FillAsync("a red house on a hill");
            await Card(page, "sd15-attn").Locator(".pick").ClickAsync();
            await Expect(prompt).ToHaveValueAsync("a red house on a hill <lora:sd15-attn:1>");
            await Expect(Card(page, "sd15-attn").Locator(".pick")).ToHaveAttributeAsync("aria-pressed", "true");
            var row = page.Locator("#active-loras-list li[data-lora='sd15-attn']");
            await Expect(row.Locator(".coverage")).ToContainTextAsync("modules matched", new() { Timeout = Slow });
            await Expect(row.Locator(".coverage")).ToContainTextAsync("0 unmatched");

            // the UNet slider rewrites the tag in the text (te stays 1)
            var unet = row.GetByLabel("UNet strength", new() { Exact = true });
            await unet.FocusAsync();
            for (int i = 0; i < 4; i++) await unet.PressAsync("ArrowLeft");
            await Expect(prompt).ToHaveValueAsync("a red house on a hill <lora:sd15-attn:1:0.8>");
            // and typing a weight moves the slider
            await prompt.FillAsync("a red house on a hill <lora:sd15-attn:0.5>");
            await Expect(row.GetByLabel("Text encoder strength value")).ToHaveValueAsync("0.5");
            await prompt.FillAsync("a red house on a hill <lora:sd15-attn:1:0.8>");

            // Generate: progress with previews, then the image with its infotext
            await SmallSettings(page, steps: 4, seed: "1234");
            await page.Locator("#prompt").PressAsync("Control+Enter");
            await Expect(page.Locator("#result-image")).ToBeVisibleAsync(new() { Timeout = Slow });
            await Expect(page.Locator("#generate")).ToBeEnabledAsync(new() { Timeout = Slow });
            Assert.Equal("4", await page.Locator("#progress").GetAttributeAsync("data-steps"));
            Assert.NotEqual("0", await page.Locator("#progress").GetAttributeAsync("data-previews"));
            await Expect(page.Locator("#progress-text")).ToContainTextAsync("done in");
            var infotext = await page.Locator("#infotext").InnerTextAsync();
            Assert.Contains("<lora:sd15-attn:1:0.8>", infotext);
            Assert.Contains("Lora hashes: \"sd15-attn: ", infotext);
            Assert.Contains("Seed: 1234", infotext);
            var (w, h, _) = WebUiServer.Pixels(await ResultPng(page));
            Assert.Equal((64, 64), (w, h));
            await ui.ShotAsync("generate");

            // seed reuse, and a second click on the card takes the tag out
            await page.GetByRole(AriaRole.Button, new() { Name = "Random seed" }).ClickAsync();
            await page.GetByRole(AriaRole.Button, new() { Name = "Reuse last seed" }).ClickAsync();
            await Expect(page.Locator("#seed")).ToHaveValueAsync("1234");
            await Card(page, "sd15-attn").Locator(".pick").ClickAsync();
            await Expect(prompt).ToHaveValueAsync("a red house on a hill");
            await Expect(row).ToHaveCountAsync(0);

            // the saved image is in the history
            await page.GetByRole(AriaRole.Link, new() { Name = "History" }).ClickAsync();
            await Expect(page.Locator("#history-list figure").First).ToBeVisibleAsync();
            await ui.ShotAsync("history");
        });
    }

    [SkippableFact]
    public async Task UserDropsAPngWhoseLoraWasRenamedSendsItToGenerateAndGetsTheSameImage()
    {
        server.Require();
        var original = await server.GenerateAsync(new
        {
            model = "tiny-sd15", prompt = "a blue boat <lora:sd15-attn:0.7>", negative = "fog", steps = 3, cfg = 6, sampler = "euler",
            width = 64, height = 64, seed = 777, save = false,
        });
        // the same image as another machine wrote it: there the LoRA file was called my-old-attn
        var parameters = ImageFiles.ReadTextChunks(original, "png")[ImageFiles.ParametersKey];
        Assert.Contains("Lora hashes: \"sd15-attn: ", parameters);
        var renamed = WithParameters(original, parameters.Replace("sd15-attn", "my-old-attn"));

        await using var ui = await server.OpenAsync(nameof(UserDropsAPngWhoseLoraWasRenamedSendsItToGenerateAndGetsTheSameImage), hash: "#pnginfo");
        var page = ui.Page;
        await ui.RunAsync(async () =>
        {
            await page.GetByLabel("Drop a PNG here, or choose one").SetInputFilesAsync(new FilePayload { Name = "boat.png", MimeType = "image/png", Buffer = renamed });
            await Expect(page.Locator("#png-parameters")).ToContainTextAsync("<lora:my-old-attn:0.7>");
            await Expect(page.Locator("#png-table")).ToContainTextAsync("Lora hashes");
            await Expect(page.Locator("#png-loras")).ToContainTextAsync("is here as sd15-attn");
            await ui.ShotAsync("pnginfo");

            await page.GetByRole(AriaRole.Button, new() { Name = "Send to generate" }).ClickAsync();
            await Expect(page.Locator("#screen-generate")).ToBeVisibleAsync();
            await Expect(page.GetByLabel("Prompt", new() { Exact = true })).ToHaveValueAsync("a blue boat <lora:sd15-attn:0.7>");
            await Expect(page.GetByLabel("Negative prompt")).ToHaveValueAsync("fog");
            await Expect(page.Locator("#steps")).ToHaveValueAsync("3");
            await Expect(page.Locator("#cfg")).ToHaveValueAsync("6");
            await Expect(page.Locator("#seed")).ToHaveValueAsync("777");
            await Expect(page.Locator("#width")).ToHaveValueAsync("64");
            await Expect(page.Locator("#height")).ToHaveValueAsync("64");
            await Expect(page.Locator("#sampler")).ToHaveValueAsync("euler");
            await Expect(page.Locator("#model")).ToHaveValueAsync("tiny-sd15");
            await Expect(page.Locator("#active-loras-list li[data-lora='sd15-attn']")).ToBeVisibleAsync();

            await page.GetByRole(AriaRole.Button, new() { Name = "Generate" }).ClickAsync();
            await Expect(page.Locator("#result-image")).ToBeVisibleAsync(new() { Timeout = Slow });
            Assert.Equal(WebUiServer.Pixels(original).Rgba, WebUiServer.Pixels(await ResultPng(page)).Rgba);
        });
    }

    [SkippableFact]
    public async Task UserPaintsAMaskAndInpaintsOnlyTheMaskedCornerLeavingTheRestUnchanged()
    {
        server.Require();
        await using var ui = await server.OpenAsync(nameof(UserPaintsAMaskAndInpaintsOnlyTheMaskedCornerLeavingTheRestUnchanged), hash: "#generate/inpaint");
        var page = ui.Page;
        var init = File.ReadAllBytes(Path.Combine(server.FixturesRoot, "images", "init.png"));
        await ui.RunAsync(async () =>
        {
            await page.GetByLabel("Load an image").SetInputFilesAsync(new FilePayload { Name = "init.png", MimeType = "image/png", Buffer = init });
            var mask = page.Locator("#mask-canvas");
            await Expect(mask).ToBeVisibleAsync();
            await Expect(page.Locator("#width")).ToHaveValueAsync("64");
            await page.GetByLabel("Brush size").FillAsync("4");
            // paint the top-left corner with the mouse: image pixels (4,4) to (10,10)
            await mask.ScrollIntoViewIfNeededAsync();
            var box = (await mask.BoundingBoxAsync())!;
            float X(float px) => box.X + px * box.Width / 64;
            float Y(float px) => box.Y + px * box.Height / 64;
            await page.Mouse.MoveAsync(X(4), Y(4));
            await page.Mouse.DownAsync();
            await page.Mouse.MoveAsync(X(10), Y(10), new() { Steps = 6 });
            await page.Mouse.MoveAsync(X(4), Y(10), new() { Steps = 6 });
            await page.Mouse.UpAsync();
            await page.GetByLabel("Only masked (crop and stitch)").CheckAsync();
            await page.GetByLabel("Only masked padding (px)").FillAsync("4");
            await page.GetByLabel("Mask blur").FillAsync("2");
            await Expect(page.Locator("#denoise")).ToHaveValueAsync("0.75");
            await SmallSettings(page, steps: 4, seed: "5");
            await page.GetByLabel("Prompt", new() { Exact = true }).FillAsync("a green field");
            await ui.ShotAsync("inpaint-mask");

            await page.GetByRole(AriaRole.Button, new() { Name = "Generate" }).ClickAsync();
            await Expect(page.Locator("#result-image")).ToBeVisibleAsync(new() { Timeout = Slow });
            var before = WebUiServer.Pixels(init);
            var after = WebUiServer.Pixels(await ResultPng(page));
            Assert.Equal((64, 64), (after.Width, after.Height));
            int changedFar = 0, changedNear = 0;
            for (int y = 0; y < 64; y++)
            for (int x = 0; x < 64; x++)
            {
                int i = 4 * (y * 64 + x);
                bool same = before.Rgba[i] == after.Rgba[i] && before.Rgba[i + 1] == after.Rgba[i + 1] && before.Rgba[i + 2] == after.Rgba[i + 2];
                // beyond the mask (to ~12 px with brush and blur) and the stitch's 32 px feather: copied, never recomputed
                if (x >= 50 || y >= 50) changedFar += same ? 0 : 1;
                if (x is >= 5 and <= 9 && y is >= 5 and <= 9) changedNear += same ? 0 : 1;
            }
            Assert.True(changedFar == 0, $"{changedFar} pixels far from the mask changed");
            Assert.True(changedNear > 0, "nothing changed under the mask");
            await ui.ShotAsync("inpaint");
        });
    }

    [SkippableFact]
    public async Task UserComparesLoraStrengthsAgainstStepsOnAnXYGrid()
    {
        server.Require();
        await using var ui = await server.OpenAsync(nameof(UserComparesLoraStrengthsAgainstStepsOnAnXYGrid));
        var page = ui.Page;
        await ui.RunAsync(async () =>
        {
            await page.Locator("#model").SelectOptionAsync("tiny-sd15");
            await page.GetByLabel("Prompt", new() { Exact = true }).FillAsync("a small cat <lora:sd15-attn:1>");
            await SmallSettings(page, steps: 2, seed: "42");
            await page.GetByRole(AriaRole.Link, new() { Name = "Compare" }).ClickAsync();
            await page.GetByLabel("LoRA (X axis)").SelectOptionAsync("sd15-attn");
            await page.GetByLabel("Strengths").FillAsync("0, 0.5, 1");
            await page.GetByLabel("Y axis").SelectOptionAsync("steps");
            await page.GetByLabel("Y values").FillAsync("2, 3");
            await page.GetByRole(AriaRole.Button, new() { Name = "Run grid" }).ClickAsync();
            var grid = page.Locator("#xy-canvas");
            await Expect(grid).ToBeVisibleAsync(new() { Timeout = Slow });
            await Expect(grid).ToHaveAttributeAsync("data-cells", "6");
            await Expect(grid).ToHaveAttributeAsync("data-columns", "3");
            await Expect(grid).ToHaveAttributeAsync("data-rows", "2");
            await Expect(page.Locator("#xy-status")).ToContainTextAsync("done: 6 cells");
            // one labelled image: 3 columns of 128 px cells and a label column, 2 rows and a label row
            var size = await grid.EvaluateAsync<int[]>("c => [c.width, c.height]");
            Assert.True(size[0] > 3 * 128 && size[1] > 2 * 128, $"grid is {size[0]}x{size[1]}");
            await ui.ShotAsync("compare");
        });
    }

    [SkippableFact]
    public async Task UserOpensLoraDetailsAddsATrainingTagAndSavesActivationTextAndWeight()
    {
        server.Require();
        await using var ui = await server.OpenAsync(nameof(UserOpensLoraDetailsAddsATrainingTagAndSavesActivationTextAndWeight));
        var page = ui.Page;
        var sidecar = Path.Combine(server.LoraDir, "styles", "sd15-locon.json");
        try
        {
            await ui.RunAsync(async () =>
            {
                var prompt = page.GetByLabel("Prompt", new() { Exact = true });
                await prompt.FillAsync("a castle");
                await page.GetByRole(AriaRole.Button, new() { Name = "Details of sd15-locon" }).ClickAsync();
                var dialog = page.Locator("#lora-dialog");
                await Expect(dialog).ToBeVisibleAsync();
                await Expect(dialog.Locator("#lora-meta")).ToContainTextAsync("ss_network_dim");
                await Expect(dialog.Locator("#lora-meta")).ToContainTextAsync("modelspec.architecture");
                await dialog.GetByRole(AriaRole.Button, new() { Name = "Add tag sd15_locon_style to the prompt" }).ClickAsync();
                await Expect(prompt).ToHaveValueAsync("a castle sd15_locon_style");
                await dialog.GetByLabel("Activation text").FillAsync("locon style");
                await dialog.GetByLabel("Preferred weight").FillAsync("0.6");
                await dialog.GetByRole(AriaRole.Button, new() { Name = "Save" }).ClickAsync();
                await Expect(dialog.Locator("#um-status")).ToHaveTextAsync("Saved.");
                await ui.ShotAsync("lora-details");
                using (var doc = JsonDocument.Parse(File.ReadAllText(sidecar)))
                {
                    Assert.Equal("locon style", doc.RootElement.GetProperty("activation text").GetString());
                    Assert.Equal(0.6, doc.RootElement.GetProperty("preferred weight").GetDouble());
                }
                await page.Keyboard.PressAsync("Escape");
                await Expect(dialog).ToBeHiddenAsync();

                // the card now inserts the preferred weight and the activation text, and takes both out again
                await prompt.FillAsync("a castle");
                await Expect(Card(page, "sd15-locon").Locator(".triggers")).ToContainTextAsync("locon style");
                await Card(page, "sd15-locon").Locator(".pick").ClickAsync();
                await Expect(prompt).ToHaveValueAsync("a castle <lora:sd15-locon:0.6> locon style");
                await Card(page, "sd15-locon").Locator(".pick").ClickAsync();
                await Expect(prompt).ToHaveValueAsync("a castle");
            });
        }
        finally
        {
            File.Delete(sidecar);
            await server.Http.PostAsync("/api/v1/loras/refresh", null);
        }
    }

    [SkippableFact]
    public async Task EveryScreenIsLabelledAndFitsAPhoneWidthWindow()
    {
        server.Require();
        foreach (var (width, height, prefix) in new[] { (1280, 800, "desktop"), (390, 844, "phone") })
        {
            await using var ui = await server.OpenAsync(nameof(EveryScreenIsLabelledAndFitsAPhoneWidthWindow) + "-" + prefix, width, height);
            var page = ui.Page;
            await ui.RunAsync(async () =>
            {
                foreach (var screen in new[] { "generate/txt2img", "generate/inpaint", "pnginfo", "compare", "history" })
                {
                    await page.EvaluateAsync("h => { location.hash = h; }", "#" + screen);
                    await Expect(page.Locator($"#screen-{screen.Split('/')[0]}")).ToBeVisibleAsync();
                    if (prefix == "desktop") await NoAxeViolations(page, $"{screen} at {width}px");
                    // nothing wider than the window
                    var overflow = await page.EvaluateAsync<int>("() => document.documentElement.scrollWidth - window.innerWidth");
                    Assert.True(overflow <= 0, $"{screen} at {width}px: {overflow}px wider than the window");
                    if (prefix == "phone") await ui.ShotAsync($"phone-{screen.Replace('/', '-')}", fullPage: true);
                }
                if (prefix == "desktop")
                {
                    // the LoRA details dialog too
                    await page.EvaluateAsync("() => { location.hash = '#generate'; }");
                    await page.GetByRole(AriaRole.Button, new() { Name = "Details of sd15-attn" }).ClickAsync();
                    await Expect(page.Locator("#lora-dialog")).ToBeVisibleAsync();
                    await NoAxeViolations(page, "LoRA details");
                }
            });
        }
    }

    /// <summary>axe-core's WCAG 2 A and AA rules: every control labelled, names, roles, contrast.</summary>
    static async Task NoAxeViolations(IPage page, string where)
    {
        var axe = await page.RunAxe(new AxeRunOptions { RunOnly = new RunOnlyOptions { Type = "tag", Values = ["wcag2a", "wcag2aa"] } });
        Assert.True(axe.Violations.Length == 0, $"{where}:\n" + string.Join("\n", axe.Violations.Select(v =>
            $"{v.Id}: {v.Help} ({string.Join("; ", v.Nodes.Take(4).Select(n => n.Html))})")));
    }

    /// <summary>The PNG's pixels with another parameters text (as another tool would have written it).</summary>
    static byte[] WithParameters(byte[] png, string parameters)
    {
        using var bitmap = SKBitmap.Decode(png);
        using var data = bitmap.Encode(SKEncodedImageFormat.Png, 100);
        return ImageFiles.InsertTextChunks(data.ToArray(), new Dictionary<string, string> { [ImageFiles.ParametersKey] = parameters });
    }
}
