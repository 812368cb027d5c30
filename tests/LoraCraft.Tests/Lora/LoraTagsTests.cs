using LoraCraft.Lora;
using Xunit;

namespace LoraCraft.Tests.Lora;

public class LoraTagsTests
{
    static LoraTag Single(string prompt)
    {
        var (_, tags) = LoraTags.Extract(prompt);
        return Assert.Single(tags);
    }

    [SkippableTheory]
    [InlineData("<lora:style>", "style", 1.0, 1.0, null)]
    [InlineData("<lora:style:0.5>", "style", 0.5, 0.5, null)]
    [InlineData("<lora:style:0.5:0.8>", "style", 0.5, 0.8, null)]
    [InlineData("<lora:style:0.5:0.8:16>", "style", 0.5, 0.8, 16)]
    [InlineData("<lora:style:te=0.25>", "style", 0.25, 0.25, null)]
    [InlineData("<lora:style:unet=0.3>", "style", 1.0, 0.3, null)]
    [InlineData("<lora:style:0.7:unet=-0.2:dyn=8>", "style", 0.7, -0.2, 8)]
    [InlineData("<lora:style:te=0.1:0.9>", "style", 0.1, 0.1, null)] // named te wins over the positional one
    [InlineData("<lyco:style:0.6>", "style", 0.6, 0.6, null)]
    [InlineData("<lora: my style v2 : 1e-1 >", "my style v2", 0.1, 0.1, null)]
    public void A1111Forms(string prompt, string name, double te, double unet, int? dyn)
    {
        Assert.Equal(new LoraTag(name, te, unet, dyn), Single(prompt));
    }

    [SkippableFact]
    public void TagsAreRemovedAndTheSurroundingTextKept()
    {
        var (text, tags) = LoraTags.Extract("a <lora:a:0.5>cat, (sitting:1.2) <lyco:b> on a mat<lora:c:1:0>");
        // removed as A1111 does: no space is added or taken away
        Assert.Equal("a cat, (sitting:1.2)  on a mat", text);
        Assert.Equal([new LoraTag("a", 0.5, 0.5, null), new LoraTag("b", 1, 1, null), new LoraTag("c", 1, 0, null)], tags);
    }

    [SkippableFact]
    public void APromptWithoutTagsIsUnchanged()
    {
        var (text, tags) = LoraTags.Extract("a <b>bold</b> <hypernet:x:1> claim");
        Assert.Equal("a <b>bold</b> <hypernet:x:1> claim", text);
        Assert.Empty(tags);
    }

    [SkippableTheory]
    [InlineData("<lora:style:strong>", "'strong' is not a number")]
    [InlineData("<lora:style:0.5:unet=x>", "'x' is not a number")]
    [InlineData("<lora::0.5>", "names no LoRA")]
    public void BadTagsAreUserErrorsNamingTheTag(string prompt, string problem)
    {
        var e = Assert.Throws<UserErrorException>(() => LoraTags.Extract("a cat " + prompt));
        Assert.Contains(problem, e.Message);
        Assert.Contains(prompt, e.Message);
    }

    [SkippableTheory]
    [InlineData("style", "style", 1.0, 1.0)]
    [InlineData("style:0.8", "style", 0.8, 0.8)]
    [InlineData("style:0.8:0", "style", 0.8, 0.0)] // LoraLoaderModelOnly: UNet only
    [InlineData("style:-1:0.5", "style", -1.0, 0.5)]
    [InlineData("/loras/v1:final.safetensors", "/loras/v1:final.safetensors", 1.0, 1.0)]
    [InlineData("/loras/v1:final.safetensors:0.7", "/loras/v1:final.safetensors", 0.7, 0.7)]
    [InlineData(@"C:\loras\x.safetensors:0.5:0.25", @"C:\loras\x.safetensors", 0.5, 0.25)]
    public void CommandLineOptionIsFileOrNameThenUNetThenTe(string value, string name, double unet, double te)
    {
        Assert.Equal(new LoraTag(name, te, unet, null), LoraTags.ParseOption(value));
    }

    [SkippableFact]
    public void AnOptionWithOnlyNumbersNamesNoLora()
    {
        Assert.Contains("names no LoRA", Assert.Throws<UserErrorException>(() => LoraTags.ParseOption(":0.5")).Message);
    }
}
