using System.Text.Json;
using LoraCraft.Lora.Hub;

namespace LoraCraft.Tests.Lora.Hub;

/// <summary>
/// Civitai, its CDN and Hugging Face as <see cref="FakeSite"/>s on 127.0.0.1, with the answers the
/// server and web UI tests need: Civitai version 11 of model 7 (the fixture LoRA, a JPEG preview on
/// the CDN, trigger words), a search result on each site, and hash lookups.
/// </summary>
sealed class FakeHub : IDisposable
{
    public FakeSite Civitai { get; } = new();
    public FakeSite Cdn { get; } = new();
    public FakeSite Hf { get; } = new();

    /// <summary>Base URLs here, the test token for Civitai, short timeouts (every request ends within seconds).</summary>
    public HubOptions Options => new()
    {
        CivitaiUrl = Civitai.Url, HuggingFaceUrl = Hf.Url, CivitaiToken = HubFixtures.Token,
        RetryDelay = TimeSpan.FromMilliseconds(10), StallTimeout = TimeSpan.FromSeconds(10), RequestTimeout = TimeSpan.FromSeconds(10), MaxAttempts = 2,
    };

    /// <summary>civitai:11 (model 7): its download redirects to the CDN; its first image is a JPEG there.</summary>
    public void ServeVersion(byte[] file, string fileName = "cloudStyle_v10.safetensors", string? sha256 = null, string format = "SafeTensor",
                             string[]? trainedWords = null)
    {
        Civitai.Json("/api/v1/model-versions/11",
            HubFixtures.CivitaiVersion(Civitai, 11, 7, fileName, file, sha256, imageUrl: $"{Cdn.Url}/images/first.jpeg", format: format, trainedWords: trainedWords));
        Civitai.Json("/api/v1/models/7", HubFixtures.CivitaiModel(7, 11, 10));
        Civitai.Redirect("/api/download/models/11", $"{Cdn.Url}/files/cloud.safetensors?X-Amz-Signature=secret-signature");
        Cdn.File("/files/cloud.safetensors", file);
        Cdn.File("/images/first.jpeg", HubFixtures.Jpeg(24, 32));
    }

    /// <summary>Civitai knows <paramref name="file"/> by its SHA-256 as version 11.</summary>
    public void ServeByHash(byte[] file, string fileName)
    {
        Civitai.Json($"/api/v1/model-versions/by-hash/{HubFixtures.Sha256(file)}",
            HubFixtures.CivitaiVersion(Civitai, 11, 7, fileName, file, imageUrl: $"{Cdn.Url}/images/first.jpeg"));
        Civitai.Json("/api/v1/models/7", HubFixtures.CivitaiModel(7, 11, 10));
        Cdn.File("/images/first.jpeg", HubFixtures.Jpeg(24, 32));
    }

    /// <summary>Civitai's search finds "Cloud Style" (civitai:11, SD 1.5); Hugging Face's finds someone/cloud-lora (SDXL).</summary>
    public void ServeSearch()
    {
        Civitai.Json("/api/v1/models", JsonSerializer.Serialize(new
        {
            items = new object[]
            {
                new
                {
                    id = 7, name = "Cloud Style", type = "LORA", nsfw = false, stats = new { downloadCount = 1234 },
                    modelVersions = new object[] { new { id = 11, name = "v1.0", baseModel = "SD 1.5" } },
                },
            },
            metadata = new { pageSize = 20 },
        }));
        Hf.Json("/api/models", JsonSerializer.Serialize(new object[]
        {
            new { _id = "1", id = "someone/cloud-lora", downloads = 42, likes = 1, tags = new[] { "lora", "base_model:adapter:stabilityai/stable-diffusion-xl-base-1.0" } },
        }));
    }

    public void Dispose()
    {
        Civitai.Dispose();
        Cdn.Dispose();
        Hf.Dispose();
    }
}
