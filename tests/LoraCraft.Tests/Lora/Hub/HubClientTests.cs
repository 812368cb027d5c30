using System.Text.Json;
using LoraCraft.IO;
using LoraCraft.Lora;
using LoraCraft.Lora.Hub;
using LoraCraft.Models;
using Xunit;

namespace LoraCraft.Tests.Lora.Hub;

/// <summary>The library API against fake Civitai / Hugging Face / CDN servers on 127.0.0.1.</summary>
public sealed class HubClientTests : IDisposable
{
    readonly FakeSite _civitai = new(), _hf = new(), _cdn = new();
    readonly TempDir _dir = new();
    readonly CancellationTokenSource _timeout = new(TimeSpan.FromSeconds(60));

    HubOptions Options(int attempts = 3) => new()
    {
        CivitaiUrl = _civitai.Url, HuggingFaceUrl = _hf.Url, CivitaiToken = HubFixtures.Token, HuggingFaceToken = HubFixtures.Token + "-hf",
        RetryDelay = TimeSpan.FromMilliseconds(10), StallTimeout = TimeSpan.FromSeconds(10), RequestTimeout = TimeSpan.FromSeconds(10), MaxAttempts = attempts,
    };

    /// <summary>Civitai version 11 of model 7: its download redirects to the CDN, its first image is a JPEG there.</summary>
    void ServeCivitaiVersion(byte[] file, string? sha256 = null, int cutTimes = 0, long cutAt = 0, string fileName = "cloudStyle_v10.safetensors",
                             string format = "SafeTensor", string type = "LORA")
    {
        _civitai.Json("/api/v1/model-versions/11",
            HubFixtures.CivitaiVersion(_civitai, 11, 7, fileName, file, sha256, imageUrl: $"{_cdn.Url}/images/first.jpeg", type: type, format: format));
        _civitai.Json("/api/v1/models/7", HubFixtures.CivitaiModel(7, 11, 10));
        _civitai.Redirect("/api/download/models/11", $"{_cdn.Url}/files/cloud.safetensors?X-Amz-Signature=secret-signature");
        _cdn.File("/files/cloud.safetensors", file, cutTimes, cutAt);
        _cdn.File("/images/first.jpeg", HubFixtures.Jpeg(24, 32));
    }

    string[] Entries() => _dir.Entries().Order(StringComparer.Ordinal).ToArray();

    [Fact]
    public async Task CivitaiVersionIsDownloadedCheckedAndGetsItsSidecars()
    {
        var file = HubFixtures.Lora;
        ServeCivitaiVersion(file);
        var reports = new List<DownloadProgress>();
        using var client = new HubClient(Options());

        var got = await client.GetAsync("civitai:11", _dir.Path, progress: new Sync<DownloadProgress>(reports.Add), ct: _timeout.Token);

        Assert.Equal(_dir.File("cloudStyle_v10.safetensors"), got.Path);
        Assert.Equal(file, File.ReadAllBytes(got.Path));
        Assert.Equal(HubFixtures.Sha256(file), got.Sha256);
        Assert.False(got.AlreadyPresent);
        Assert.Equal(["zzcloud style", "fluffy"], got.TriggerWords);
        Assert.Equal(("Cloud Style", "v1.0", "SD 1.5"), (got.ModelName, got.VersionName, got.BaseModel));
        Assert.Empty(got.Warnings);
        Assert.Equal(["cloudStyle_v10.civitai.info", "cloudStyle_v10.preview.png", "cloudStyle_v10.safetensors"], Entries());

        // the info file is Civitai's record, with the model's description added
        using var info = JsonDocument.Parse(File.ReadAllText(got.CivitaiInfoPath!));
        Assert.Equal(11, info.RootElement.GetProperty("id").GetInt32());
        Assert.Equal("SD 1.5", info.RootElement.GetProperty("baseModel").GetString());
        Assert.Contains("clouds", info.RootElement.GetProperty("model").GetProperty("description").GetString());
        // the JPEG became a PNG of the same size; the video and the mature image were passed over
        var png = File.ReadAllBytes(got.PreviewPath!);
        Assert.Equal(new byte[] { 137, 80, 78, 71 }, png[..4]);
        using (var bitmap = SkiaSharp.SKBitmap.Decode(png)) Assert.Equal((24, 32), (bitmap.Width, bitmap.Height));
        Assert.Empty(_cdn.RequestsTo("/images/video.jpeg").Concat(_cdn.RequestsTo("/images/mature.jpeg")));

        Assert.Equal(file.Length, reports[^1].BytesReceived);
        Assert.Equal(file.Length, reports[^1].TotalBytes);
        Assert.True(reports.Zip(reports.Skip(1)).All(p => p.First.BytesReceived <= p.Second.BytesReceived));

        var side = LoraSidecars.Read(got.Path);
        Assert.Equal((11L, 7L, "LORA"), (side.Civitai!.VersionId!.Value, side.Civitai.ModelId!.Value, side.Civitai.ModelType));
        Assert.Equal("Soft clouds & sky.\nUse at 0.8.", side.Civitai.Description);
        Assert.Equal(got.PreviewPath, side.PreviewPath);
        Assert.Equal(["zzcloud style", "fluffy"], LoraInfo.Read(got.Path).Triggers!.Words);

        // a second get of the same file finds it in place and downloads nothing
        int downloads = _cdn.RequestsTo("/files/cloud.safetensors").Count();
        var again = await client.GetAsync("civitai:11", _dir.Path, ct: _timeout.Token);
        Assert.True(again.AlreadyPresent);
        Assert.Equal(downloads, _cdn.RequestsTo("/files/cloud.safetensors").Count());
    }

    [Fact]
    public async Task TokenGoesAsAHeaderToItsOwnSiteOnlyAndNeverIntoAUrl()
    {
        ServeCivitaiVersion(HubFixtures.Lora);
        using var client = new HubClient(Options());
        await client.GetAsync("civitai:11", _dir.Path, ct: _timeout.Token);

        Assert.All(_civitai.Requests, r => Assert.Equal("Bearer " + HubFixtures.Token, r.Authorization));
        Assert.Contains(_civitai.Requests, r => r.Path == "/api/download/models/11");
        // the signed CDN link the download redirects to gets no token
        Assert.NotEmpty(_cdn.Requests);
        Assert.All(_cdn.Requests, r => Assert.Null(r.Authorization));
        Assert.All(_civitai.Requests.Concat(_cdn.Requests), r => Assert.DoesNotContain(HubFixtures.Token, r.Url));
        Assert.Empty(_hf.Requests);
        Assert.DoesNotContain(HubFixtures.Token, client.Options.ToString());
    }

    [Fact]
    public async Task ACutConnectionIsResumedWithARangeRequest()
    {
        var file = HubFixtures.Lora;
        long cut = file.Length * 2 / 5;
        ServeCivitaiVersion(file, cutTimes: 1, cutAt: cut);
        using var client = new HubClient(Options());

        var got = await client.GetAsync("civitai:11", _dir.Path, ct: _timeout.Token);

        Assert.Equal(file, File.ReadAllBytes(got.Path));
        var tries = _cdn.RequestsTo("/files/cloud.safetensors").ToList();
        Assert.Equal(2, tries.Count);
        Assert.Null(tries[0].Range);
        Assert.Equal($"bytes={cut}-", tries[1].Range);
        Assert.DoesNotContain(Entries(), e => e.EndsWith(".part", StringComparison.Ordinal));
    }

    [Fact]
    public async Task AnInterruptedDownloadIsKeptAndTheNextRunResumesIt()
    {
        var file = HubFixtures.Lora;
        long cut = file.Length / 3;
        ServeCivitaiVersion(file, cutTimes: 1, cutAt: cut);

        using (var once = new HubClient(Options(attempts: 1)))
        {
            var e = await Assert.ThrowsAsync<HubException>(() => once.GetAsync("civitai:11", _dir.Path, ct: _timeout.Token));
            Assert.Contains("is kept and the next try resumes it", e.Message);
            Assert.DoesNotContain("secret-signature", e.Message);
        }
        var part = Assert.Single(Entries());
        Assert.Matches(@"^\.cloudStyle_v10\.safetensors\.[0-9a-f]{12}\.part$", part);
        Assert.Equal(cut, new FileInfo(_dir.File(part)).Length);
        // not a .safetensors file: the library does not list it
        Assert.Empty(new LoraLibrary(_dir.Path).Files);

        using var client = new HubClient(Options(attempts: 1));
        var got = await client.GetAsync("civitai:11", _dir.Path, ct: _timeout.Token);
        Assert.Equal(file, File.ReadAllBytes(got.Path));
        Assert.Equal($"bytes={cut}-", _cdn.RequestsTo("/files/cloud.safetensors").Last().Range);
        Assert.DoesNotContain(Entries(), e => e.EndsWith(".part", StringComparison.Ordinal));
    }

    [Fact]
    public async Task AServerThatIgnoresTheRangeStartsTheFileOver()
    {
        var file = HubFixtures.Lora;
        ServeCivitaiVersion(file);
        _cdn.File("/files/cloud.safetensors", file, cutTimes: 1, cutAt: file.Length / 2, ranges: false);
        using var client = new HubClient(Options());
        var got = await client.GetAsync("civitai:11", _dir.Path, ct: _timeout.Token);
        Assert.Equal(file, File.ReadAllBytes(got.Path));
    }

    [Fact]
    public async Task AHashMismatchIsRefusedAndNothingIsLeftBehind()
    {
        ServeCivitaiVersion(HubFixtures.Lora, sha256: new string('a', 64));
        using var client = new HubClient(Options());
        var e = await Assert.ThrowsAsync<HubException>(() => client.GetAsync("civitai:11", _dir.Path, ct: _timeout.Token));
        Assert.Contains("SHA-256 mismatch", e.Message);
        Assert.Contains("aaaaaaaaaaaaaaaa", e.Message);
        Assert.Empty(Entries());
    }

    [Theory]
    [InlineData("cloudStyle.pt", "PickleTensor")]
    [InlineData("cloudStyle.ckpt", "PickleTensor")]
    public async Task APickleIsRefusedBeforeAnythingIsDownloaded(string fileName, string format)
    {
        ServeCivitaiVersion(HubFixtures.Lora, fileName: fileName, format: format);
        using var client = new HubClient(Options());
        var e = await Assert.ThrowsAsync<HubException>(() => client.GetAsync("civitai:11", _dir.Path, ct: _timeout.Token));
        Assert.Contains("pickle", e.Message);
        Assert.Contains("can run code", e.Message);
        Assert.Empty(_cdn.Requests);
        Assert.Empty(_civitai.RequestsTo("/api/download/models/11"));
        Assert.Empty(Entries());

        var url = await Assert.ThrowsAsync<HubException>(() => client.GetAsync($"{_cdn.Url}/files/{fileName}", _dir.Path, ct: _timeout.Token));
        Assert.Contains("pickle", url.Message);
    }

    [Fact]
    public async Task ACheckpointOrEmbeddingIsNotInstalledAsALora()
    {
        ServeCivitaiVersion(HubFixtures.Lora, type: "Checkpoint");
        using var client = new HubClient(Options());
        var e = await Assert.ThrowsAsync<HubException>(() => client.GetAsync("civitai:11", _dir.Path, ct: _timeout.Token));
        Assert.Contains("is a Checkpoint, not a LoRA", e.Message);
        Assert.Empty(_cdn.Requests);
    }

    [Theory]
    [InlineData("<html><body>Please log in</body></html>", "an HTML page")]
    [InlineData("\u0080\u0002}q\u0000.", "a Python pickle")]
    [InlineData("\u0010\u0000\u0000\u0000\u0000\u0000\u0000\u0000{\"a\": 1}      ", "not a valid safetensors file")]
    public async Task AFileThatIsNotSafetensorsIsRefusedAndNotKept(string content, string expected)
    {
        var bytes = content.Select(c => (byte)c).ToArray();
        _cdn.File("/files/fake.safetensors", bytes);
        using var client = new HubClient(Options());
        var e = await Assert.ThrowsAsync<HubException>(() => client.GetAsync($"{_cdn.Url}/files/fake.safetensors", _dir.Path, ct: _timeout.Token));
        Assert.Contains(expected, e.Message);
        Assert.Contains("it was not kept", e.Message);
        Assert.Empty(Entries());
    }

    [Fact]
    public async Task APlainUrlIsDownloadedUnderItsFileNameOrTheNameGiven()
    {
        var file = HubFixtures.Lora;
        _cdn.File("/some/path/My Lora.safetensors", file);
        using var client = new HubClient(Options());
        var got = await client.GetAsync($"{_cdn.Url}/some/path/My%20Lora.safetensors?download=true", _dir.Path, ct: _timeout.Token);
        Assert.Equal(_dir.File("My Lora.safetensors"), got.Path);
        Assert.Equal(file, File.ReadAllBytes(got.Path));
        // no token of Civitai's or Hugging Face's goes to another host
        Assert.All(_cdn.Requests, r => Assert.Null(r.Authorization));

        var named = await client.GetAsync($"{_cdn.Url}/some/path/My%20Lora.safetensors", _dir.Path, name: "renamed", ct: _timeout.Token);
        Assert.Equal(_dir.File("renamed.safetensors"), named.Path);
        await Assert.ThrowsAsync<HubException>(() => client.GetAsync($"{_cdn.Url}/x.safetensors", _dir.Path, name: "../escape", ct: _timeout.Token));

        // a different file under a name already taken is refused unless overwriting is asked for
        _cdn.File("/other.safetensors", file.Concat(new byte[] { 0 }).ToArray());
        var taken = await Assert.ThrowsAsync<HubException>(() => client.GetAsync($"{_cdn.Url}/other.safetensors", _dir.Path, name: "renamed", ct: _timeout.Token));
        Assert.Contains("already exists", taken.Message);
    }

    [Fact]
    public async Task AModelPageUrlGetsTheNewestVersion()
    {
        ServeCivitaiVersion(HubFixtures.Lora);
        using var client = new HubClient(Options());
        var got = await client.GetAsync($"{_civitai.Url}/models/7/cloud-style", _dir.Path, ct: _timeout.Token);
        Assert.Equal("civitai:11", got.Source);
        Assert.Single(_civitai.RequestsTo("/api/v1/model-versions/11"));
    }

    [Fact]
    public async Task AHuggingFaceRepoGivesItsLoraWithActivationTextAndPreview()
    {
        var file = HubFixtures.Lora;
        string commit = new('c', 40);
        _hf.Json("/api/models/someone/cloud-lora", JsonSerializer.Serialize(new
        {
            _id = "66aa", id = "someone/cloud-lora", modelId = "someone/cloud-lora", sha = commit, downloads = 42, likes = 3,
            tags = new[] { "diffusers", "lora", "text-to-image", "base_model:adapter:stabilityai/stable-diffusion-xl-base-1.0" },
            cardData = new
            {
                base_model = "stabilityai/stable-diffusion-xl-base-1.0", instance_prompt = "a photo of sks clouds",
                widget = new[] { new { text = "clouds", output = new { url = "images/example.jpg" } } },
            },
            siblings = new object[]
            {
                new { rfilename = ".gitattributes", size = 1519 },
                new { rfilename = "README.md", size = 800 },
                new { rfilename = "images/example.jpg", size = 2000, lfs = new { sha256 = new string('e', 64), size = 2000, pointerSize = 130 } },
                new { rfilename = "pytorch_lora_weights.safetensors", size = file.Length, lfs = new { sha256 = HubFixtures.Sha256(file), size = file.Length, pointerSize = 135 } },
            },
        }));
        // the hub answers with a redirect to its CDN, naming the file's SHA-256 and size, as huggingface.co does
        _hf.Redirect($"/someone/cloud-lora/resolve/{commit}/pytorch_lora_weights.safetensors", $"{_cdn.Url}/lfs/abc?Signature=xyz",
            new Dictionary<string, string> { ["X-Linked-Size"] = file.Length.ToString(), ["X-Linked-Etag"] = $"\"{HubFixtures.Sha256(file)}\"", ["X-Repo-Commit"] = commit });
        _hf.Redirect($"/someone/cloud-lora/resolve/{commit}/images/example.jpg", $"{_cdn.Url}/lfs/img");
        _cdn.File("/lfs/abc", file);
        _cdn.File("/lfs/img", HubFixtures.Jpeg(16, 16));
        using var client = new HubClient(Options());

        var got = await client.GetAsync("hf:someone/cloud-lora", _dir.Path, ct: _timeout.Token);

        Assert.Equal(_dir.File("cloud-lora.safetensors"), got.Path);
        Assert.Equal(file, File.ReadAllBytes(got.Path));
        Assert.Equal(HubSite.HuggingFace, got.Site);
        Assert.Equal(["a photo of sks clouds"], got.TriggerWords);
        var side = LoraSidecars.Read(got.Path);
        Assert.Equal(("SDXL", "a photo of sks clouds", $"{_hf.Url}/someone/cloud-lora"), (side.UserMetadata!.SdVersion, side.UserMetadata.ActivationText, side.UserMetadata.Notes));
        Assert.Equal("SDXL", side.BaseModel);
        Assert.Equal(_dir.File("cloud-lora.preview.png"), side.PreviewPath);
        Assert.All(_hf.Requests, r => Assert.Equal("Bearer " + HubFixtures.Token + "-hf", r.Authorization));
        Assert.All(_cdn.Requests, r => Assert.Null(r.Authorization));
        Assert.Empty(_civitai.Requests);

        // a user's own NAME.json is never replaced
        File.WriteAllText(side.UserMetadataPath!, """{"activation text": "mine"}""");
        File.Delete(got.Path);
        await client.GetAsync($"{_hf.Url}/someone/cloud-lora/blob/main/pytorch_lora_weights.safetensors", _dir.Path, ct: _timeout.Token);
        Assert.Equal("mine", LoraSidecars.Read(got.Path).UserMetadata!.ActivationText);
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task WithoutTheRepoApiTheFileHeadersGiveSizeAndHash(bool rightHash)
    {
        // a mirror that serves files but not /api/models: the hub's X-Linked-Size / X-Linked-Etag are what the file is checked against
        var file = HubFixtures.Lora;
        string sha = rightHash ? HubFixtures.Sha256(file) : new string('b', 64);
        _hf.Redirect("/someone/cloud-lora/resolve/main/clouds.safetensors", $"{_cdn.Url}/lfs/abc",
            new Dictionary<string, string> { ["X-Linked-Size"] = file.Length.ToString(), ["X-Linked-Etag"] = $"\"{sha}\"" });
        _cdn.File("/lfs/abc", file);
        using var client = new HubClient(Options());
        var task = client.GetAsync($"{_hf.Url}/someone/cloud-lora/resolve/main/clouds.safetensors?download=true", _dir.Path, ct: _timeout.Token);
        if (!rightHash)
        {
            Assert.Contains("SHA-256 mismatch", (await Assert.ThrowsAsync<HubException>(() => task)).Message);
            Assert.Empty(Entries());
            return;
        }
        var got = await task;
        Assert.Equal(file, File.ReadAllBytes(got.Path));
        Assert.Contains(got.Warnings, w => w.StartsWith("no model card", StringComparison.Ordinal));
        Assert.Contains(_hf.Requests, r => r.Method == "HEAD");
    }

    [Fact]
    public async Task AHuggingFaceRepoWithOnlyAPickleIsRefused()
    {
        _hf.Json("/api/models/someone/old-lora", """{"id": "someone/old-lora", "sha": "0123456789012345678901234567890123456789", "siblings": [{"rfilename": "pytorch_lora_weights.bin"}]}""");
        using var client = new HubClient(Options());
        var e = await Assert.ThrowsAsync<HubException>(() => client.GetAsync("hf:someone/old-lora", _dir.Path, ct: _timeout.Token));
        Assert.Contains("pytorch_lora_weights.bin', a pickle", e.Message);
        var named = await Assert.ThrowsAsync<HubException>(() => client.GetAsync("hf:someone/old-lora/pytorch_lora_weights.bin", _dir.Path, ct: _timeout.Token));
        Assert.Contains("pickle", named.Message);
        Assert.Empty(Entries());
    }

    [Fact]
    public async Task FetchInfoFindsFilesBySha256OrTheirDataHashAndSkipsThoseWithInfo()
    {
        var file = HubFixtures.Lora;
        File.WriteAllBytes(_dir.File("bysha.safetensors"), file);
        // the same tensors with edited metadata: a different SHA-256, the same AutoV3 data hash
        var edited = EditedMetadata(file);
        File.WriteAllBytes(_dir.File("edited.safetensors"), edited);
        File.WriteAllBytes(_dir.File("unknown.safetensors"), file.Concat(new byte[] { 1 }).ToArray()); // not valid, not known
        File.WriteAllBytes(_dir.File("has-info.safetensors"), file);
        File.WriteAllText(_dir.File("has-info.civitai.info"), """{"id": 5, "modelId": 4, "model": {"name": "Mine"}}""");
        File.WriteAllBytes(_dir.File("edited.png"), HubFixtures.Jpeg(4, 4)); // the user's own preview stays
        _civitai.Json($"/api/v1/model-versions/by-hash/{HubFixtures.Sha256(file)}",
            HubFixtures.CivitaiVersion(_civitai, 11, 7, "cloudStyle_v10.safetensors", file, imageUrl: $"{_cdn.Url}/images/first.jpeg"));
        _civitai.Json($"/api/v1/model-versions/by-hash/{HubFixtures.AutoV3(edited)}",
            HubFixtures.CivitaiVersion(_civitai, 12, 7, "cloudStyle_v12.safetensors", file, imageUrl: $"{_cdn.Url}/images/first.jpeg"));
        _civitai.Json("/api/v1/models/7", HubFixtures.CivitaiModel(7, 12, 11));
        _cdn.File("/images/first.jpeg", HubFixtures.Jpeg(8, 8));
        using var hashes = new TempDir();
        using var client = new HubClient(Options());

        var results = (await client.FetchInfoAsync(new LoraLibrary(_dir.Path).Files, hashes: new FileHashes(hashes.File("h.json")), ct: _timeout.Token))
            .ToDictionary(r => Path.GetFileNameWithoutExtension(r.Path));

        Assert.Equal((FetchInfoStatus.Found, 11L), (results["bysha"].Status, results["bysha"].VersionId!.Value));
        Assert.Equal((FetchInfoStatus.Found, 12L), (results["edited"].Status, results["edited"].VersionId!.Value));
        Assert.Equal(FetchInfoStatus.NotFound, results["unknown"].Status);
        Assert.Equal((FetchInfoStatus.Skipped, "Mine"), (results["has-info"].Status, results["has-info"].ModelName));
        Assert.Equal(["zzcloud style", "fluffy"], LoraSidecars.Triggers(_dir.File("bysha.safetensors"))!.Words);
        Assert.Equal(_dir.File("bysha.preview.png"), LoraSidecars.Read(_dir.File("bysha.safetensors")).PreviewPath);
        Assert.Equal(_dir.File("edited.png"), LoraSidecars.Read(_dir.File("edited.safetensors")).PreviewPath);
        Assert.False(File.Exists(_dir.File("edited.preview.png")));
        Assert.Equal(5, LoraSidecars.Read(_dir.File("has-info.safetensors")).Civitai!.VersionId);
        // the hashes asked for: SHA-256 first, AutoV3 only when that found nothing
        var asked = _civitai.Requests.Where(r => r.Path.Contains("/by-hash/")).Select(r => r.Path.Split('/')[^1]).ToList();
        Assert.Equal(3, asked.Count(h => h.Length == 64)); // bysha, edited, unknown
        Assert.Equal(asked.Count, asked.Distinct().Count());
        Assert.Equal([HubFixtures.AutoV3(edited)], asked.Where(h => h.Length == 12)); // unknown is no valid safetensors: no AutoV3
    }

    [Fact]
    public async Task SearchReturnsIdsForGetFromBothSites()
    {
        _civitai.Json("/api/v1/models", JsonSerializer.Serialize(new
        {
            items = new object[]
            {
                new
                {
                    id = 7, name = "Cloud Style", type = "LORA", nsfw = false, stats = new { downloadCount = 1234 },
                    modelVersions = new object[] { new { id = 12, name = "v2 XL", baseModel = "SDXL 1.0" }, new { id = 11, name = "v1", baseModel = "SD 1.5" } },
                },
                new { id = 8, name = "Sky", type = "LORA", stats = new { downloadCount = 99 }, modelVersions = new object[] { new { id = 20, name = "v1", baseModel = "Pony" } } },
            },
            metadata = new { nextCursor = "abc", pageSize = 20 },
        }));
        _hf.Json("/api/models", JsonSerializer.Serialize(new object[]
        {
            new { _id = "1", id = "someone/cloud-lora", downloads = 42, likes = 1, tags = new[] { "lora", "base_model:adapter:stabilityai/stable-diffusion-xl-base-1.0" } },
            new { _id = "2", id = "other/sd15-clouds", downloads = 7, likes = 0, tags = new[] { "lora", "base_model:runwayml/stable-diffusion-v1-5" } },
        }));
        using var client = new HubClient(Options());

        var civitai = await client.SearchAsync("cloud style", HubSite.Civitai, ModelFamily.Sd1, 5, _timeout.Token);
        Assert.Equal(["civitai:11", "civitai:20"], civitai.Select(h => h.Id));
        Assert.Equal(("Cloud Style", "v1", "SD 1.5", 1234L), (civitai[0].Name, civitai[0].Version, civitai[0].BaseModel, civitai[0].Downloads!.Value));
        var query = _civitai.Requests.Single().Url;
        Assert.Contains("query=cloud%20style", query);
        Assert.Contains("types=LORA", query);
        Assert.Contains("baseModels=SD%201.5", query);
        Assert.Contains("limit=5", query);

        var hf = await client.SearchAsync("clouds", HubSite.HuggingFace, ModelFamily.Sdxl, 5, _timeout.Token);
        var hit = Assert.Single(hf);
        Assert.Equal(("hf:someone/cloud-lora", ModelFamily.Sdxl, 42L), (hit.Id, hit.Family!.Value, hit.Downloads!.Value));
        Assert.Contains("filter=lora", _hf.Requests.Single().Url);
        Assert.Equal(ModelFamily.Sd1, (await client.SearchAsync("clouds", HubSite.HuggingFace, null, 5, _timeout.Token))[1].Family);
    }

    [Fact]
    public async Task AnHttpErrorSaysWhatTheSiteSaidAndNeverTheToken()
    {
        _civitai.Json("/api/v1/model-versions/11", $$"""{"error": "Unauthorized", "message": "token {{HubFixtures.Token}} is not valid"}""", 401);
        using var client = new HubClient(Options());
        var e = await Assert.ThrowsAsync<HubException>(() => client.GetAsync("civitai:11", _dir.Path, ct: _timeout.Token));
        Assert.Contains("HTTP 401", e.Message);
        Assert.Contains("is not valid", e.Message);
        Assert.Contains("the token was refused", e.Message);
        Assert.DoesNotContain(HubFixtures.Token, e.Message);

        var missing = await Assert.ThrowsAsync<HubException>(() => client.GetAsync("civitai:99", _dir.Path, ct: _timeout.Token));
        Assert.Contains("Civitai has no published model version 99", missing.Message);
    }

    /// <summary>The file with its header's metadata changed (as SwarmUI's editor does): the tensor data is untouched.</summary>
    static byte[] EditedMetadata(byte[] file)
    {
        using var dir = new TempDir();
        var path = dir.File("x.safetensors");
        File.WriteAllBytes(path, file);
        var header = SafetensorsHeader.Read(path);
        using var doc = JsonDocument.Parse(file.AsSpan(8, (int)header.DataOffset - 8).ToArray());
        var entries = doc.RootElement.EnumerateObject().Where(p => p.Name != "__metadata__")
            .ToDictionary(p => p.Name, p => (object)p.Value.Clone());
        entries["__metadata__"] = new Dictionary<string, string> { ["edited"] = "yes" };
        var json = JsonSerializer.SerializeToUtf8Bytes(entries);
        int padded = (json.Length + 7) / 8 * 8;
        var bytes = new byte[8 + padded + (file.Length - header.DataOffset)];
        BitConverter.GetBytes((long)padded).CopyTo(bytes, 0);
        json.CopyTo(bytes, 8);
        for (int i = 8 + json.Length; i < 8 + padded; i++) bytes[i] = (byte)' ';
        file.AsSpan((int)header.DataOffset).CopyTo(bytes.AsSpan(8 + padded));
        return bytes;
    }

    sealed class Sync<T>(Action<T> report) : IProgress<T>
    {
        public void Report(T value) => report(value);
    }

    public void Dispose()
    {
        _timeout.Dispose();
        _civitai.Dispose();
        _hf.Dispose();
        _cdn.Dispose();
        _dir.Dispose();
    }
}
