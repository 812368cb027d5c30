using LoraCraft.Pipelines;
using LoraCraft.Sampling;
using LoraCraft.Tests.Conformance;
using LoraCraft.Text;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace LoraCraft.Tests.Pipelines;

/// <summary>
/// Generations on the tiny SD1.5 model with A1111's prompt language and seeds: the conditioning
/// changes at the step the schedule says (checked by re-running the sampler by hand with the two
/// texts), AND parts combine as A1111 combines them, A1111's noise conventions.
/// </summary>
public class PromptGenerationTests
{
    static GenerationRequest Base => new()
    {
        Prompt = "a photo of a cat", Negative = "blurry", Seed = 11, Steps = 4, Cfg = 7, Sampler = "euler", Scheduler = "normal", Width = 64, Height = 64,
    };

    static readonly long[] Shape = [1, 4, 8, 8];

    /// <summary>The pipeline's txt2img loop by hand, the denoiser chosen per 1-based step.</summary>
    static Tensor SampleByHand(GenerationRequest r, Func<int, Guidance> guidanceAt, bool a1111Scaling = false)
    {
        var schedule = NoiseSchedule.Default;
        var sigmas = Schedulers.ForDenoise(r.Scheduler, schedule, r.Steps, 1);
        using var noise = SeedNoise.Create(Shape, r.Seed, r.Noise, r.NoiseConvention, r.Subseed, r.SubseedStrength);
        var x = noise.Initial * (a1111Scaling ? sigmas[0] : Math.Sqrt(1 + (double)sigmas[0] * sigmas[0]));
        var ctx = new SamplerContext();
        Denoiser d = (xt, sigma) => guidanceAt(ctx.CompletedSteps + 1).Denoise(xt, sigma, schedule, null, ctx.CompletedSteps + 1);
        return Samplers.Sample(r.Sampler, d, x, sigmas, noise.NextAncestral, ctx);
    }

    [SkippableFact]
    public void AnEditedPromptSwitchesConditioningAtTheScheduledStep()
    {
        Fixture.Require();
        var model = ModelCases.Model("sd15", diffusers: false);
        using var noGrad = torch.no_grad();
        // [cat:dog:0.5] over 4 steps: "cat" for steps 1-2, "dog" for 3-4; the negative switches after step 1
        var edited = Base with { Prompt = "a photo of a [cat:dog:0.5]", Negative = "[blurry:ugly:1]" };
        using var result = StableDiffusionPipeline.Generate(model, edited);
        Assert.Equal(3, result.Prompts.Count);
        Assert.Equal((1, "a photo of a cat", "blurry"), (result.Prompts[0].Step, result.Prompts[0].Positive[0], result.Prompts[0].Negative));
        Assert.Equal((2, "a photo of a cat", "ugly"), (result.Prompts[1].Step, result.Prompts[1].Positive[0], result.Prompts[1].Negative));
        Assert.Equal((3, "a photo of a dog", "ugly"), (result.Prompts[2].Step, result.Prompts[2].Positive[0], result.Prompts[2].Negative));

        // the same sampler run by hand with plain prompts swapped at those steps gives the same latent, bit for bit
        using var catBlurry = Guidance.Prepare(model, Base with { Prompt = "a photo of a cat", Negative = "blurry" });
        using var catUgly = Guidance.Prepare(model, Base with { Prompt = "a photo of a cat", Negative = "ugly" });
        using var dogUgly = Guidance.Prepare(model, Base with { Prompt = "a photo of a dog", Negative = "ugly" });
        using var byHand = SampleByHand(edited, step => step == 1 ? catBlurry : step == 2 ? catUgly : dogUgly);
        Assert.True(A1111ConditioningCases.Same(byHand, result.Latent), "the edited prompt's latent is not the hand-switched one");

        // and it is neither the all-cat nor the all-dog image
        using var allCat = StableDiffusionPipeline.Generate(model, Base with { Prompt = "a photo of a cat", Negative = "ugly" });
        using var allDog = StableDiffusionPipeline.Generate(model, Base with { Prompt = "a photo of a dog", Negative = "ugly" });
        Assert.True(Fixture.RelL2(result.Latent, allCat.Latent) > 1e-4);
        Assert.True(Fixture.RelL2(result.Latent, allDog.Latent) > 1e-4);
    }

    [SkippableFact]
    public void EachDistinctChunkIsEncodedOncePerGeneration()
    {
        Fixture.Require();
        var model = ModelCases.Model("sd15", diffusers: false);
        // alternation over 6 steps: 6 schedule entries, but only "a cat", "a dog" and the negative are encoded
        using var prompts = PromptConditioning.Encode(model, "a [cat|dog]", "a cat", 6, new PromptOptions());
        Assert.Equal(6, prompts.Positive[0].Schedule.Entries.Count);
        Assert.Equal(2, prompts.Forwards); // "a cat" is the same chunk in both prompts
        Assert.Same(prompts.Positive[0].Schedule.Entries[0].Conditioning, prompts.Positive[0].Schedule.Entries[2].Conditioning);
    }

    [SkippableFact]
    public void AndPartsAreCombinedAsA1111Does()
    {
        Fixture.Require();
        var model = ModelCases.Model("sd15", diffusers: false);
        using var noGrad = torch.no_grad();
        var request = Base with { Prompt = "a photo of a cat AND a red ball :0.5", Negative = "blurry", Steps = 3 };
        using var result = StableDiffusionPipeline.Generate(model, request);
        Assert.Equal(["a photo of a cat", " a red ball"], result.Prompts[0].Positive);

        // by hand: each part and the negative denoised on its own (cfg 1, no negative), then
        // uncond + sum of (cond_k - uncond) * weight_k * cfg
        using var cat = Guidance.Prepare(model, request with { Prompt = "a photo of a cat", Cfg = 1 });
        using var ball = Guidance.Prepare(model, request with { Prompt = " a red ball", Cfg = 1 });
        using var neg = Guidance.Prepare(model, request with { Prompt = "blurry", Cfg = 1 });
        var schedule = NoiseSchedule.Default;
        var sigmas = Schedulers.ForDenoise("normal", schedule, request.Steps, 1);
        using var noise = SeedNoise.Create(Shape, request.Seed);
        var x = noise.Initial * Math.Sqrt(1 + (double)sigmas[0] * sigmas[0]);
        Denoiser d = (xt, sigma) =>
        {
            using var scope = NewDisposeScope();
            var u = neg.Denoise(xt, sigma, schedule, null);
            var combined = u + (cat.Denoise(xt, sigma, schedule, null) - u) * 7.0 + (ball.Denoise(xt, sigma, schedule, null) - u) * 3.5;
            return combined.MoveToOuterDisposeScope();
        };
        using var byHand = Samplers.Sample("euler", d, x, sigmas, noise.NextAncestral);
        double err = Fixture.RelL2(result.Latent, byHand);
        Assert.True(err < 1e-5, $"AND combination differs from A1111's formula: relative L2 {err:E2}");
    }

    [SkippableFact]
    public void A1111NoiseConventionsDrawEverythingFromOnePerImageGenerator()
    {
        Fixture.Require();
        var model = ModelCases.Model("sd15", diffusers: false);
        using var noGrad = torch.no_grad();
        foreach (var source in new[] { RandomSource.Nv, RandomSource.Cpu })
        {
            var request = Base with { Sampler = "euler_ancestral", Noise = source, NoiseConvention = NoiseConvention.A1111, Steps = 3 };
            using var result = StableDiffusionPipeline.Generate(model, request);
            using var guidance = Guidance.Prepare(model, request);
            using var byHand = SampleByHand(request, _ => guidance, a1111Scaling: true);
            Assert.True(A1111ConditioningCases.Same(byHand, result.Latent), $"{source}: not A1111's initial scaling and ancestral draws");
        }
        // NV and CPU give different pictures from the same seed, as A1111's GPU and CPU do
        using var nv = StableDiffusionPipeline.Generate(model, Base with { Noise = RandomSource.Nv, NoiseConvention = NoiseConvention.A1111 });
        using var cpu = StableDiffusionPipeline.Generate(model, Base with { NoiseConvention = NoiseConvention.A1111 });
        Assert.True(Fixture.RelL2(nv.Latent, cpu.Latent) > 1e-2);
    }

    [SkippableFact]
    public void VariationSeedStrengthMovesFromTheSeedsImageTowardsTheSubseeds()
    {
        Fixture.Require();
        var model = ModelCases.Model("sd15", diffusers: false);
        using var noGrad = torch.no_grad();
        var a1111 = Base with { NoiseConvention = NoiseConvention.A1111, Noise = RandomSource.Nv };
        using var seedOnly = StableDiffusionPipeline.Generate(model, a1111);
        using var zero = StableDiffusionPipeline.Generate(model, a1111 with { Subseed = 99, SubseedStrength = 0 });
        using var full = StableDiffusionPipeline.Generate(model, a1111 with { Subseed = 99, SubseedStrength = 1 });
        using var subseedOnly = StableDiffusionPipeline.Generate(model, a1111 with { Seed = 99 });
        using var half = StableDiffusionPipeline.Generate(model, a1111 with { Subseed = 99, SubseedStrength = 0.5 });
        Assert.True(A1111ConditioningCases.Same(seedOnly.Latent, zero.Latent));
        // euler adds no noise after the start: strength 1 is exactly the subseed's picture
        Assert.True(A1111ConditioningCases.Same(full.Latent, subseedOnly.Latent));
        Assert.True(Fixture.RelL2(half.Latent, seedOnly.Latent) > 1e-3);
    }

    [SkippableFact]
    public void APromptLongerThanItsNegativeRunsAsA1111AndAsComfyUiDo()
    {
        Fixture.Require();
        var model = ModelCases.Model("sd15", diffusers: false);
        using var noGrad = torch.no_grad();
        // 2 chunks against 1: A1111 evaluates them as two batches, ComfyUI repeats the negative to 154
        // tokens; attention over a repeated context is the same, so the pictures agree to rounding
        // (no commas, so both styles cut the prompt at the same token and encode the same chunks)
        string longPrompt = string.Join(" ", Enumerable.Repeat("soft light", 45));
        var request = Base with { Prompt = longPrompt, Steps = 2 };
        using var prompts = PromptConditioning.Encode(model, longPrompt, "blurry", 2, new PromptOptions());
        using var comfyPrompts = PromptConditioning.Encode(model, longPrompt, "blurry", 2, new PromptOptions { Style = PromptStyle.ComfyUI });
        Assert.Equal(154, prompts.Positive[0].Schedule.At(1).Context.shape[1]);
        Assert.True(A1111ConditioningCases.Same(prompts.Positive[0].Schedule.At(1).Context, comfyPrompts.Positive[0].Schedule.At(1).Context));
        using var a1111 = StableDiffusionPipeline.Generate(model, request);
        using var comfy = StableDiffusionPipeline.Generate(model, request with { PromptStyle = PromptStyle.ComfyUI });
        double err = Fixture.RelL2(a1111.Latent, comfy.Latent);
        Assert.True(err < 1e-3, $"relative L2 {err:E2}");
    }
}
