using LoraCraft.Lora;
using LoraCraft.Models;
using LoraCraft.Models.Clip;
using LoraCraft.Models.Loading;
using LoraCraft.Models.Random;
using LoraCraft.Models.UNet;
using LoraCraft.Models.Vae;
using LoraCraft.Tests.Conformance;
using LoraCraft.Text;
using LoraCraft.Training;
using TorchSharp;
using Xunit;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace LoraCraft.Tests.Training;

public class LoraNetworkTests(ITestOutputHelper output)
{
    /// <summary>A full-size model's structure without weights (building costs nothing; LoRA factors are rank 1).</summary>
    static StableDiffusionModel Structure(RandomModelKind kind, string tokenizerDir)
    {
        var a = RandomArchitecture.Of(kind, RandomModelSize.Full);
        var tok = ClipTokenizer.FromDirectory(tokenizerDir);
        return new StableDiffusionModel
        {
            SourcePath = "structure", Family = a.Family, Inpainting = false, Prediction = Prediction.Epsilon,
            UNet = new UNetModel(a.UNet), Vae = new VaeModel(a.Vae),
            // SD2 conditioning uses the penultimate layer: the loader drops the last, as kohya's SD2 text model has 23
            TextEncoders = a.Text.Select(t => new TextEncoderSlot(new ClipTextModel(a.Family == ModelFamily.Sd2 ? t.Config with { Layers = t.Config.Layers - 1 } : t.Config), tok, tok.EndId)).ToList(),
        };
    }

    [Theory]
    [InlineData(RandomModelKind.Sd15, null, 72, 192)]
    [InlineData(RandomModelKind.Sd15, 4, 72, 278)]
    [InlineData(RandomModelKind.Sd2, null, 138, 192)]
    [InlineData(RandomModelKind.Sdxl, null, 72 + 192, 722)]
    public void ModuleSetIsKohyasOnFullSizeModels(RandomModelKind kind, int? convDim, int textModules, int unetModules)
    {
        using var dir = new TempDir();
        ByteLevelTokenizer.Write(dir.Path, "<|endoftext|>");
        using var model = Structure(kind, dir.Path);
        using var network = LoraNetwork.Attach(model, new LoraNetworkOptions { Dim = 1, ConvDim = convDim }, 1);
        Assert.Equal(textModules, network.Modules.Count(m => m.Component != LoraComponent.UNet));
        Assert.Equal(unetModules, network.Modules.Count(m => m.Component == LoraComponent.UNet));
        var keys = network.Modules.Select(m => m.Key).ToHashSet();
        if (kind == RandomModelKind.Sd15)
        {
            Assert.Contains("lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q", keys);
            Assert.Contains("lora_unet_up_blocks_3_attentions_2_proj_out", keys);
            Assert.Contains("lora_unet_mid_block_attentions_0_transformer_blocks_0_ff_net_0_proj", keys);
            Assert.Contains("lora_te_text_model_encoder_layers_11_mlp_fc2", keys);
            Assert.Equal(convDim is not null, keys.Contains("lora_unet_down_blocks_0_resnets_0_conv1"));
            Assert.Equal(convDim is not null, keys.Contains("lora_unet_up_blocks_0_upsamplers_0_conv"));
            Assert.Equal(convDim is not null, keys.Contains("lora_unet_down_blocks_1_resnets_0_conv_shortcut"));
            Assert.DoesNotContain("lora_unet_conv_in", keys);
            if (convDim is not null)
            {
                Assert.Equal(convDim, network.Modules.Single(m => m.Key == "lora_unet_down_blocks_0_resnets_0_conv1").Rank);
                Assert.Equal(1, network.Modules.Single(m => m.Key == "lora_unet_down_blocks_0_resnets_0_time_emb_proj").Rank);
            }
        }
        if (kind == RandomModelKind.Sdxl)
        {
            Assert.Contains("lora_unet_input_blocks_4_1_transformer_blocks_0_attn2_to_k", keys);
            Assert.Contains("lora_te1_text_model_encoder_layers_0_self_attn_q_proj", keys);
            Assert.Contains("lora_te2_text_model_encoder_layers_31_mlp_fc1", keys);
            Assert.DoesNotContain(keys, k => k.Contains("text_projection"));
        }
    }

    [SkippableFact]
    public void InitIsKaimingUniformDownAndZeroUpWithScaleAlphaOverRank()
    {
        var f = Fixture.Require();
        using var model = CheckpointLoader.Load(f.ModelFile("sd15"), new LoadOptions { ConfigDir = f.DiffusersDir("sd15") });
        using var network = LoraNetwork.Attach(model, new LoraNetworkOptions { Dim = 8, Alpha = 2 }, 5);
        foreach (var m in network.Modules)
        {
            long fanIn = m.Down.numel() / m.Rank;
            double bound = 1 / Math.Sqrt(fanIn);
            Assert.True(m.Down.abs().max().item<float>() <= bound + 1e-7);
            Assert.True(m.Down.abs().max().item<float>() > 0.5 * bound);
            Assert.Equal(0, m.Up.abs().max().item<float>());
            Assert.Equal(0.25, m.Scale);
            Assert.True(m.Down.requires_grad && m.Up.requires_grad);
            Assert.Same(m, m.Layer.Adapters!.Single());
        }
        // base weights stay frozen and are the loaded tensors
        Assert.All(model.UNet.Weights(), w => Assert.False(w.Weight.RequiresGrad));
    }

    static void ToFloat64(StableDiffusionModel model)
    {
        IEnumerable<Net> nets = [model.UNet, model.Vae, .. model.TextEncoders.Select(t => t.Model)];
        foreach (var net in nets)
            foreach (var (_, w) in net.Weights())
            {
                var old = w.Value!;
                w.Value = old.to(ScalarType.Float64).DetachFromDisposeScope();
                old.Dispose();
            }
    }

    /// <summary>The training loss of one fixed batch (noise, timestep, caption) as a function of the LoRA factors.</summary>
    static Tensor Loss(StableDiffusionModel model, Tensor latents, Tensor noise, int t)
    {
        var diffusion = new DiffusionLoss();
        int batch = (int)latents.shape[0];
        var (context, _) = CaptionEncoder.Encode(model, Enumerable.Repeat("a red disc on blue", batch).ToList(), 1, 75);
        var steps = Enumerable.Repeat(t, batch).ToArray();
        using var noisy = diffusion.AddNoise(latents, noise, steps).to(latents.dtype);
        using var pred = model.UNet.Forward(noisy, tensor(steps.Select(v => (float)v).ToArray()), context);
        // the loss in the batch's dtype (float64 for the finite differences)
        return (pred - noise).pow(2).mean();
    }

    [SkippableFact]
    public void LoraGradientsMatchFiniteDifferences()
    {
        var f = Fixture.Require();
        using var model = CheckpointLoader.Load(f.ModelFile("sd15"), new LoadOptions { ConfigDir = f.DiffusersDir("sd15") });
        ToFloat64(model);
        using var network = LoraNetwork.Attach(model, new LoraNetworkOptions { Dim = 2, Alpha = 2, ConvDim = 2 }, 3);
        using var g = new Generator(9);
        using (no_grad())
            foreach (var m in network.Modules) m.Up.copy_(randn(m.Up.shape, generator: g) * 0.05);
        using var latents = randn([1, 4, 8, 8], ScalarType.Float64, generator: g);
        using var noise = randn([1, 4, 8, 8], ScalarType.Float64, generator: g);
        using (var loss = Loss(model, latents, noise, 500)) loss.backward();

        var picks = new[]
        {
            network.Modules.First(m => m.Key.EndsWith("attn2_to_k", StringComparison.Ordinal)),
            network.Modules.First(m => m.Key.EndsWith("resnets_0_conv1", StringComparison.Ordinal)),
            network.Modules.First(m => m.Key.StartsWith("lora_te_", StringComparison.Ordinal) && m.Key.EndsWith("fc1", StringComparison.Ordinal)),
        };
        foreach (var m in picks)
            foreach (var factor in new[] { m.Down, m.Up })
            {
                var flatGrad = factor.grad!.flatten();
                long index = flatGrad.abs().argmax().item<long>();
                double analytic = flatGrad[index].item<float>();
                const double h = 1e-3;
                double Perturbed(double delta)
                {
                    using var noGrad = no_grad();
                    using var flat = factor.view(-1);
                    float original = flat[index].item<float>();
                    flat[index] = (float)(original + delta);
                    using var l = Loss(model, latents, noise, 500);
                    flat[index] = original;
                    return l.item<double>();
                }
                double numeric = (Perturbed(h) - Perturbed(-h)) / (2 * h);
                output.WriteLine($"{m.Key} {(ReferenceEquals(factor, m.Down) ? "down" : "up")}[{index}]: analytic {analytic:E6}, numeric {numeric:E6}");
                Assert.True(Math.Abs(analytic - numeric) <= 1e-4 * Math.Abs(numeric) + 1e-9, $"{m.Key}: analytic {analytic} vs numeric {numeric}");
            }
    }

    [SkippableFact]
    public void CheckpointingGivesTheSameGradientsEvenWithDropout()
    {
        var f = Fixture.Require();
        using var model = CheckpointLoader.Load(f.ModelFile("sd15"), new LoadOptions { ConfigDir = f.DiffusersDir("sd15") });
        using var network = LoraNetwork.Attach(model, new LoraNetworkOptions { Dim = 4, Dropout = 0.3, RankDropout = 0.25 }, 3);
        using var g = new Generator(4);
        using (no_grad())
            foreach (var m in network.Modules) m.Up.copy_(randn(m.Up.shape, generator: g) * 0.05);
        using var latents = randn([2, 4, 8, 8], generator: g);
        using var noise = randn([2, 4, 8, 8], generator: g);
        List<Tensor> Grads(bool checkpointed)
        {
            using var random = new Generator(123);
            network.Random = random;
            model.UNet.Checkpointing = checkpointed ? new GradientCheckpointing { Random = random } : null;
            foreach (var m in network.Modules) { m.Down.grad = null!; m.Up.grad = null!; }
            using (var loss = Loss(model, latents, noise, 300)) loss.backward();
            model.UNet.Checkpointing = null;
            network.Random = null;
            return network.Modules.Where(m => m.Component == LoraComponent.UNet).SelectMany(m => new[] { m.Down.grad!.clone(), m.Up.grad!.clone() }).ToList();
        }
        var plain = Grads(false);
        var checkpointed = Grads(true);
        // compared tensor by tensor (relative L2): libtorch's threaded reductions may sum in another
        // order when other tests load the pool, which moves single near-zero elements past an
        // element-wise bound; a wrong recomputation (other dropout masks) moves whole tensors (≥ 1e-2)
        double worst = 0;
        for (int i = 0; i < plain.Count; i++)
        {
            double err = Conformance.Fixture.RelL2(checkpointed[i], plain[i]);
            worst = Math.Max(worst, err);
            Assert.True(err < 1e-5, $"gradient {i} differs under checkpointing (relative L2 {err:E2})");
        }
        output.WriteLine($"largest relative L2 difference of a gradient under checkpointing: {worst:E2}");
        Assert.Contains(plain, t => t.abs().max().item<float>() > 0);
    }

    [SkippableFact]
    public void RecordingPathGivesTheInferenceNumbers()
    {
        var f = Fixture.Require();
        using var model = CheckpointLoader.Load(f.ModelFile("sd15"), new LoadOptions { ConfigDir = f.DiffusersDir("sd15") });
        using var g = new Generator(1);
        using var x = randn([1, 4, 8, 8], generator: g);
        using var ctx = randn([1, 77, 32], generator: g);
        using var t = tensor(new float[] { 321 });
        Tensor a;
        using (no_grad()) a = model.UNet.Forward(x, t, ctx);
        using var b = model.UNet.Forward(x, t, ctx);
        model.UNet.Checkpointing = new GradientCheckpointing();
        using var c = model.UNet.Forward(x, t, ctx);
        Assert.True(a.allclose(b, 0, 0), "grad-enabled forward differs from the inference path");
        Assert.True(a.allclose(c, 0, 0), "checkpointed forward differs from the inference path");
        a.Dispose();
    }
}
