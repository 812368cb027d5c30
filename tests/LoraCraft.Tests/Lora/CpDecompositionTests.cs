using LoraCraft.IO;
using LoraCraft.Lora;
using LoraCraft.Models.Loading;
using LoraCraft.Tests.Conformance;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace LoraCraft.Tests.Lora;

/// <summary>LyCORIS/A1111 CP-decomposed LoCon layers (`lora_mid`): down 1x1, a spatial core, up 1x1.</summary>
public class CpDecompositionTests
{
    [SkippableFact]
    public void MidCoreRebuildsTheConvolutionUpdate()
    {
        var f = Fixture.Require();
        using var dir = new TempDir();
        using var scope = NewDisposeScope();
        using var g = new torch.Generator(21);
        const string key = "lora_unet_down_blocks_0_resnets_0_conv1";
        var down = randn([2, 32, 1, 1], generator: g) * 0.1;
        var mid = randn([2, 2, 3, 3], generator: g) * 0.1;
        var up = randn([32, 2, 1, 1], generator: g) * 0.1;
        var path = dir.File("cp.safetensors");
        SafetensorsWriter.Write(path, [
            new(key + ".lora_down.weight", down), new(key + ".lora_mid.weight", mid),
            new(key + ".lora_up.weight", up), new(key + ".alpha", torch.tensor(1f)),
        ]);
        using var model = CheckpointLoader.Load(f.ModelFile("sd15"), new LoadOptions { ConfigDir = f.DiffusersDir("sd15") });
        var weight = model.UNet.Weights().Single(w => w.Name == "input_blocks.1.0.in_layers.2.weight").Weight;
        var before = weight.T.clone();
        using var lora = LoraFile.Load(path);
        var plan = LoraPlan.Create(lora, new LoraTargets(model));
        Assert.Single(plan.Matched);
        Assert.Empty(plan.Unmatched);
        using var patcher = new LoraPatcher();
        patcher.Apply([new LoraApplication(plan, 0.5, 0.5)]);
        // independent rebuild, loop over the kernel taps: up @ mid[:, :, k, l] @ down, scale alpha/rank = 0.5
        var expected = torch.zeros(32, 32, 3, 3);
        for (int k = 0; k < 3; k++)
            for (int l = 0; l < 3; l++)
                expected[.., .., k, l] = up.view(32, 2).matmul(mid[.., .., k, l]).matmul(down.view(2, 32));
        var delta = weight.T - before;
        Assert.True((delta - expected * 0.5 * 0.5).abs().max().item<float>() < 1e-6);
        patcher.Apply([]);
        Assert.True((weight.T == before).all().item<bool>());
    }
}
