using LoraCraft.IO;
using LoraCraft.Lora;
using LoraCraft.Models;
using LoraCraft.Models.Loading;
using LoraCraft.Models.Random;
using LoraCraft.Runtime;
using TorchSharp;
using Xunit;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace LoraCraft.Tests.Lora;

public class RandomLoraTests(ITestOutputHelper output)
{
    static RandomLoraTests() => TorchNative.Ensure();

    /// <summary>A tiny random checkpoint of <paramref name="kind"/>, loaded from <paramref name="dir"/>.</summary>
    internal static StableDiffusionModel TinyModel(TempDir dir, RandomModelKind kind)
    {
        var path = dir.File($"{RandomCheckpoint.Id(kind)}.safetensors");
        var config = RandomCheckpoint.Make(path, RandomArchitecture.Of(kind, RandomModelSize.Tiny), seed: 11);
        return CheckpointLoader.Load(path, new LoadOptions { ConfigDir = config });
    }

    internal static Tensor UNetOutput(StableDiffusionModel model)
    {
        using var noGrad = torch.no_grad();
        using var generator = new Generator(5);
        var c = model.UNet.Config;
        using var x = randn([1, c.InChannels, 8, 8], generator: generator);
        using var context = randn([1, 7, c.ContextDim], generator: generator);
        using var t = tensor(new[] { 500f });
        using var y = c.AdmInChannels > 0 ? randn([1, c.AdmInChannels], generator: generator) : null;
        return model.UNet.Forward(x, t, context, y);
    }

    public static TheoryData<RandomModelKind, RandomLoraLayers> Cases() => new()
    {
        { RandomModelKind.Sd15, RandomLoraLayers.Attention }, { RandomModelKind.Sd15, RandomLoraLayers.All },
        { RandomModelKind.Sd2, RandomLoraLayers.Attention }, { RandomModelKind.Sd2, RandomLoraLayers.All },
        { RandomModelKind.Sdxl, RandomLoraLayers.Attention }, { RandomModelKind.Sdxl, RandomLoraLayers.All },
    };

    [SkippableTheory, MemberData(nameof(Cases))]
    public void EveryKeyMapsBackAndPatchingChangesTheUNetAndRestoresItBitForBit(RandomModelKind kind, RandomLoraLayers layers)
    {
        using var dir = new TempDir();
        using var model = TinyModel(dir, kind);
        var targets = new LoraTargets(model);
        var path = dir.File("random.safetensors");
        var result = RandomLora.Make(path, targets, new RandomLoraOptions(Rank: 4, Alpha: 2, Seed: 3, Layers: layers));

        using var file = LoraFile.Load(path);
        var plan = LoraPlan.Create(file, targets);
        var selected = RandomLora.Select(targets, layers);
        output.WriteLine($"{kind} {layers}: {plan.Matched.Count} matched of {selected.Count} layers, {plan.Unmatched.Count} unmatched");
        Assert.Empty(plan.Unmatched);
        Assert.Equal(selected.Count, result.Modules);
        // each written key lands on the very layer it was written for
        Assert.Equal(selected.Select(l => l.Target).ToHashSet(ReferenceEqualityComparer.Instance),
                     plan.Matched.Select(m => m.Target).ToHashSet(ReferenceEqualityComparer.Instance));
        Assert.All(file.Modules, m => Assert.Equal(2f, m.Alpha));
        if (layers == RandomLoraLayers.Attention)
        {
            int blocks = model.UNet.Weights().Count(w => w.Name.EndsWith("attn1.to_q.weight", StringComparison.Ordinal));
            int textLayers = model.TextEncoders.Sum(e => e.Model.Weights().Count(w => w.Name.EndsWith("self_attn.q_proj.weight", StringComparison.Ordinal)));
            Assert.Equal(8 * blocks, plan.Count(LoraComponent.UNet));
            Assert.Equal(4 * textLayers, plan.Count(LoraComponent.TextEncoder1) + plan.Count(LoraComponent.TextEncoder2));
        }
        else Assert.Contains(file.Modules, m => m.IsConv);

        var before = Weights.Snapshot(model);
        using var plain = UNetOutput(model);
        using (var patcher = new LoraPatcher())
        {
            Assert.Equal(plan.Matched.Count, patcher.Apply([new LoraApplication(plan, 1, 1)]));
            using var patched = UNetOutput(model);
            double change = LoraCraft.Tests.Conformance.Fixture.RelL2(patched, plain);
            output.WriteLine($"relative change of the UNet output: {change:E2}");
            Assert.InRange(change, 1e-4, 0.5);
            patcher.Apply([]);
        }
        Weights.AssertBitIdentical(before, model);
    }

    [SkippableFact]
    public void TheFileIsKohyaFp16MarkedRandomAndDeterministic()
    {
        using var dir = new TempDir();
        using var model = TinyModel(dir, RandomModelKind.Sdxl);
        var targets = new LoraTargets(model);
        string a = dir.File("a.safetensors"), b = dir.File("b.safetensors"), c = dir.File("c.safetensors");
        RandomLora.Make(a, targets, new RandomLoraOptions(Rank: 3, Seed: 9));
        RandomLora.Make(b, targets, new RandomLoraOptions(Rank: 3, Seed: 9));
        RandomLora.Make(c, targets, new RandomLoraOptions(Rank: 3, Seed: 10));
        // the data, not the header: ss_output_name is the file's name
        var hashes = new FileHashes(dir.File("hashes.json"));
        Assert.Equal(hashes.SafetensorsDataSha256(a), hashes.SafetensorsDataSha256(b));
        Assert.NotEqual(hashes.SafetensorsDataSha256(a), hashes.SafetensorsDataSha256(c));

        var header = SafetensorsHeader.Read(a);
        Assert.All(header.Tensors, t => Assert.Equal(SafeDType.F16, t.DType));
        Assert.All(header.Tensors, t => Assert.Matches("^lora_(unet_(input|middle|output)_block|te1_text_model|te2_text_model)", t.Name));
        Assert.Equal("random LoRA (demo)", header.Metadata["modelspec.title"]);
        Assert.Equal("3", header.Metadata["ss_network_dim"]);
        Assert.Equal("3", header.Metadata["ss_network_alpha"]); // alpha defaults to the rank
        Assert.Equal("a", header.Metadata["ss_output_name"]);
        Assert.Contains("RANDOM", header.Metadata["loracraft.random_weights"]);

        var info = LoraInfo.Read(a);
        Assert.Equal(ModelFamily.Sdxl, info.Family);
        Assert.Equal(3, info.Rank);
        Assert.Equal(3.0, info.Alpha);
    }

    [SkippableFact]
    public void Sd1UsesDiffusersModuleNames()
    {
        using var dir = new TempDir();
        using var model = TinyModel(dir, RandomModelKind.Sd15);
        var path = dir.File("sd1.safetensors");
        RandomLora.Make(path, new LoraTargets(model), new RandomLoraOptions(Rank: 2));
        var names = SafetensorsHeader.Read(path).Tensors.Select(t => t.Name).ToList();
        Assert.Contains("lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k.lora_down.weight", names);
        Assert.Contains("lora_unet_mid_block_attentions_0_transformer_blocks_0_attn1_to_out_0.lora_up.weight", names);
        Assert.Contains("lora_te_text_model_encoder_layers_0_self_attn_out_proj.alpha", names);
        Assert.DoesNotContain(names, n => n.Contains("input_blocks", StringComparison.Ordinal));
    }

    [SkippableTheory]
    [InlineData(0, null, "rank must be 1 or more")]
    [InlineData(4, -1.0, "alpha must be a positive number")]
    public void BadOptionsAreUserErrors(int rank, double? alpha, string message)
    {
        using var dir = new TempDir();
        using var model = TinyModel(dir, RandomModelKind.Sd15);
        var e = Assert.Throws<UserErrorException>(() => RandomLora.Make(dir.File("x.safetensors"), new LoraTargets(model), new RandomLoraOptions(rank, alpha)));
        Assert.Contains(message, e.Message);
        Assert.False(File.Exists(dir.File("x.safetensors")));
    }
}
