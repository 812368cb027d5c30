using System.Collections.Concurrent;
using LoraCraft.Models;
using LoraCraft.Models.Loading;
using LoraCraft.Text;
using TorchSharp;
using Xunit;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace LoraCraft.Tests.Conformance;

/// <summary>Every model-level case (text encoders, conditioning, UNet, VAE) from both file layouts.</summary>
public class ModelCases(ITestOutputHelper output)
{
    const double Tolerance = 1e-4;
    static readonly ConcurrentDictionary<(string, bool), Lazy<StableDiffusionModel>> Models = new();

    public static StableDiffusionModel Model(string kind, bool diffusers)
    {
        var f = Fixture.Instance!;
        return Models.GetOrAdd((kind, diffusers), _ => new Lazy<StableDiffusionModel>(() => diffusers
            ? CheckpointLoader.Load(f.DiffusersDir(kind))
            : CheckpointLoader.Load(f.ModelFile(kind), new LoadOptions { ConfigDir = f.DiffusersDir(kind) }))).Value;
    }

    public static TheoryData<string, bool> Layouts()
    {
        var data = new TheoryData<string, bool>();
        foreach (var kind in new[] { "sd15", "sd15-inpaint", "sd2v", "sdxl" })
            foreach (var diffusers in new[] { false, true })
                data.Add(kind, diffusers);
        return data;
    }

    bool Skip()
    {
        if (Fixture.Instance is not null) return false;
        throw new SkipException(Fixture.MissingMessage);
    }

    [SkippableTheory, MemberData(nameof(Layouts))]
    public void DetectsFamily(string kind, bool diffusers)
    {
        if (Skip()) return;
        var m = Model(kind, diffusers);
        var expected = kind switch { "sdxl" => ModelFamily.Sdxl, "sd2v" => ModelFamily.Sd2, _ => ModelFamily.Sd1 };
        Assert.Equal(expected, m.Family);
        Assert.Equal(kind == "sd15-inpaint", m.Inpainting);
        Assert.Equal(kind == "sd2v" ? Prediction.V : Prediction.Epsilon, m.Prediction);
    }

    [SkippableTheory, MemberData(nameof(Layouts))]
    public void TextEncoderHiddenStates(string kind, bool diffusers)
    {
        if (Skip()) return;
        var f = Fixture.Instance!;
        var m = Model(kind, diffusers);
        var report = new Fixture.Report(Tolerance);
        using var scope = NewDisposeScope();
        foreach (var c in f.OfKind("text_encoder", kind))
        {
            int enc = c.GetProperty("encoder").GetInt32();
            var ids = c.GetProperty("ids").EnumerateArray().Select(e => e.GetInt64()).ToArray();
            var slot = m.TextEncoders[enc];
            // the reference ids are what our tokenizer must produce, padding included
            Assert.Equal(ids, slot.Tokenizer.EncodeForModel(c.GetProperty("prompt").GetString()!, 77, slot.PadId).Select(i => (long)i));
            using var output = slot.Model.Forward(torch.tensor(ids).unsqueeze(0));
            var expectedStates = f.Tensor(c, "hidden_states");
            string name = $"{kind}/{(diffusers ? "diffusers" : "single")}/te{enc} '{c.GetProperty("prompt").GetString()}'";
            for (int i = 0; i < expectedStates.shape[0]; i++)
                report.Check($"{name} hidden[{i}]", output.HiddenStates[i], expectedStates[i]);
            report.Check($"{name} last", output.LastHiddenState, f.Tensor(c, "last_hidden_state"));
            if (c.TryGetProperty("text_embeds", out _))
                report.Check($"{name} text_embeds", output.TextEmbeds!, f.Tensor(c, "text_embeds"));
        }
        report.Assert(output);
    }

    [SkippableTheory, MemberData(nameof(Layouts))]
    public void Conditioning(string kind, bool diffusers)
    {
        if (Skip()) return;
        var f = Fixture.Instance!;
        var m = Model(kind, diffusers);
        var report = new Fixture.Report(Tolerance);
        using var scope = NewDisposeScope();
        foreach (var c in f.OfKind("conditioning", kind))
        {
            string prompt = c.GetProperty("prompt").GetString()!;
            using var cond = TextConditioner.Encode(m, prompt);
            report.Check($"{kind} context '{prompt}'", cond.Context, f.Tensor(c, "context"));
            if (c.TryGetProperty("pooled", out _)) report.Check($"{kind} pooled '{prompt}'", cond.Pooled!, f.Tensor(c, "pooled"));
            if (c.TryGetProperty("context_clip_skip_2", out _))
            {
                using var cs2 = TextConditioner.Encode(m, prompt, clipSkip: 2);
                report.Check($"{kind} clip skip 2 '{prompt}'", cs2.Context, f.Tensor(c, "context_clip_skip_2"));
            }
        }
        report.Assert(output);
    }

    [SkippableTheory, MemberData(nameof(Layouts))]
    public void UNet(string kind, bool diffusers)
    {
        if (Skip()) return;
        var f = Fixture.Instance!;
        var m = Model(kind, diffusers);
        var report = new Fixture.Report(Tolerance);
        using var noGrad = torch.no_grad();
        using var scope = NewDisposeScope();
        foreach (var c in f.OfKind("unet", kind))
        {
            var x = f.Tensor(c, "sample");
            float t = c.GetProperty("timestep").GetSingle();
            var eps = f.RunUNet(c, m.UNet);
            report.Check($"{kind}/{(diffusers ? "diffusers" : "single")} t={t} {string.Join("x", x.shape)}", eps, f.Tensor(c, "expected"));
        }
        report.Assert(output);
    }

    [SkippableTheory, MemberData(nameof(Layouts))]
    public void Vae(string kind, bool diffusers)
    {
        if (Skip()) return;
        var f = Fixture.Instance!;
        var m = Model(kind, diffusers);
        var report = new Fixture.Report(Tolerance);
        using var noGrad = torch.no_grad();
        using var scope = NewDisposeScope();
        foreach (var c in f.OfKind("vae_decode", kind))
            report.Check($"{kind} decode", m.Vae.Decode(f.Tensor(c, "latent")), f.Tensor(c, "expected"));
        foreach (var c in f.OfKind("vae_encode", kind))
        {
            var (mean, logvar) = m.Vae.Encode(f.Tensor(c, "image"));
            report.Check($"{kind} encode mean", mean, f.Tensor(c, "mean"));
            report.Check($"{kind} encode logvar", logvar, f.Tensor(c, "logvar"));
        }
        report.Assert(output);
    }
}
