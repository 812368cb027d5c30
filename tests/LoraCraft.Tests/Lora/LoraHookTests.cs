using LoraCraft.Lora;
using LoraCraft.Models;
using LoraCraft.Models.Random;
using LoraCraft.Pipelines;
using LoraCraft.Runtime;
using LoraCraft.Sampling;
using LoraCraft.Text;
using TorchSharp;
using Xunit;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace LoraCraft.Tests.Lora;

/// <summary>
/// ComfyUI's LoRA hooks: keyframe schedules over sigmas (comfy/hooks.py), CLIP schedule ranges,
/// and the guided model call over conditioning lists with hooks, masks, defaults and timestep
/// ranges (samplers.py), each against a computation written out here.
/// </summary>
public class LoraHookTests(ITestOutputHelper output)
{
    static LoraHookTests() => TorchNative.Ensure();

    static double[] Run(HookKeyframes kf, float[] sigmas)
    {
        var state = new HookKeyframeState(kf);
        return sigmas.Select(s => { state.Prepare(s, sigmas.Max()); return state.Strength; }).ToArray();
    }

    [SkippableFact]
    public void AKeyframeTakesOverOnceItsStartSigmaIsReached()
    {
        var kf = HookKeyframes.Empty.Add(new HookKeyframe(0, 0)).Add(new HookKeyframe(1, 0.5));
        var sigmas = Schedulers.Compute("normal", NoiseSchedule.Default, 8)[..^1];
        float half = NoiseSchedule.Default.PercentToSigma(0.5);
        output.WriteLine($"sigma at 50%: {half}; sigmas {string.Join(", ", sigmas)}");
        Assert.Equal(sigmas.Select(s => s <= half ? 1.0 : 0.0).ToArray(), Run(kf, sigmas));
        Assert.Contains(0.0, Run(kf, sigmas));
        Assert.Contains(1.0, Run(kf, sigmas));
        // the same sigma twice (a second model call at one sigma) does not move the schedule
        var state = new HookKeyframeState(kf);
        state.Prepare(sigmas[0], sigmas[0]);
        state.Prepare(sigmas[0], sigmas[0]);
        Assert.Equal(0.0, state.Strength);
        // no keyframes: strength 1
        Assert.Equal([1.0, 1.0], Run(HookKeyframes.Empty, [3f, 1f]));
    }

    [SkippableFact]
    public void AGuaranteedKeyframeHoldsForOneCallEvenWhenTheNextHasStarted()
    {
        var kf = HookKeyframes.Empty.Add(new HookKeyframe(0, 0)).Add(new HookKeyframe(1, 0.3)).Add(new HookKeyframe(0.5, 0.35));
        float s30 = NoiseSchedule.Default.PercentToSigma(0.3), s35 = NoiseSchedule.Default.PercentToSigma(0.35);
        Assert.True(s30 > s35 && s35 > 1.0f, $"{s30} {s35}");
        // the second call is past both starts: the 30 % keyframe still gets its one call
        Assert.Equal([0.0, 1.0, 0.5, 0.5], Run(kf, [10f, 1f, 0.5f, 0.2f]));
        // keyframes that started before the run (KSamplerAdvanced starting late) guarantee nothing
        Assert.Equal([0.5, 0.5], Run(kf, [1f, 0.5f]));
        // spread keyframes (Interpolated / FromFloats) guarantee only the first: a step function of sigma
        var spread = HookKeyframes.Empty.AddSpread(HookKeyframes.Interpolate(0, 1, 5, "linear"), 0, 1);
        Assert.Equal([1, 0, 0, 0, 0], spread.Frames.Select(f => f.GuaranteeSteps).ToArray());
        var sigmas = Schedulers.Compute("karras", NoiseSchedule.Default, 10)[..^1];
        var expected = sigmas.Select(s => spread.Frames.Last(f => NoiseSchedule.Default.PercentToSigma(f.StartPercent) >= s).Strength).ToArray();
        Assert.Equal(expected, Run(spread, sigmas));
    }

    [SkippableFact]
    public void InterpolationsMatchComfyUisCurves()
    {
        static double[] R(float[] v) => v.Select(x => Math.Round(x, 4)).ToArray();
        Assert.Equal([0, 0.25, 0.5, 0.75, 1], R(HookKeyframes.Interpolate(0, 1, 5, "linear")));
        Assert.Equal([0, 0.0625, 0.25, 0.5625, 1], R(HookKeyframes.Interpolate(0, 1, 5, "ease_in")));
        Assert.Equal([0, 0.4375, 0.75, 0.9375, 1], R(HookKeyframes.Interpolate(0, 1, 5, "ease_out")));
        Assert.Equal([0, 0.1464, 0.5, 0.8536, 1], R(HookKeyframes.Interpolate(0, 1, 5, "ease_in_out")));
        Assert.Equal([2, 1.5, 1], R(HookKeyframes.Interpolate(2, 1, 3, "linear")));
        Assert.Throws<UserErrorException>(() => HookKeyframes.Interpolate(0, 1, 3, "cubic"));
        Assert.Throws<UserErrorException>(() => HookKeyframes.Empty.Add(new HookKeyframe(1, 1.5)));
    }

    [SkippableFact]
    public void TheClipScheduleSplitsTheRunWhereAnyHooksStrengthChanges()
    {
        var lora = new SelectedLora("a", "/x/a.safetensors", new LoraTag("a", 1, 1, null), false);
        var a = new LoraHook(lora, 1, 1).WithKeyframes(HookKeyframes.Empty.Add(new HookKeyframe(1, 0)).Add(new HookKeyframe(1, 0.25)).Add(new HookKeyframe(0, 0.5)));
        var b = new LoraHook(lora, 1, 0.5);
        var schedule = new HookGroup([a, b]).ClipSchedule();
        Assert.Equal([(0.0, 0.5), (0.5, 1.0)], schedule.Select(r => (r.Start, r.End)).ToArray());
        Assert.Equal(1.0, schedule[0].Hooks[0].Keyframe!.Strength);   // the equal-strength 25 % keyframe does not split
        Assert.Equal(0.0, schedule[1].Hooks[0].Keyframe!.Strength);
        Assert.Null(schedule[0].Hooks[1].Keyframe);
        Assert.Single(new HookGroup([b]).ClipSchedule());
        // a hook is in a group once; a clone with new keyframes is the same hook
        Assert.Single(new HookGroup([a, a.WithKeyframes(HookKeyframes.Empty)]).Hooks);
        Assert.Equal(2, HookGroup.Combine(new HookGroup([a]), null, new HookGroup([b, a]))!.Hooks.Count);
        Assert.Null(HookGroup.Combine(null, null));
    }

    sealed class Setup : IDisposable
    {
        public readonly TempDir Dir = new();
        public readonly StableDiffusionModel Model;
        public readonly LoraFile File;
        public readonly LoraPlan Plan;
        public readonly LoraPatcher Patcher = new();
        public readonly Conditioning Cat, Dog, Blurry;

        public Setup()
        {
            Model = RandomLoraTests.TinyModel(Dir, RandomModelKind.Sd15);
            var targets = new LoraTargets(Model);
            var path = Dir.File("lora.safetensors");
            RandomLora.Make(path, targets, new RandomLoraOptions(Rank: 4, Seed: 8, Layers: RandomLoraLayers.All));
            File = LoraFile.Load(path);
            Plan = LoraPlan.Create(File, targets);
            using var encoder = new ChunkEncoder(Model, 1);
            Cat = ComfyPromptEncoder.Encode(encoder, "a cat").Conditioning;
            Dog = ComfyPromptEncoder.Encode(encoder, "a dog on a long red sofa by the window").Conditioning;
            Blurry = ComfyPromptEncoder.Encode(encoder, "blurry").Conditioning;
        }

        public LoraHook Hook(double strength) => new(new SelectedLora("h", File.Path, new LoraTag("h", 0, 0, null), false), strength, 0);

        /// <summary>A guidance with hooks on a patcher run holding the hook LoRA beside the UNet.</summary>
        public ConditionGuidance Guidance(IReadOnlyList<GuidedCondition> pos, IReadOnlyList<GuidedCondition> neg, double cfg, params LoraHook[] hooks)
        {
            var run = new LoraRun(Patcher.Apply, [], LoraMode.Auto, hooks.Select(_ => new LoraApplication(Plan, 0, 0)).ToList());
            run.Start(1);
            return new ConditionGuidance(Model, cfg, pos, neg, 64, 64, hooks.Length > 0 ? new HookRun(run, hooks) : null);
        }

        /// <summary>x − σ·eps for one conditioning, the LoRA merged at <paramref name="strength"/> (0: none).</summary>
        public Tensor Denoised(Conditioning c, Tensor x, float sigma, double strength)
        {
            Patcher.Apply(strength == 0 ? [] : [new LoraApplication(Plan, strength, 0)]);
            using var scope = NewDisposeScope();
            var input = x.Mul(1 / Math.Sqrt((double)sigma * sigma + 1));
            var t = TensorMath.Full([1], NoiseSchedule.Default.Timestep(sigma));
            var eps = Model.UNet.Forward(input, t, c.Context, null);
            var result = (x - eps.Mul(sigma)).MoveToOuterDisposeScope();
            Patcher.Apply([]);
            return result;
        }

        public void Dispose()
        {
            Patcher.Dispose();
            Cat.Dispose(); Dog.Dispose(); Blurry.Dispose();
            File.Dispose();
            Model.Dispose();
            Dir.Dispose();
        }
    }

    static Tensor Latent(long seed, long size = 8)
    {
        using var g = new Generator((ulong)seed);
        return randn([1, 4, size, size], generator: g).Mul(3);
    }

    static Tensor Denoise(ConditionGuidance g, Tensor x, float sigma)
    {
        g.BeginItem(0, [sigma]);
        return g.Denoise(x, sigma, NoiseSchedule.Default, null);
    }

    [SkippableFact]
    public void AHookOnThePositiveRunsTheLoraForThePositiveOnly()
    {
        using var noGrad = no_grad();
        using var s = new Setup();
        using var x = Latent(1);
        const float sigma = 2.5f;
        const double cfg = 5, strength = 0.8;
        var hook = s.Hook(strength).WithKeyframes(HookKeyframes.Empty.Add(new HookKeyframe(0.5, 0)));
        var hooks = new HookGroup([hook]);
        using var g = s.Guidance([new GuidedCondition(s.Cat) { Hooks = hooks }], [new GuidedCondition(s.Blurry)], cfg, hook);
        using var got = Denoise(g, x, sigma);
        // the keyframe halves the hook's model strength
        using var cond = s.Denoised(s.Cat, x, sigma, strength * 0.5);
        using var uncond = s.Denoised(s.Blurry, x, sigma, 0);
        using var expected = uncond + (cond - uncond).Mul(cfg);
        using var both = s.Denoised(s.Blurry, x, sigma, strength * 0.5);
        using var bothExpected = both + (cond - both).Mul(cfg);
        double err = Conformance.Fixture.RelL2(got, expected), apart = Conformance.Fixture.RelL2(bothExpected, expected);
        output.WriteLine($"hook on the positive only vs written out: {err:E2}; vs the hook on both sides: {apart:E2}");
        Assert.True(err < 1e-5, $"{err:E2}");
        Assert.True(apart > 1e-3, $"{apart:E2}");
        // the same hooks on both sides: one LoRA state for the whole batch
        using var g2 = s.Guidance([new GuidedCondition(s.Cat) { Hooks = hooks }], [new GuidedCondition(s.Blurry) { Hooks = hooks }], cfg, hook);
        using var got2 = Denoise(g2, x, sigma);
        Assert.True(Conformance.Fixture.RelL2(got2, bothExpected) < 1e-5);
        // the LoRA is gone from the UNet after the call for the unhooked side
        using var plain = s.Guidance([new GuidedCondition(s.Cat)], [new GuidedCondition(s.Blurry)], cfg);
        using var none = Denoise(plain, x, sigma);
        using var noneExpected = uncond + (s.Denoised(s.Cat, x, sigma, 0) - uncond).Mul(cfg);
        Assert.True(Conformance.Fixture.RelL2(none, noneExpected) < 1e-5);
    }

    [SkippableFact]
    public void MasksSplitTheImageAndADefaultFillsWhatTheOthersLeave()
    {
        using var noGrad = no_grad();
        using var s = new Setup();
        using var x = Latent(2);
        const float sigma = 4f;
        using var left = zeros(1, 1, 64, 64);
        left.narrow(3, 0, 32).fill_(1);
        using var right = left.RSub(1);
        // cfg 1: the positive side alone
        using var g = s.Guidance([new GuidedCondition(s.Cat) { Mask = left }, new GuidedCondition(s.Dog) { Mask = right }], [new GuidedCondition(s.Blurry)], 1);
        using var got = Denoise(g, x, sigma);
        using var cat = s.Denoised(s.Cat, x, sigma, 0);
        using var dog = s.Denoised(s.Dog, x, sigma, 0);
        double l = Conformance.Fixture.RelL2(got.narrow(3, 0, 4), cat.narrow(3, 0, 4)), r = Conformance.Fixture.RelL2(got.narrow(3, 4, 4), dog.narrow(3, 4, 4));
        output.WriteLine($"left half vs the cat alone {l:E2}, right half vs the dog alone {r:E2}");
        Assert.True(l < 1e-5 && r < 1e-5);
        // a default conditioning fills the unmasked half; where the masked one covers, it adds nothing
        using var gd = s.Guidance([new GuidedCondition(s.Cat) { Mask = left }, new GuidedCondition(s.Dog) { Default = true }], [new GuidedCondition(s.Blurry)], 1);
        using var gotDefault = Denoise(gd, x, sigma);
        Assert.True(Conformance.Fixture.RelL2(gotDefault, got) < 1e-5);
        // overlapping conditionings average by weight: strength 3 against 1
        using var gs = s.Guidance([new GuidedCondition(s.Cat) { Strength = 3 }, new GuidedCondition(s.Dog)], [new GuidedCondition(s.Blurry)], 1);
        using var weighted = Denoise(gs, x, sigma);
        Assert.True(Conformance.Fixture.RelL2(weighted, (cat.Mul(3) + dog).Div(4)) < 1e-5);
        // mask bounds with a mask over everything is the whole image
        using var all = ones(1, 64, 64);
        using var gb = s.Guidance([new GuidedCondition(s.Cat) { Mask = all, MaskBounds = true }], [new GuidedCondition(s.Blurry)], 1);
        Assert.True(Conformance.Fixture.RelL2(Denoise(gb, x, sigma), cat) < 1e-6);
    }

    [SkippableFact]
    public void MaskBoundsRunTheModelOnTheMasksBoxOnly()
    {
        using var noGrad = no_grad();
        using var s = new Setup();
        using var x = Latent(4, size: 16);
        const float sigma = 3f;
        // an 8x8 latent box at (4, 6) of a 16x16 latent
        using var box = zeros(1, 128, 128);
        box.narrow(1, 32, 64).narrow(2, 48, 64).fill_(1);
        using var g = s.Guidance([new GuidedCondition(s.Cat) { Mask = box, MaskBounds = true }], [new GuidedCondition(s.Blurry)], 1);
        using var got = Denoise(g, x, sigma);
        using var crop = x.narrow(2, 4, 8).narrow(3, 6, 8).contiguous();
        using var expected = s.Denoised(s.Cat, crop, sigma, 0);
        Assert.True(Conformance.Fixture.RelL2(got.narrow(2, 4, 8).narrow(3, 6, 8), expected) < 1e-5);
        // outside the box nothing was predicted: 0 (ComfyUI leaves it to the other conditionings)
        Assert.Equal(0f, got.narrow(2, 0, 4).abs().max().item<float>());
    }

    [SkippableFact]
    public void TimestepRangesPickTheConditioningForEachSigma()
    {
        using var noGrad = no_grad();
        using var s = new Setup();
        using var x = Latent(3);
        float half = NoiseSchedule.Default.PercentToSigma(0.5);
        var pos = new[] { new GuidedCondition(s.Cat) { EndPercent = 0.5 }, new GuidedCondition(s.Dog) { StartPercent = 0.5 } };
        using var g = s.Guidance(pos, [new GuidedCondition(s.Blurry)], 1);
        foreach (var (sigma, early) in new[] { (half * 3, true), (half / 3, false) })
        {
            using var got = Denoise(g, x, sigma);
            using var expected = s.Denoised(early ? s.Cat : s.Dog, x, sigma, 0);
            Assert.True(Conformance.Fixture.RelL2(got, expected) < 1e-5, $"sigma {sigma}");
        }
        // a scheduled CLIP encoding counts only in its own range
        using var gc = s.Guidance([new GuidedCondition(s.Cat) { ClipRange = (0.5, 1.0) }, new GuidedCondition(s.Dog) { ClipRange = (0.0, 0.5) }], [new GuidedCondition(s.Blurry)], 1);
        using var early2 = Denoise(gc, x, half * 3);
        Assert.True(Conformance.Fixture.RelL2(early2, s.Denoised(s.Dog, x, half * 3, 0)) < 1e-5);
    }
}
