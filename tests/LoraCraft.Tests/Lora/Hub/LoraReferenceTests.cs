using LoraCraft.Lora.Hub;
using Xunit;

namespace LoraCraft.Tests.Lora.Hub;

public class LoraReferenceTests
{
    static readonly HubOptions Mirror = new() { CivitaiUrl = "http://127.0.0.1:9001", HuggingFaceUrl = "https://hf-mirror.example" };

    [Theory]
    [InlineData("civitai:12345", "civitai:12345")]
    [InlineData("https://civitai.com/models/4201/cloud-style?modelVersionId=99", "civitai:99")]
    [InlineData("https://civitai.com/models/4201", "civitai model 4201")]
    [InlineData("https://civitai.com/models/4201/cloud-style", "civitai model 4201")]
    [InlineData("https://civitai.com/api/download/models/99?type=Model&format=SafeTensor&token=abc", "civitai:99")]
    [InlineData("https://civitai.green/models/4201?modelVersionId=5", "civitai:5")]
    [InlineData("http://127.0.0.1:9001/models/3?modelVersionId=4", "civitai:4")]
    [InlineData("hf:owner/repo", "hf:owner/repo")]
    [InlineData("hf:owner/repo/sub/file.safetensors", "hf:owner/repo/sub/file.safetensors")]
    [InlineData("hf:owner/repo/file.safetensors@0123abc", "hf:owner/repo/file.safetensors@0123abc")]
    [InlineData("https://huggingface.co/owner/repo", "hf:owner/repo")]
    [InlineData("https://huggingface.co/owner/repo/resolve/main/lora.safetensors?download=true", "hf:owner/repo/lora.safetensors")]
    [InlineData("https://huggingface.co/owner/repo/blob/v2/dir/lora.safetensors", "hf:owner/repo/dir/lora.safetensors@v2")]
    [InlineData("https://hf-mirror.example/owner/repo/tree/dev", "hf:owner/repo@dev")]
    [InlineData("https://example.com/files/x.safetensors?sig=1", "https://example.com/files/x.safetensors?…")]
    public void EveryFormIsUnderstood(string text, string expected) =>
        Assert.Equal(expected, LoraReference.Parse(text, Mirror).ToString());

    [Theory]
    [InlineData("", "no URL or id")]
    [InlineData("civitai:abc", "civitai: takes a model version id")]
    [InlineData("hf:justowner", "hf: takes OWNER/REPO")]
    [InlineData("hf:owner/repo@", "hf: takes OWNER/REPO")]
    [InlineData("ftp://example.com/x.safetensors", "is not a URL or an id")]
    [InlineData("https://civitai.com/user/someone", "not a Civitai model page")]
    public void NonsenseIsAUserError(string text, string expected) =>
        Assert.Contains(expected, Assert.Throws<HubException>(() => LoraReference.Parse(text, Mirror)).Message);
}
