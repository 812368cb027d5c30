using System.Security.Cryptography;
using System.Text.Json;
using LoraCraft.Runtime;
using SkiaSharp;

namespace LoraCraft.Tests.Lora.Hub;

/// <summary>The LoRA the fake sites serve, and answers shaped like Civitai's and Hugging Face's (developer.civitai.com, huggingface.co/docs/hub/api).</summary>
static class HubFixtures
{
    public const string Token = "lc-test-token-7f3a9c1e5b";

    static readonly Lazy<byte[]> Bytes = new(() =>
    {
        // the shared fixture LoRA when present (copied to a temp folder, never into the repo), else a small generated one
        using var dir = new TempDir();
        string path = dir.File("lora.safetensors");
        if (FixturePaths.Root is { } root) System.IO.File.Copy(Path.Combine(root, "loras", "sd15-attn.safetensors"), path);
        else
        {
            TorchNative.Ensure();
            LoraInfoTests.WriteLora(path, Enumerable.Range(0, 40).Select(i => ($"lora_unet_block_{i}", 4L, (float?)2f)), width: 256);
        }
        return System.IO.File.ReadAllBytes(path);
    });

    public static byte[] Lora => Bytes.Value;
    public static string Sha256(byte[] b) => Convert.ToHexStringLower(SHA256.HashData(b));

    /// <summary>Civitai's AutoV3: the SHA-256 of a safetensors file's data section, first 12 hex digits.</summary>
    public static string AutoV3(byte[] b)
    {
        long header = BitConverter.ToInt64(b, 0);
        return Convert.ToHexStringLower(SHA256.HashData(b.AsSpan((int)(8 + header))))[..12];
    }

    public static byte[] Jpeg(int width, int height)
    {
        using var bitmap = new SKBitmap(width, height);
        bitmap.Erase(new SKColor(200, 80, 40));
        using var data = bitmap.Encode(SKEncodedImageFormat.Jpeg, 90);
        return data.ToArray();
    }

    /// <summary>A model-version record as `/api/v1/model-versions/{id}` and `/by-hash/{hash}` answer it.</summary>
    public static string CivitaiVersion(FakeSite civitai, long versionId, long modelId, string fileName, byte[] file, string? sha256 = null,
                                        string? imageUrl = null, string type = "LORA", string format = "SafeTensor", string? downloadUrl = null,
                                        string baseModel = "SD 1.5", string[]? trainedWords = null) =>
        JsonSerializer.Serialize(new Dictionary<string, object?>
        {
            ["id"] = versionId,
            ["modelId"] = modelId,
            ["name"] = "v1.0",
            ["description"] = "<p>first release</p>",
            ["baseModel"] = baseModel,
            ["baseModelType"] = "Standard",
            ["trainedWords"] = trainedWords ?? ["zzcloud style", "fluffy"],
            ["stats"] = new { downloadCount = 1234, thumbsUpCount = 56 },
            ["model"] = new { name = "Cloud Style", type, nsfw = false, poi = false },
            ["files"] = new object[]
            {
                new
                {
                    id = 900 + versionId,
                    name = fileName,
                    type = "Model",
                    sizeKB = file.Length / 1024.0,
                    metadata = new { format, size = "pruned", fp = "fp16" },
                    pickleScanResult = "Success",
                    virusScanResult = "Success",
                    hashes = new Dictionary<string, string>
                    {
                        ["AutoV2"] = (sha256 ?? Sha256(file))[..10].ToUpperInvariant(),
                        ["SHA256"] = (sha256 ?? Sha256(file)).ToUpperInvariant(),
                    },
                    downloadUrl = downloadUrl ?? $"{civitai.Url}/api/download/models/{versionId}",
                    primary = true,
                },
            },
            ["images"] = imageUrl is null ? Array.Empty<object>() : new object[]
            {
                new { url = imageUrl.Replace("first", "video"), nsfwLevel = 1, width = 450, height = 600, type = "video" },
                new { url = imageUrl.Replace("first", "mature"), nsfwLevel = 8, width = 450, height = 600, type = "image" },
                new { url = imageUrl, nsfwLevel = 1, width = 450, height = 600, type = "image" },
            },
            ["downloadUrl"] = downloadUrl ?? $"{civitai.Url}/api/download/models/{versionId}",
        });

    /// <summary>A model record as `/api/v1/models/{id}` answers it (newest version first).</summary>
    public static string CivitaiModel(long modelId, params long[] versionIds) => JsonSerializer.Serialize(new
    {
        id = modelId,
        name = "Cloud Style",
        description = "<p>Soft <b>clouds</b> &amp; sky.</p><p>Use at 0.8.</p>",
        type = "LORA",
        tags = new[] { "style", "clouds" },
        stats = new { downloadCount = 1234 },
        modelVersions = versionIds.Select(v => new { id = v, name = $"v{v}", baseModel = "SD 1.5" }),
    });
}
