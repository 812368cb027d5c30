using System.Text.Json;
using Xunit;
using Xunit.Abstractions;

namespace LoraCraft.Tests.Conformance;

public class InspectFamilyTests
{
    [SkippableTheory]
    [InlineData("models/sd15/tiny-sd15.safetensors", "sd1", false)]
    [InlineData("models/sd15-inpaint/tiny-sd15-inpaint.safetensors", "sd1", true)]
    [InlineData("models/sd2v/tiny-sd2v.safetensors", "sd2", false)]
    [InlineData("models/sdxl/tiny-sdxl.safetensors", "sdxl", false)]
    [InlineData("loras/sd15-attn.safetensors", null, false)]
    [InlineData("loras/sdxl-attn.safetensors", null, false)]
    public void InspectJsonReportsFamily(string file, string? family, bool inpainting)
    {
        if (FixturePaths.Root is not { } root) { throw new SkipException(Fixture.MissingMessage); }
        var stdout = new StringWriter();
        int rc = LoraCraft.Cli.Cli.Run(["inspect", Path.Combine(root, file), "--json"], stdout, new StringWriter());
        Assert.Equal(0, rc);
        using var doc = JsonDocument.Parse(stdout.ToString());
        var f = doc.RootElement.GetProperty("family");
        if (family is null) Assert.Equal(JsonValueKind.Null, f.ValueKind);
        else Assert.Equal(family, f.GetString());
        Assert.Equal(inpainting, doc.RootElement.GetProperty("inpainting").GetBoolean());
    }
}
