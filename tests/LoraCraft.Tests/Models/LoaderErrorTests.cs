using LoraCraft.IO;
using LoraCraft.Models.Loading;
using LoraCraft.Tests.Conformance;
using Xunit;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace LoraCraft.Tests.Models;

/// <summary>Files that are not a loadable checkpoint: each gives one clear error that says what is wrong.</summary>
public sealed class LoaderErrorTests(ITestOutputHelper output) : IDisposable
{
    readonly TempDir _dir = new();

    public void Dispose() => _dir.Dispose();

    bool Skip()
    {
        if (Fixture.Instance is not null) return false;
        throw new SkipException(Fixture.MissingMessage);
    }

    static LoadOptions WithConfig(string kind) => new() { ConfigDir = Fixture.Instance!.DiffusersDir(kind) };

    static void AssertPickleRefused(string path)
    {
        var e = Assert.Throws<ModelLoadException>(() => CheckpointLoader.Load(path));
        Assert.StartsWith(path + ": pickle checkpoints", e.Message);
        Assert.Contains("convert it to .safetensors", e.Message);
    }

    [SkippableTheory]
    [InlineData("model.ckpt")]
    [InlineData("model.pt")]
    [InlineData("model.pth")]
    [InlineData("model.bin")]
    [InlineData("MODEL.CKPT")]
    public void PickleFilesAreRefusedUnread(string name)
    {
        // protocol-2 pickle of a global call: loading it would import and run os.system
        var path = _dir.File(name);
        File.WriteAllBytes(path, [0x80, 0x02, .."cos\nsystem\n(S'true'\ntR."u8]);
        AssertPickleRefused(path);
    }

    [SkippableFact]
    public void PickleExtensionIsRefusedEvenOverSafetensorsContent()
    {
        // a valid safetensors file under a pickle name gives the same answer: the content is never read
        var path = _dir.File("model.ckpt");
        using var w = ones(2, 3, dtype: float16);
        SafetensorsWriter.Write(path, [new("model.diffusion_model.input_blocks.0.0.weight", w)]);
        AssertPickleRefused(path);
    }

    [SkippableFact]
    public void LoraFileIsNotACheckpoint()
    {
        if (Skip()) return;
        var path = Path.Combine(Fixture.Instance!.Root, "loras", "sd15-attn.safetensors");
        var e = Assert.Throws<ModelLoadException>(() => CheckpointLoader.Load(path, WithConfig("sd15")));
        Assert.StartsWith(path + ": not a Stable Diffusion checkpoint", e.Message);
        Assert.Contains("LoRA", e.Message);
    }

    [SkippableTheory]
    [InlineData("first_stage_model.decoder.up.", "VAE: 104 weights missing")]
    [InlineData("model.diffusion_model.output_blocks.", "UNet: ")]
    [InlineData("cond_stage_model.transformer.text_model.encoder.layers.1.mlp.", "text encoder: 4 weights missing")]
    public void MissingTensorsAreNamed(string removed, string expected)
    {
        if (Skip()) return;
        var path = _dir.File("partial.safetensors");
        CheckpointRewrite.Write(Fixture.Instance!.ModelFile("sd15"), path, (name, t) => name.StartsWith(removed, StringComparison.Ordinal) ? null : t);

        var e = Assert.Throws<ModelLoadException>(() => CheckpointLoader.Load(path, WithConfig("sd15")));

        output.WriteLine(e.Message);
        Assert.StartsWith($"{path}: {expected}", e.Message);
        Assert.Contains($"(e.g. {removed}", e.Message);
        Assert.Equal(3, e.Message.Split(removed).Length - 1); // three examples, by their stored names
    }

    [SkippableFact]
    public void AWholeMissingBlockDisagreesWithTheConfig()
    {
        if (Skip()) return;
        // without its first transformer the level would silently load as attention-free
        var path = _dir.File("no-attention.safetensors");
        const string removed = "model.diffusion_model.input_blocks.1.1.";
        CheckpointRewrite.Write(Fixture.Instance!.ModelFile("sd15"), path, (name, t) => name.StartsWith(removed, StringComparison.Ordinal) ? null : t);
        var e = Assert.Throws<ModelLoadException>(() => CheckpointLoader.Load(path, WithConfig("sd15")));
        Assert.Contains("transformer depths [0,1,1,0] stored, [1,1,1,0] declared", e.Message);
    }

    [SkippableFact]
    public void ATruncatedTextEncoderDisagreesWithTheConfig()
    {
        if (Skip()) return;
        var path = _dir.File("short-te.safetensors");
        const string removed = "cond_stage_model.transformer.text_model.encoder.layers.3.";
        CheckpointRewrite.Write(Fixture.Instance!.ModelFile("sd15"), path, (name, t) => name.StartsWith(removed, StringComparison.Ordinal) ? null : t);
        var e = Assert.Throws<ModelLoadException>(() => CheckpointLoader.Load(path, WithConfig("sd15")));
        Assert.Contains("text encoder has 3 layers, this config declares 4", e.Message);
    }

    [SkippableFact]
    public void MissingPathIsFileNotFound()
    {
        var path = _dir.File("nowhere.safetensors");
        var e = Assert.Throws<FileNotFoundException>(() => CheckpointLoader.Load(path));
        Assert.Equal(path, e.FileName);
        Assert.Contains(path, e.Message);
    }

    [SkippableFact]
    public void FolderWithoutModelIndexIsNotADiffusersModel()
    {
        var e = Assert.Throws<ModelLoadException>(() => CheckpointLoader.Load(_dir.Path));
        Assert.Equal($"{_dir.Path}: folder has no model_index.json (not a diffusers model folder)", e.Message);
    }

    [SkippableFact]
    public void InspectOfATruncatedCheckpointIsOneLineAndExitCode2()
    {
        if (Skip()) return;
        var bytes = File.ReadAllBytes(Fixture.Instance!.ModelFile("sd15"));
        var path = _dir.File("truncated.safetensors");
        File.WriteAllBytes(path, bytes[..(bytes.Length / 2)]);
        var stdout = new StringWriter();
        var stderr = new StringWriter();

        int code = LoraCraft.Cli.Cli.Run(["inspect", path], stdout, stderr);

        output.WriteLine(stderr.ToString());
        Assert.Equal(2, code);
        Assert.Empty(stdout.ToString());
        var line = Assert.Single(stderr.ToString().Split('\n', StringSplitOptions.RemoveEmptyEntries));
        Assert.StartsWith($"error: {path}: ", line);
        Assert.Contains("truncated?", line);
    }
}
