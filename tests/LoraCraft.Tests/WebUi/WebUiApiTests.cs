using System.Text.Json;
using LoraCraft.Generation;
using LoraCraft.Models;
using LoraCraft.Server;
using Xunit;

namespace LoraCraft.Tests.WebUi;

/// <summary>What the web UI needs from the native API beyond issue 10's routes.</summary>
public sealed class WebUiApiTests
{
    [Fact]
    public void AGenerateRequestCarriesThePngsLoraHashesIntoTheJob()
    {
        var body = """{"prompt":"a boat <lora:old-name:0.7>","seed":"777","known_lora_hashes":{"old-name":"20ee4faa5e6d"}}""";
        var request = JsonSerializer.Deserialize<NativeGenerateRequest>(body, new JsonSerializerOptions(LoraServer.Json)
        {
            NumberHandling = System.Text.Json.Serialization.JsonNumberHandling.AllowReadingFromString,
        })!;
        var job = NativeRoutes.ToJob(request);
        Assert.Equal("20ee4faa5e6d", job.KnownLoraHashes!["old-name"]);
        Assert.Equal(777UL, job.Seed);
    }

    [SkippableFact]
    public void TheFamilyOfACheckpointIsReadFromItsHeaderOrItsFolder()
    {
        var root = Conformance.Fixture.Require().Root;
        foreach (var (kind, family) in new[] { ("sd15", ModelFamily.Sd1), ("sd2v", ModelFamily.Sd2), ("sdxl", ModelFamily.Sdxl) })
        {
            var file = Path.Combine(root, "models", kind, $"tiny-{kind}.safetensors");
            Assert.Equal(family, CheckpointFamily.Of(new CheckpointEntry(kind, file, null, CheckpointKind.SingleFile)));
            var folder = Path.Combine(root, "models", kind, "diffusers");
            Assert.Equal(family, CheckpointFamily.Of(new CheckpointEntry(kind, folder, null, CheckpointKind.Diffusers)));
        }
        using var dir = new TempDir();
        File.WriteAllText(dir.File("broken.safetensors"), "not a checkpoint");
        Assert.Null(CheckpointFamily.Of(new CheckpointEntry("broken", dir.File("broken.safetensors"), null, CheckpointKind.SingleFile)));
        Assert.Null(CheckpointFamily.Of(new CheckpointEntry("old", dir.File("old.ckpt"), null, CheckpointKind.Pickle)));
    }
}
