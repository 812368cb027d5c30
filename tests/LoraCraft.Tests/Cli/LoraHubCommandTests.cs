using System.Text.Json;
using LoraCraft.Tests.Lora.Hub;
using Xunit;
using Xunit.Abstractions;

namespace LoraCraft.Tests.Cli;

/// <summary>`lora get`, `lora fetch-info`, `lora search` and what `lora info`/`list` then show, against fake sites on 127.0.0.1.</summary>
public sealed class LoraHubCommandTests(ITestOutputHelper output) : IDisposable
{
    readonly FakeSite _civitai = new(), _hf = new(), _cdn = new();
    readonly TempDir _dir = new();

    (int Code, string Out, string Err) Run(params string[] args)
    {
        var stdout = new StringWriter();
        var stderr = new StringWriter();
        int code = LoraCraft.Cli.Cli.Run(args, stdout, stderr);
        output.WriteLine($"$ loracraft {string.Join(' ', args)}\n{stdout}{stderr}");
        return (code, stdout.ToString().ReplaceLineEndings("\n"), stderr.ToString().ReplaceLineEndings("\n"));
    }

    string[] Sites => ["--civitai-url", _civitai.Url, "--hf-url", _hf.Url];

    void ServeCivitai()
    {
        var file = HubFixtures.Lora;
        _civitai.Json("/api/v1/model-versions/11",
            HubFixtures.CivitaiVersion(_civitai, 11, 7, "cloudStyle_v10.safetensors", file, imageUrl: $"{_cdn.Url}/images/first.webp"));
        _civitai.Json("/api/v1/models/7", HubFixtures.CivitaiModel(7, 11));
        _civitai.Redirect("/api/download/models/11", $"{_cdn.Url}/files/cloud.safetensors");
        _cdn.File("/files/cloud.safetensors", file);
        _cdn.File("/images/first.webp", HubFixtures.Jpeg(20, 10));
    }

    [Fact]
    public void GetSavesTheLoraAndInfoAndListShowItsTriggerWordsBaseModelAndPreview()
    {
        ServeCivitai();
        var (code, text, err) = Run(["lora", "get", $"{_civitai.Url}/models/7?modelVersionId=11", "--dir", _dir.Path, "--token", HubFixtures.Token, .. Sites]);
        Assert.Equal(0, code);
        string lora = _dir.File("cloudStyle_v10.safetensors");
        Assert.StartsWith($"saved {lora} (", text);
        Assert.Contains("  model         Cloud Style / v1.0 (SD 1.5)\n", text);
        Assert.Contains("  trigger words zzcloud style, fluffy\n", text);
        Assert.Contains($"  preview       {_dir.File("cloudStyle_v10.preview.png")}\n", text);
        Assert.Contains("  use it as     <lora:cloudStyle_v10:1>\n", text);
        // progress on stderr (redirected: a line per quarter), ending at the whole file
        Assert.Matches(@"cloudStyle_v10\.safetensors \[#{24}\] [\d.]+ KiB/[\d.]+ KiB", err);
        Assert.DoesNotContain(HubFixtures.Token, text + err);
        Assert.All(_civitai.Requests, r => Assert.Equal("Bearer " + HubFixtures.Token, r.Authorization));

        var (infoCode, info, _) = Run("lora", "info", "cloudStyle_v10", "--dir", _dir.Path);
        Assert.Equal(0, infoCode);
        Assert.Contains("trigger words zzcloud style, fluffy (from cloudStyle_v10.civitai.info)\n", info);
        Assert.Contains("base model    SD 1.5 (from cloudStyle_v10.civitai.info)\n", info);
        Assert.Contains("civitai       Cloud Style / v1.0 (civitai:11)\n", info);
        Assert.Contains("description   Soft clouds & sky.\\nUse at 0.8.\n", info);
        Assert.Contains($"preview       {_dir.File("cloudStyle_v10.preview.png")}\n", info);

        var (_, json, _) = Run("lora", "info", "cloudStyle_v10", "--dir", _dir.Path, "--json");
        using (var doc = JsonDocument.Parse(json))
        {
            var sidecars = doc.RootElement.GetProperty("sidecars");
            Assert.Equal(11, sidecars.GetProperty("civitai").GetProperty("version_id").GetInt32());
            Assert.Equal("SD 1.5", doc.RootElement.GetProperty("base_model").GetString());
            Assert.Equal(_dir.File("cloudStyle_v10.preview.png"), sidecars.GetProperty("preview").GetString());
        }

        var (_, list, _) = Run("lora", "list", "--dir", _dir.Path);
        Assert.Matches(@"\ncloudStyle_v10 .*\s+SD 1\.5\s+zzcloud style, fluffy\n", list);
        var (_, listJson, _) = Run("lora", "list", "--dir", _dir.Path, "--json");
        using var rows = JsonDocument.Parse(listJson);
        var row = rows.RootElement[0];
        Assert.Equal(("civitai:11", "SD 1.5"), (row.GetProperty("civitai").GetString(), row.GetProperty("base_model").GetString()));
        Assert.Equal(_dir.File("cloudStyle_v10.preview.png"), row.GetProperty("preview").GetString());
    }

    [Fact]
    public void GetJsonQuietPrintsOneObjectAndNoProgress()
    {
        ServeCivitai();
        var (code, text, err) = Run(["lora", "get", "civitai:11", "--dir", _dir.Path, "--name", "clouds", "--quiet", "--json", .. Sites]);
        Assert.Equal(0, code);
        Assert.Equal("", err);
        using var doc = JsonDocument.Parse(text);
        Assert.Equal(_dir.File("clouds.safetensors"), doc.RootElement.GetProperty("path").GetString());
        Assert.Equal("civitai:11", doc.RootElement.GetProperty("source").GetString());
        Assert.Equal(HubFixtures.Sha256(HubFixtures.Lora), doc.RootElement.GetProperty("sha256").GetString());
        Assert.Equal(["zzcloud style", "fluffy"], doc.RootElement.GetProperty("trigger_words").EnumerateArray().Select(e => e.GetString()));
        Assert.True(File.Exists(_dir.File("clouds.civitai.info")));
    }

    [Fact]
    public void ARefusedDownloadIsOneErrorLineWithoutTheToken()
    {
        _civitai.Json("/api/v1/model-versions/11", $$"""{"error": "Unauthorized", "message": "bad token {{HubFixtures.Token}}"}""", 401);
        var (code, text, err) = Run(["lora", "get", "civitai:11", "--dir", _dir.Path, "--token", HubFixtures.Token, .. Sites]);
        Assert.Equal(2, code);
        Assert.Equal("", text);
        Assert.StartsWith("error: ", err);
        Assert.Single(err.TrimEnd('\n').Split('\n'));
        Assert.Contains("HTTP 401", err);
        Assert.DoesNotContain(HubFixtures.Token, err);

        var (pickle, _, pickleErr) = Run(["lora", "get", $"{_cdn.Url}/model.ckpt", "--dir", _dir.Path, .. Sites]);
        Assert.Equal(2, pickle);
        Assert.Contains("pickle", pickleErr);
        Assert.Empty(_dir.Entries());
    }

    [Fact]
    public void FetchInfoReportsWhatCivitaiKnows()
    {
        var file = HubFixtures.Lora;
        File.WriteAllBytes(_dir.File("known.safetensors"), file);
        File.WriteAllBytes(_dir.File("stranger.safetensors"), file.Concat(new byte[] { 7 }).ToArray());
        _civitai.Json($"/api/v1/model-versions/by-hash/{HubFixtures.Sha256(file)}",
            HubFixtures.CivitaiVersion(_civitai, 11, 7, "cloudStyle_v10.safetensors", file, imageUrl: $"{_cdn.Url}/images/first.webp"));
        _civitai.Json("/api/v1/models/7", HubFixtures.CivitaiModel(7, 11));
        _cdn.File("/images/first.webp", HubFixtures.Jpeg(8, 8));

        var (code, text, _) = Run(["lora", "fetch-info", "--dir", _dir.Path, "--token", HubFixtures.Token, .. Sites]);
        Assert.Equal(0, code);
        Assert.Matches(@"(?m)^found\s+known\s+Cloud Style / v1\.0 \(SD 1\.5\)\s+civitai:11$", text);
        Assert.Matches(@"(?m)^not found\s+stranger\s*$", text);
        Assert.EndsWith($"1 found, 1 not found on Civitai, 0 skipped (info already there), 0 failed, in {_dir.Path}\n", text);
        Assert.True(File.Exists(_dir.File("known.civitai.info")));
        Assert.True(File.Exists(_dir.File("known.preview.png")));
        Assert.DoesNotContain(HubFixtures.Token, text);

        var (_, again, _) = Run(["lora", "fetch-info", "--dir", _dir.Path, "--json", .. Sites]);
        using var doc = JsonDocument.Parse(again);
        var rows = doc.RootElement.EnumerateArray().ToDictionary(e => e.GetProperty("name").GetString()!);
        Assert.Equal("skipped", rows["known"].GetProperty("status").GetString());
        Assert.Equal("civitai:11", rows["known"].GetProperty("get_id").GetString());
        Assert.Equal("not_found", rows["stranger"].GetProperty("status").GetString());

        // a site that cannot be reached: every lookup fails, the command says so with exit code 2
        File.Delete(_dir.File("known.civitai.info"));
        var (down, _, downErr) = Run("lora", "fetch-info", "--dir", _dir.Path, "--civitai-url", $"http://127.0.0.1:{LoraCraft.Tests.Text.LocalHub.FreePort()}");
        Assert.Equal(2, down);
        Assert.Contains("error: 2 lookups failed", downErr);
    }

    [Fact]
    public void SearchListsTheIdsToGet()
    {
        _civitai.Json("/api/v1/models", JsonSerializer.Serialize(new
        {
            items = new object[]
            {
                new { id = 7, name = "Cloud Style", type = "LORA", stats = new { downloadCount = 12345 }, modelVersions = new object[] { new { id = 12, name = "v2", baseModel = "SDXL 1.0" } } },
            },
            metadata = new { nextCursor = (string?)null },
        }));
        _hf.Json("/api/models", JsonSerializer.Serialize(new object[]
        {
            new { id = "someone/cloud-lora", downloads = 42, tags = new[] { "lora", "base_model:adapter:stabilityai/stable-diffusion-xl-base-1.0" } },
        }));

        var (code, text, err) = Run(["lora", "search", "cloud", "style", "--base", "sdxl", .. Sites]);
        Assert.Equal(0, code);
        Assert.Equal("", err);
        var lines = text.TrimEnd('\n').Split('\n');
        Assert.Matches(@"^ID\s+BASE\s+DOWNLOADS\s+NAME$", lines[0]);
        Assert.Matches(@"^civitai:12\s+SDXL 1\.0\s+12,345\s+Cloud Style / v2$", lines[1]);
        Assert.Matches(@"^hf:someone/cloud-lora\s+stabilityai/stable-diffusion-xl-base-1\.0\s+42\s+someone/cloud-lora$", lines[2]);
        Assert.Equal("2 LoRAs; get one with: loracraft lora get ID", lines[3]);
        Assert.Contains("baseModels=SDXL%201.0", _civitai.Requests.Single().Url);

        var (json, jsonText, _) = Run(["lora", "search", "cloud", "--source", "hf", "--json", .. Sites]);
        Assert.Equal(0, json);
        using var doc = JsonDocument.Parse(jsonText);
        Assert.Equal("hf:someone/cloud-lora", doc.RootElement.EnumerateArray().Single().GetProperty("id").GetString());

        // a token meant for one site is not sent to both
        var (both, _, bothErr) = Run(["lora", "search", "cloud", "--token", HubFixtures.Token, .. Sites]);
        Assert.Equal(2, both);
        Assert.Contains("--token needs --source civitai or --source hf", bothErr);
        Assert.DoesNotContain(HubFixtures.Token, bothErr);
    }

    [Fact]
    public void InfoShowsA1111UserMetadata()
    {
        File.WriteAllBytes(_dir.File("mine.safetensors"), HubFixtures.Lora);
        File.WriteAllText(_dir.File("mine.json"), """
            {"description": "my clouds", "sd version": "SD1", "activation text": "zzmine, soft", "preferred weight": 0.7,
             "negative text": "rain", "notes": "trained on 20 photos"}
            """);
        File.WriteAllBytes(_dir.File("mine.preview.jpg"), HubFixtures.Jpeg(4, 4));
        var (code, text, _) = Run("lora", "info", "mine", "--dir", _dir.Path);
        Assert.Equal(0, code);
        Assert.Contains("trigger words zzmine, soft (from mine.json)\n", text);
        Assert.Contains("base model    SD1 (from mine.json)\n", text);
        Assert.Contains("weight        0.7\n", text);
        Assert.Contains("negative      rain\n", text);
        Assert.Contains("notes         trained on 20 photos\n", text);
        Assert.Contains("description   my clouds\n", text);
        Assert.Contains($"preview       {_dir.File("mine.preview.jpg")}\n", text);
    }

    [Fact]
    public void LoraHelpNamesTheHubCommands()
    {
        var (code, text, _) = Run("lora", "--help");
        Assert.Equal(0, code);
        foreach (var expected in new[] { "lora get URL_OR_ID", "lora fetch-info", "lora search QUERY", "--civitai-url", "--hf-url", "--token" })
            Assert.Contains(expected, text);
        foreach (var option in LoraCraft.Cli.Commands.LoraGetCommand.Options.Concat(LoraCraft.Cli.Commands.LoraSearchCommand.Options))
            Assert.Contains("--" + option, text);
    }

    public void Dispose()
    {
        _civitai.Dispose();
        _hf.Dispose();
        _cdn.Dispose();
        _dir.Dispose();
    }
}
