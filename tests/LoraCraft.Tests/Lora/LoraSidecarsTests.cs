using LoraCraft.Lora;
using Xunit;

namespace LoraCraft.Tests.Lora;

public class LoraSidecarsTests
{
    [Fact]
    public void CivitaiInfoAndA1111MetadataAreRead()
    {
        using var dir = new TempDir();
        string lora = dir.File("style.safetensors");
        File.WriteAllText(dir.File("style.civitai.info"), """
            {"id": 11, "modelId": 7, "name": "v1.0", "baseModel": "Pony", "trainedWords": ["zz", " zz ", "b"], "description": "<p>version notes</p>",
             "model": {"name": "Style", "type": "LORA", "description": "<h2>Style</h2><p>Use&nbsp;it <i>gently</i>.<br>Weight 0.6</p>"}}
            """);
        File.WriteAllText(dir.File("style.json"), """{"sd version": "Unknown", "preferred weight": 0, "notes": "  ", "negative text": "blur"}""");

        var side = LoraSidecars.Read(lora);
        var c = side.Civitai!;
        Assert.Equal((11L, 7L, "Style", "v1.0", "LORA", "Pony"), (c.VersionId!.Value, c.ModelId!.Value, c.ModelName, c.VersionName, c.ModelType, c.BaseModel));
        Assert.Equal(["zz", "b"], c.TrainedWords);
        // the model's description, as text
        Assert.Equal("Style\nUse it gently.\nWeight 0.6", c.Description);
        // "Unknown" and weight 0 are A1111's "not set"; blank strings are absent
        var u = side.UserMetadata!;
        Assert.Equal((null, null, "blur"), (u.PreferredWeight, u.Notes, u.NegativeText));
        Assert.Equal("Pony", side.BaseModel);
        Assert.Equal(dir.File("style.civitai.info"), side.BaseModelSource);
        Assert.Empty(side.Problems);
    }

    [Fact]
    public void ThePreviewIsFoundInA1111sOrder()
    {
        using var dir = new TempDir();
        string lora = dir.File("x.safetensors");
        Assert.Null(LoraSidecars.Read(lora).PreviewPath);
        foreach (var name in new[] { "x.preview.webp", "x.jpg", "x.preview.png" })
        {
            File.WriteAllText(dir.File(name), "");
            Assert.Equal(dir.File(name), LoraSidecars.Read(lora).PreviewPath);
        }
        File.WriteAllText(dir.File("x.png"), "");
        Assert.Equal(dir.File("x.png"), LoraSidecars.Read(lora).PreviewPath);
    }

    [Fact]
    public void ADamagedSidecarIsAProblemNotAnError()
    {
        using var dir = new TempDir();
        File.WriteAllText(dir.File("x.civitai.info"), "{ nope");
        File.WriteAllText(dir.File("x.json"), "[1, 2]");
        var side = LoraSidecars.Read(dir.File("x.safetensors"));
        Assert.Null(side.Civitai);
        Assert.Null(side.UserMetadata);
        Assert.Equal(2, side.Problems.Count);
        Assert.Null(LoraSidecars.Triggers(dir.File("x.safetensors")));
    }

    [Fact]
    public void AWeightWrittenAsTextIsRead()
    {
        using var dir = new TempDir();
        File.WriteAllText(dir.File("x.json"), """{"preferred weight": "0.85", "sd version": "SDXL"}""");
        var side = LoraSidecars.Read(dir.File("x.safetensors"));
        Assert.Equal(0.85, side.UserMetadata!.PreferredWeight);
        Assert.Equal("SDXL", side.BaseModel);
    }
}
