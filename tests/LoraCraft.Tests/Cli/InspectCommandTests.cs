using System.Text.Json;
using LoraCraft.IO;
using LoraCraft.Runtime;
using Xunit;
using static TorchSharp.torch;

namespace LoraCraft.Tests.Cli;

public class InspectCommandTests
{
    public InspectCommandTests() => TorchNative.Ensure();

    static (int Code, string Out, string Err) Run(params string[] args)
    {
        var stdout = new StringWriter();
        var stderr = new StringWriter();
        int code = LoraCraft.Cli.Cli.Run(args, stdout, stderr);
        return (code, stdout.ToString(), stderr.ToString());
    }

    static readonly string LongValue = "{\"10_cat\": {\"cat\": 10}}" + new string('x', 300);

    static string Sample(TempDir dir)
    {
        var path = dir.File("lora.safetensors");
        using var down = ones([4, 8], float16);
        using var up = ones([8, 4], float16);
        using var alpha = tensor(2f);
        SafetensorsWriter.Write(path, [new("down", down), new("up", up), new("alpha", alpha)],
            new Dictionary<string, string> { ["ss_network_dim"] = "4", ["ss_tag_frequency"] = LongValue });
        return path;
    }

    [SkippableFact]
    public void TextSummaryListsCountsDtypesAndClippedMetadata()
    {
        using var dir = new TempDir();
        var path = Sample(dir);
        var (code, output, err) = Run("inspect", path);
        Assert.Equal(0, code);
        Assert.Equal("", err);
        var lines = output.Split('\n');
        Assert.Equal($"file        {path}", lines[0]);
        Assert.Contains($"size        {new FileInfo(path).Length:N0} bytes", output);
        Assert.Contains("tensors     3\n", output);
        Assert.Contains("parameters  65\n", output);
        Assert.Contains("dtypes      F32 1, F16 2\n", output);
        Assert.Contains("family      unknown\n", output);
        Assert.Contains("inpainting  no\n", output);
        Assert.Contains("metadata    2 keys\n", output);
        Assert.Contains("  ss_network_dim    4\n", output);
        var tagLine = Assert.Single(lines, l => l.StartsWith("  ss_tag_frequency", StringComparison.Ordinal));
        Assert.EndsWith($"… ({LongValue.Length} chars)", tagLine);
        Assert.Contains(LongValue[..100], tagLine);
        Assert.DoesNotContain(LongValue[..101], tagLine);
    }

    [SkippableFact]
    public void JsonSummaryHasTheDocumentedFieldsAndFullMetadata()
    {
        using var dir = new TempDir();
        var path = Sample(dir);
        var (code, output, _) = Run("inspect", path, "--json");
        Assert.Equal(0, code);
        using var json = JsonDocument.Parse(output);
        var root = json.RootElement;
        Assert.Equal(path, root.GetProperty("path").GetString());
        Assert.Equal(new FileInfo(path).Length, root.GetProperty("size_bytes").GetInt64());
        Assert.Equal(3, root.GetProperty("tensor_count").GetInt32());
        Assert.Equal(65, root.GetProperty("parameters").GetInt64());
        Assert.Equal(2, root.GetProperty("dtypes").GetProperty("F16").GetInt32());
        Assert.Equal(1, root.GetProperty("dtypes").GetProperty("F32").GetInt32());
        Assert.Equal(LongValue, root.GetProperty("metadata").GetProperty("ss_tag_frequency").GetString());
        Assert.Equal("4", root.GetProperty("metadata").GetProperty("ss_network_dim").GetString());
        Assert.Equal(JsonValueKind.Null, root.GetProperty("family").ValueKind);
        Assert.False(root.GetProperty("inpainting").GetBoolean());
    }

    [SkippableFact]
    public void MissingFileIsOneErrorLineAndExitCode2()
    {
        using var dir = new TempDir();
        var path = dir.File("nope.safetensors");
        var (code, output, err) = Run("inspect", path);
        Assert.Equal(2, code);
        Assert.Equal("", output);
        Assert.Equal($"error: file not found: {path}\n", err.ReplaceLineEndings("\n"));
    }

    [SkippableFact]
    public void MalformedFileIsOneErrorLineNamingTheFile()
    {
        using var dir = new TempDir();
        var path = dir.File("broken.safetensors");
        File.WriteAllBytes(path, [1, 2, 3]);
        var (code, _, err) = Run("inspect", path, "--json");
        Assert.Equal(2, code);
        Assert.Equal($"error: {path}: file is 3 bytes, too short for the 8-byte header length\n", err.ReplaceLineEndings("\n"));
    }

    [SkippableTheory]
    [InlineData("inspect")]
    [InlineData("inspect", "a.safetensors", "b.safetensors")]
    [InlineData("inspect", "a.safetensors", "--verbose")]
    public void BadArgumentsAreUserErrors(params string[] args)
    {
        var (code, _, err) = Run(args);
        Assert.Equal(2, code);
        Assert.Single(err.TrimEnd('\n').Split('\n'));
    }
}
