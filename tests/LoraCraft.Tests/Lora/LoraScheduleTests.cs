using LoraCraft.Lora;
using LoraCraft.Models;
using LoraCraft.Models.Random;
using LoraCraft.Pipelines;
using LoraCraft.Runtime;
using LoraCraft.Sampling;
using TorchSharp;
using Xunit;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace LoraCraft.Tests.Lora;

/// <summary>Per-step strength (sd-webui-loractl keyframes, block-weight start/stop) and bypass against merge.</summary>
public class LoraScheduleTests(ITestOutputHelper output)
{
    static LoraScheduleTests() => TorchNative.Ensure();

    [SkippableTheory]
    // fractions: step i of n is at i / (n - 2), as loractl computes it
    [InlineData("0@0,1@1", 10, new[] { 0.0, 0.125, 0.25, 0.375, 0.5, 0.625, 0.75, 0.875, 1.0, 1.0 })]
    [InlineData("1@0,0.5@0.5", 6, new[] { 1.0, 0.75, 0.5, 0.5, 0.5, 0.5 })]
    [InlineData("0.25@0.5;1@1", 6, new[] { 0.25, 0.25, 0.25, 0.625, 1.0, 1.0 })]    // flat before the first keyframe
    [InlineData("0@0.5,1", 6, new[] { 0.0, 0.0, 0.0, 0.5, 1.0, 1.0 })]                    // a keyframe without @ sits at 1
    [InlineData("1@1,0@0", 4, new[] { 0.0, 0.5, 1.0, 1.0 })]                           // sorted by position
    // step numbers once a position is above 1
    [InlineData("0@5,1@6", 8, new[] { 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 1.0 })]
    [InlineData("0@0,1@4", 6, new[] { 0.0, 0.25, 0.5, 0.75, 1.0, 1.0 })]
    public void KeyframesInterpolateLinearlyOverTheSteps(string text, int steps, double[] expected)
    {
        var s = StrengthSchedule.Parse(text, "test");
        Assert.Equal(expected, Enumerable.Range(0, steps).Select(i => Math.Round(s.At(i, steps), 6)).ToArray());
    }

    [SkippableFact]
    public void TagsCarrySchedulesBlockWeightsAndStepRanges()
    {
        static LoraTag Single(string prompt) => Assert.Single(LoraTags.Extract(prompt).Tags);
        var both = Single("<lora:style:0@0,1@0.5>");
        Assert.Equal("0@0,1@0.5", both.UNetSchedule!.ToString());
        Assert.Equal("0@0,1@0.5", both.TextEncoderSchedule!.ToString());
        Assert.Equal(0, both.UNet);
        Assert.True(both.Scheduled);
        var unetOnly = Single("<lora:style:1:0@0,1@1>");
        Assert.Null(unetOnly.TextEncoderSchedule);
        Assert.Equal(1, unetOnly.TextEncoder);
        Assert.Equal("0@0,1@1", unetOnly.UNetSchedule!.ToString());
        var named = Single("<lora:style:te=0@0,1@1:unet=0.5:hr=1>");
        Assert.Null(named.UNetSchedule);
        Assert.Equal(0.5, named.UNet);
        Assert.False(named.Scheduled);
        // block weights: lbw=, w=, or a preset / vector in the UNet's place
        Assert.Equal(0, Single("<lora:style:1:OUTALL>").Blocks!.WeightFor(new LoraTarget(LoraComponent.UNet, "input_blocks.1.1.proj_in.weight", new Weight([1])) { Block = LoraTargets.BlockOf("input_blocks.1.1.proj_in", 2) }));
        var lbw = Single("<lora:style:0.8:0.6:lbw=MIDD:lbwe=ATTNDEEPOFF>");
        Assert.Equal((0.8, 0.6), (lbw.TextEncoder, lbw.UNet));
        Assert.Equal("lbw=MIDD:lbwe=ATTNDEEPOFF", lbw.Blocks!.TagText);
        Assert.NotNull(Single("<lora:style:1:w=1,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,1>").Blocks);
        // start/stop: the UNet part from 1-based step START, off from STOP (step=START-STOP)
        var range = Single("<lora:style:1:start=3:stop=6>");
        Assert.Equal([0, 0, 1, 1, 1, 0, 0, 0], Enumerable.Range(0, 8).Select(i => range.UNetAt(i, 8)).ToArray());
        Assert.Equal(range.Active, Single("<lora:style:1:step=3-6>").Active);
        // 0.5 of 8 steps: start = round(4) = 4
        Assert.Equal([0, 0, 0, 1, 1, 1, 1, 1], Enumerable.Range(0, 8).Select(i => Single("<lora:style:1:start=0.5>").UNetAt(i, 8)).ToArray());
        // and errors name the tag
        var e = Assert.Throws<UserErrorException>(() => LoraTags.Extract("<lora:style:1:BOGUS>"));
        Assert.Contains("<lora:style:1:BOGUS>", e.Message);
        Assert.Contains("not a preset", e.Message);
        Assert.Contains("not a weight@step keyframe", Assert.Throws<UserErrorException>(() => LoraTags.Extract("<lora:style:1@x>")).Message);
        // the command-line form takes keyframes too, and the recorded tag reproduces them
        var option = LoraTags.ParseOption("style:0@0,1@1:0.5");
        Assert.Equal(("0@0,1@1", 0.5), (option.UNetSchedule!.ToString(), option.TextEncoder));
    }

    [SkippableFact]
    public void ARampGivesEachStepItsOwnMergedUpdate()
    {
        using var dir = new TempDir();
        using var model = RandomLoraTests.TinyModel(dir, RandomModelKind.Sd15);
        var (lora, plan) = Lora(dir, model);
        using var _ = lora;
        var target = plan.Matched.First(m => m.Target.Component == LoraComponent.UNet).Target;
        var w0 = target.Weight.T.clone();
        using var patcher = new LoraPatcher();
        patcher.Apply([new LoraApplication(plan, 1, 1)]);
        var full = target.Weight.T - w0;
        var tag = new LoraTag("ramp", 1, 0, null) { UNetSchedule = StrengthSchedule.Parse("0@0,1@1", "test") };
        var run = new LoraRun(patcher, [new ScheduledLora(tag, new LoraApplication(plan, 0, 1))], LoraMode.Merge);
        const int steps = 6;
        run.Start(steps);
        var seen = new List<double>();
        for (int i = 0; i < steps; i++)
        {
            run.BeforeModelCall(i, steps);
            double s = tag.UNetAt(i, steps);
            var delta = target.Weight.T - w0;
            output.WriteLine($"step {i}: strength {s}, |ΔW| {delta.norm().item<float>():E3}");
            if (s == 0) Assert.True((target.Weight.T == w0).all().item<bool>(), "strength 0 must leave the weight exactly original");
            else Assert.True(Conformance.Fixture.RelL2(delta, full * s) < 1e-5);
            seen.Add(Math.Round(delta.norm().item<float>(), 7));
        }
        // 0, 1/4, 1/2, 3/4, 1, 1: every step of the ramp before its end has another update
        Assert.Equal(5, seen.Distinct().Count());
    }

    [SkippableFact]
    public void AutoModeRunsAScheduleInBypassAndMergesTheTextEncoder()
    {
        using var dir = new TempDir();
        using var model = RandomLoraTests.TinyModel(dir, RandomModelKind.Sd15);
        var (lora, plan) = Lora(dir, model);
        using var _ = lora;
        var before = Weights.Snapshot(model);
        using var patcher = new LoraPatcher();
        var tag = new LoraTag("ramp", 1, 0, null) { UNetSchedule = StrengthSchedule.Parse("0@0,1@1", "test") };
        var run = new LoraRun(patcher, [new ScheduledLora(tag, new LoraApplication(plan, 0, 1))]);
        Assert.True(run.Scheduled);
        run.Start(6);
        var unet = plan.Matched.Where(m => m.Target.Component == LoraComponent.UNet).Select(m => m.Target).ToList();
        var text = plan.Matched.Where(m => m.Target.Component != LoraComponent.UNet).Select(m => m.Target).ToList();
        Assert.All(text, t => Assert.False((t.Weight.T == before["te1." + t.Name]).all().item<bool>(), "the text encoder is merged"));
        for (int i = 0; i < 6; i++)
        {
            run.BeforeModelCall(i, 6);
            foreach (var t in unet)
            {
                Assert.True((t.Weight.T == before["unet." + t.Name]).all().item<bool>(), "UNet weights stay untouched in bypass");
                Assert.Equal(tag.UNetAt(i, 6), Assert.IsType<LoraCraft.Lora.Adapters.BypassBranch>(Assert.Single(t.Layer!.Adapters!), exactMatch: false).Strength);
            }
        }
        patcher.Apply([]);
        Weights.AssertBitIdentical(before, model);
    }

    [SkippableTheory]
    [InlineData(null)]          // a static LoRA
    [InlineData("0@0,1@0.5")]   // a schedule
    public void BypassAndMergeGiveTheSameImage(string? schedule)
    {
        using var dir = new TempDir();
        using var model = RandomLoraTests.TinyModel(dir, RandomModelKind.Sd15);
        var (lora, plan) = Lora(dir, model, RandomLoraLayers.All);
        using var _ = lora;
        var tag = new LoraTag("x", 0.8, 1.2, null) { UNetSchedule = schedule is null ? null : StrengthSchedule.Parse(schedule, "test") };
        var selected = new ScheduledLora(tag, new LoraApplication(plan, tag.UNet, tag.TextEncoder));
        var request = new GenerationRequest { Prompt = "a cat", Negative = "blurry", Seed = 3, Steps = 4, Cfg = 5, Sampler = "heun", Width = 64, Height = 64 };
        Tensor Generate(LoraMode mode)
        {
            using var patcher = new LoraPatcher();
            var run = new LoraRun(patcher, [selected], mode);
            run.Start(request.Steps);
            var ctx = new SamplerContext { BeforeModelCall = run.Scheduled ? run.BeforeModelCall : null };
            using var result = StableDiffusionPipeline.Generate(model, request, ctx);
            return result.Latent.clone();
        }
        using var merged = Generate(LoraMode.Merge);
        using var bypassed = Generate(LoraMode.Bypass);
        using var auto = Generate(LoraMode.Auto);
        using var none = StableDiffusionPipeline.Generate(model, request);
        double change = Conformance.Fixture.RelL2(merged, none.Latent), err = Conformance.Fixture.RelL2(bypassed, merged), errAuto = Conformance.Fixture.RelL2(auto, merged);
        output.WriteLine($"schedule {schedule ?? "none"}: LoRA changes the latent by {change:E2}; bypass vs merge {err:E2}, auto vs merge {errAuto:E2}");
        Assert.True(change > 1e-3);
        Assert.True(err < 1e-5, $"bypass differs from merge by {err:E2}");
        Assert.True(errAuto < 1e-5, $"auto differs from merge by {errAuto:E2}");
    }

    static (LoraFile File, LoraPlan Plan) Lora(TempDir dir, StableDiffusionModel model, RandomLoraLayers layers = RandomLoraLayers.Attention)
    {
        var targets = new LoraTargets(model);
        var path = dir.File("lora.safetensors");
        RandomLora.Make(path, targets, new RandomLoraOptions(Rank: 4, Seed: 8, Layers: layers));
        var file = LoraFile.Load(path);
        return (file, LoraPlan.Create(file, targets));
    }
}
