using System.Text.Json.Nodes;
using LoraCraft.Generation;
using LoraCraft.Lora;
using LoraCraft.Pipelines;
using LoraCraft.Sampling;
using LoraCraft.Text;
using static TorchSharp.torch;

namespace LoraCraft.Server.Comfy.Nodes;

/// <summary>Loaders, text encoding and the samplers: ComfyUI's core nodes over the engine's models.</summary>
public static class ModelNodes
{
    static JsonObject Tip(string text) => new() { ["tooltip"] = text };

    public static IEnumerable<NodeDefinition> All(ComfyEnvironment env)
    {
        yield return new NodeDefinition
        {
            Name = "CheckpointLoaderSimple", DisplayName = "Load Checkpoint", Category = "loaders",
            Description = "Loads a diffusion model checkpoint, diffusion models are used to denoise latents.",
            Required = [NodeInput.Combo("ckpt_name", l => l.Checkpoints(), Tip("The name of the checkpoint (model) to load."))],
            Outputs = ["MODEL", "CLIP", "VAE"],
            OutputTooltips = ["The model used for denoising latents.", "The CLIP model used for encoding text prompts.",
                              "The VAE model used for encoding and decoding images to and from latent space."],
            Run = call =>
            {
                var entry = env.Checkpoint(call.Text("ckpt_name"));
                return NodeResult.Of(new ModelValue(entry, []), new ClipValue(entry, [], 1), new VaeValue(entry));
            },
        };

        NodeInput Strength(string name, string tip) => NodeInput.Float(name, 1.0, -100.0, 100.0, 0.01, Tip(tip));
        yield return new NodeDefinition
        {
            Name = "LoraLoader", DisplayName = "Load LoRA", Category = "loaders",
            Description = "LoRAs are used to modify diffusion and CLIP models, altering the way in which latents are denoised such as applying styles. Multiple LoRA nodes can be linked together.",
            Required =
            [
                NodeInput.Link("model", "MODEL", "The diffusion model the LoRA will be applied to."),
                NodeInput.Link("clip", "CLIP", "The CLIP model the LoRA will be applied to."),
                NodeInput.Combo("lora_name", l => l.Loras(), Tip("The name of the LoRA.")),
                Strength("strength_model", "How strongly to modify the diffusion model. This value can be negative."),
                Strength("strength_clip", "How strongly to modify the CLIP model. This value can be negative."),
            ],
            Outputs = ["MODEL", "CLIP"],
            OutputTooltips = ["The modified diffusion model.", "The modified CLIP model."],
            Run = call =>
            {
                var model = call.Value<ModelValue>("model");
                var clip = call.Value<ClipValue>("clip");
                double sm = call.Double("strength_model"), sc = call.Double("strength_clip");
                if (sm == 0 && sc == 0) return NodeResult.Of(model, clip);
                string path = env.LoraPath(call.Text("lora_name"));
                return NodeResult.Of(model with { Loras = [.. model.Loras, Lora(path, unet: sm, te: 0)] },
                                     clip with { Loras = [.. clip.Loras, Lora(path, unet: 0, te: sc)] });
            },
        };
        yield return new NodeDefinition
        {
            Name = "LoraLoaderModelOnly", Category = "loaders",
            Required =
            [
                NodeInput.Link("model", "MODEL"),
                NodeInput.Combo("lora_name", l => l.Loras()),
                NodeInput.Float("strength_model", 1.0, -100.0, 100.0, 0.01),
            ],
            Outputs = ["MODEL"],
            Run = call =>
            {
                var model = call.Value<ModelValue>("model");
                double sm = call.Double("strength_model");
                if (sm == 0) return NodeResult.Of(model);
                return NodeResult.Of(model with { Loras = [.. model.Loras, Lora(env.LoraPath(call.Text("lora_name")), unet: sm, te: 0)] });
            },
        };
        yield return new NodeDefinition
        {
            Name = "CLIPSetLastLayer", DisplayName = "CLIP Set Last Layer", Category = "conditioning",
            Required = [NodeInput.Link("clip", "CLIP"), NodeInput.Int("stop_at_clip_layer", -1, -24, -1)],
            Outputs = ["CLIP"],
            Run = call => NodeResult.Of(call.Value<ClipValue>("clip") with { ClipSkip = (int)-call.Int("stop_at_clip_layer") }),
        };
        yield return new NodeDefinition
        {
            Name = "CLIPTextEncode", DisplayName = "CLIP Text Encode (Prompt)", Category = "conditioning",
            Description = "Encodes a text prompt using a CLIP model into an embedding that can be used to guide the diffusion model towards generating specific images.",
            Required =
            [
                new NodeInput("text", "STRING", new JsonObject { ["multiline"] = true, ["dynamicPrompts"] = true, ["tooltip"] = "The text to be encoded." }),
                NodeInput.Link("clip", "CLIP", "The CLIP model used for encoding the text."),
            ],
            Outputs = ["CONDITIONING"],
            OutputTooltips = ["A conditioning containing the embedded text used to guide the diffusion model."],
            Run = call => NodeResult.Of(Encode(env, call, call.Value<ClipValue>("clip"), call.Text("text"))),
        };
        yield return new NodeDefinition
        {
            Name = "ConditioningCombine", DisplayName = "Conditioning (Combine)", Category = "conditioning",
            Required = [NodeInput.Link("conditioning_1", "CONDITIONING"), NodeInput.Link("conditioning_2", "CONDITIONING")],
            Outputs = ["CONDITIONING"],
            Run = call => NodeResult.Of(new ConditioningValue(
                call.Value<ConditioningValue>("conditioning_1").Entries.Concat(call.Value<ConditioningValue>("conditioning_2").Entries).Select(e => e.Alias()).ToList())),
        };

        var samplers = SamplerRegistry.SamplerIds;
        var schedulers = SamplerRegistry.SchedulerIds;
        yield return new NodeDefinition
        {
            Name = "KSampler", DisplayName = "KSampler", Category = "sampling",
            Description = "Uses the provided model, positive and negative conditioning to denoise the latent image.",
            Required =
            [
                NodeInput.Link("model", "MODEL", "The model used for denoising the input latent."),
                NodeInput.Seed("seed") with { Options = new JsonObject { ["default"] = 0, ["min"] = 0, ["max"] = ulong.MaxValue, ["control_after_generate"] = true, ["tooltip"] = "The random seed used for creating the noise." } },
                NodeInput.Int("steps", 20, 1, 10000, extra: Tip("The number of steps used in the denoising process.")),
                NodeInput.Float("cfg", 8.0, 0.0, 100.0, 0.1, new JsonObject { ["round"] = 0.01, ["tooltip"] = "The Classifier-Free Guidance scale balances creativity and adherence to the prompt. Higher values result in images more closely matching the prompt however too high values will negatively impact quality." }),
                NodeInput.Combo("sampler_name", samplers, extra: Tip("The algorithm used when sampling, this can affect the quality, speed, and style of the generated output.")),
                NodeInput.Combo("scheduler", schedulers, extra: Tip("The scheduler controls how noise is gradually removed to form the image.")),
                NodeInput.Link("positive", "CONDITIONING", "The conditioning describing the attributes you want to include in the image."),
                NodeInput.Link("negative", "CONDITIONING", "The conditioning describing the attributes you want to exclude from the image."),
                NodeInput.Link("latent_image", "LATENT", "The latent image to denoise."),
                NodeInput.Float("denoise", 1.0, 0.0, 1.0, 0.01, Tip("The amount of denoising applied, lower values will maintain the structure of the initial image allowing for image to image sampling.")),
            ],
            Outputs = ["LATENT"],
            OutputTooltips = ["The denoised latent."],
            Run = call =>
            {
                int steps = (int)call.Int("steps");
                string scheduler = call.Text("scheduler");
                double denoise = call.Double("denoise");
                var latent = call.Value<LatentValue>("latent_image");
                if (denoise <= 0) return NodeResult.Of(latent.With(latent.Samples.Handle()));
                var sigmas = Schedulers.ForDenoise(scheduler, NoiseSchedule.Default, steps, denoise);
                return NodeResult.Of(Sample(env, call, call.ULong("seed"), addNoise: true, sigmas, latent));
            },
        };
        yield return new NodeDefinition
        {
            Name = "KSamplerAdvanced", DisplayName = "KSampler (Advanced)", Category = "sampling",
            Required =
            [
                NodeInput.Link("model", "MODEL"),
                NodeInput.Combo("add_noise", ["enable", "disable"]),
                NodeInput.Seed("noise_seed"),
                NodeInput.Int("steps", 20, 1, 10000),
                NodeInput.Float("cfg", 8.0, 0.0, 100.0, 0.1, new JsonObject { ["round"] = 0.01 }),
                NodeInput.Combo("sampler_name", samplers),
                NodeInput.Combo("scheduler", schedulers),
                NodeInput.Link("positive", "CONDITIONING"),
                NodeInput.Link("negative", "CONDITIONING"),
                NodeInput.Link("latent_image", "LATENT"),
                NodeInput.Int("start_at_step", 0, 0, 10000),
                NodeInput.Int("end_at_step", 10000, 0, 10000),
                NodeInput.Combo("return_with_leftover_noise", ["disable", "enable"]),
            ],
            Outputs = ["LATENT"],
            Run = call =>
            {
                int steps = (int)call.Int("steps");
                long start = call.Int("start_at_step"), end = call.Int("end_at_step");
                var latent = call.Value<LatentValue>("latent_image");
                var sigmas = Schedulers.Compute(call.Text("scheduler"), NoiseSchedule.Default, steps);
                // ComfyUI's KSampler with start_step / last_step / force_full_denoise
                if (end < sigmas.Length - 1)
                {
                    sigmas = sigmas[..(int)(end + 1)];
                    if (call.Text("return_with_leftover_noise") != "enable") sigmas[^1] = 0;
                }
                if (start >= sigmas.Length - 1) return NodeResult.Of(latent.With(latent.Samples.Handle()));
                sigmas = sigmas[(int)start..];
                return NodeResult.Of(Sample(env, call, call.ULong("noise_seed"), call.Text("add_noise") != "disable", sigmas, latent));
            },
        };
    }

    /// <summary>
    /// CLIPTextEncode: the text through the CLIP's text encoder with its LoRAs and, when it has
    /// hooks, their LoRAs at their CLIP strengths — once, or once per keyframe range of the hooks
    /// when the CLIP schedules them (each encoding then used over its range of the run). The
    /// hooks ride along on the conditioning when the CLIP applies them to conds.
    /// </summary>
    static ConditioningValue Encode(ComfyEnvironment env, NodeCall call, ClipValue clip, string text)
    {
        var loaded = call.Run.Model(clip.Entry);
        var attached = clip.HooksToConds ? clip.Hooks : null;
        var ranges = new List<((double Start, double End)? Range, List<SelectedLora> Loras)>();
        if (clip.Hooks is { } hooks && clip.ScheduleClip)
            foreach (var r in hooks.ClipSchedule())
                ranges.Add(((r.Start, r.End), r.Hooks.Select(h => HookLora(h.Hook.Lora, unet: 0, te: h.Hook.StrengthClip * (h.Keyframe?.Strength ?? 1))).ToList()));
        else ranges.Add((null, (clip.Hooks?.Hooks ?? []).Select(h => HookLora(h.Lora, unet: 0, te: h.StrengthClip)).ToList()));
        var entries = new List<ConditioningEntry>();
        try
        {
            foreach (var (range, hookLoras) in ranges)
            {
                using var loras = env.Engine.Service.UseLoras(loaded, [.. clip.Loras, .. hookLoras.Where(l => l.Tag.TextEncoder != 0)], call.Run.Job.Warn);
                using var encoder = new ChunkEncoder(loaded.Model, clip.ClipSkip);
                var encoding = ComfyPromptEncoder.Encode(encoder, text, env.Engine.Service.Embeddings.ToSet());
                if (entries.Count == 0)
                    foreach (var missing in encoding.Missing) call.Run.Job.Warn($"embedding {missing} not found; ignored");
                entries.Add(new ConditioningEntry(new GuidedCondition(encoding.Conditioning) { Hooks = attached, ClipRange = range }));
            }
        }
        catch
        {
            foreach (var e in entries) e.Dispose();
            throw;
        }
        return new ConditioningValue(entries);
    }

    /// <summary>A LoRA of the loras folder at the given strengths (a hook's LoRA on one side).</summary>
    internal static SelectedLora HookLora(SelectedLora lora, double unet, double te) =>
        lora with { Tag = new LoraTag(lora.Name, te, unet, null) };

    internal static SelectedLora Lora(string path, double unet, double te)
    {
        string name = Path.GetFileNameWithoutExtension(path);
        return new SelectedLora(name, Path.GetFullPath(path), new LoraTag(name, te, unet, null), FromPrompt: false);
    }

    /// <summary>
    /// ComfyUI's common_ksampler on the engine: the model's LoRAs applied, the conditionings as
    /// guidance (several in a list are averaged, as ComfyUI does), the latent's noise mask and the
    /// inpainting model's concat input, the seed's noise, progress and previews per step.
    /// </summary>
    static LatentValue Sample(ComfyEnvironment env, NodeCall call, ulong seed, bool addNoise, float[] sigmas, LatentValue latent)
    {
        var modelValue = call.Value<ModelValue>("model");
        var positive = call.Value<ConditioningValue>("positive");
        var negative = call.Value<ConditioningValue>("negative");
        double cfg = call.Double("cfg");
        string sampler = call.Text("sampler_name");
        if (positive.Entries.Count == 0 || negative.Entries.Count == 0) throw new UserErrorException("KSampler: a conditioning is empty");
        var run = call.Run;
        var loaded = run.Model(modelValue.Entry);
        var model = loaded.Model;
        // the hooks on the conditionings: their LoRAs ride on the UNet at strength 0 and are moved per model call
        var hooks = new List<LoraHook>();
        foreach (var e in positive.Entries.Concat(negative.Entries))
            foreach (var hook in e.Condition.Hooks?.Hooks ?? [])
                if (!hooks.Any(h => ReferenceEquals(h.Ref, hook.Ref))) hooks.Add(hook);
        using var loras = env.Engine.Service.UseLoras(loaded, modelValue.Loras, run.Job.Warn, hooks: hooks.Select(h => HookLora(h.Lora, 0, 0)).ToList());
        using var noGrad = no_grad();
        using var scope = NewDisposeScope();
        var samples = latent.Samples;
        long h = samples.shape[2], w = samples.shape[3];
        if (samples.shape[1] != model.UNet.Config.OutChannels)
            throw new UserErrorException($"KSampler: the latent has {samples.shape[1]} channels, this model works on {model.UNet.Config.OutChannels}");
        var concat = positive.Entries.Select(e => e.Concat).FirstOrDefault(c => c is not null);
        if (model.Inpainting && concat is null)
            throw new UserErrorException("KSampler: this is an inpainting model; give it its image and mask with InpaintModelConditioning") { Field = "positive" };
        if (!model.Inpainting) concat = null;

        using var guidance = new ConditionGuidance(model, cfg, positive.Entries.Select(e => e.Condition).ToList(), negative.Entries.Select(e => e.Condition).ToList(),
                                                   (int)w * 8, (int)h * 8, hooks.Count > 0 ? new HookRun(loras.Run, hooks) : null);
        var mask = latent.NoiseMask is { } m ? LatentSampler.MaskToLatent(m.dim() == 3 ? m.unsqueeze(1) : m, h, w) : null;
        int total = sigmas.Length - 1;
        var progress = new Progress(run, total, model.Family);
        var sampled = LatentSampler.Sample(model, guidance, new LatentSampling
        {
            Latent = samples, Sigmas = sigmas, Sampler = sampler, Seed = seed, AddNoise = addNoise, NoiseMask = mask, Concat = concat,
        }, new SamplerContext(progress, run.Cancel));
        var output = sampled.Latent.MoveToOuterDisposeScope();
        return latent.With(output);
    }

    /// <summary>Sampler steps as ComfyUI's `progress` messages, each with a latent preview.</summary>
    sealed class Progress(PromptRun run, int total, Models.ModelFamily family) : IProgress<SamplerStep>
    {
        public void Report(SamplerStep step)
        {
            run.Progress(step.Index, Math.Max(total, step.Total));
            if ((step.Denoised ?? step.X) is { } latent) run.Preview(LatentPreview.Png(latent, family));
        }
    }
}
