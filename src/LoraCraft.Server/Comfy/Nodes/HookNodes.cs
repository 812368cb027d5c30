using System.Text.Json.Nodes;
using LoraCraft.Lora;
using LoraCraft.Pipelines;

namespace LoraCraft.Server.Comfy.Nodes;

/// <summary>
/// ComfyUI's LoRA hook nodes (comfy_extras/nodes_hooks.py, "advanced/hooks"): hooks made from
/// LoRA files, keyframes that move their strength over the run, combining, and attaching them
/// to a CLIP (SetClipHooks) or to conditionings, with masks and timestep ranges. Sampling with
/// them is <see cref="ConditionGuidance"/> and <see cref="HookRun"/>.
/// </summary>
public static class HookNodes
{
    static JsonObject Tip(string text) => new() { ["tooltip"] = text };

    public static IEnumerable<NodeDefinition> All(ComfyEnvironment env)
    {
        NodeInput Strength(string name) => NodeInput.Float(name, 1.0, -20.0, 20.0, 0.01);
        NodeResult CreateHook(NodeCall call, double model, double clip)
        {
            var prev = call.Optional<HookGroup>("prev_hooks");
            if (model == 0 && clip == 0) return NodeResult.Of(prev);
            var hook = new LoraHook(ModelNodes.Lora(env.LoraPath(call.Text("lora_name")), 0, 0), model, clip);
            return NodeResult.Of(HookGroup.Combine(prev, new HookGroup([hook])));
        }
        yield return new NodeDefinition
        {
            Name = "CreateHookLora", DisplayName = "Create Hook LoRA", Category = "advanced/hooks/create", PythonModule = "comfy_extras.nodes_hooks",
            Required = [NodeInput.Combo("lora_name", l => l.Loras()), Strength("strength_model"), Strength("strength_clip")],
            Optional = [NodeInput.Link("prev_hooks", "HOOKS")],
            Outputs = ["HOOKS"],
            Run = call => CreateHook(call, call.Double("strength_model"), call.Double("strength_clip")),
        };
        yield return new NodeDefinition
        {
            Name = "CreateHookLoraModelOnly", DisplayName = "Create Hook LoRA (MO)", Category = "advanced/hooks/create", PythonModule = "comfy_extras.nodes_hooks",
            Required = [NodeInput.Combo("lora_name", l => l.Loras()), Strength("strength_model")],
            Optional = [NodeInput.Link("prev_hooks", "HOOKS")],
            Outputs = ["HOOKS"],
            Run = call => CreateHook(call, call.Double("strength_model"), 0),
        };
        yield return new NodeDefinition
        {
            Name = "SetHookKeyframes", DisplayName = "Set Hook Keyframes", Category = "advanced/hooks/scheduling", PythonModule = "comfy_extras.nodes_hooks",
            Required = [NodeInput.Link("hooks", "HOOKS")],
            Optional = [NodeInput.Link("hook_kf", "HOOK_KEYFRAMES")],
            Outputs = ["HOOKS"],
            Run = call =>
            {
                var hooks = call.Value<HookGroup>("hooks");
                return NodeResult.Of(call.Optional<HookKeyframesValue>("hook_kf") is { } kf ? hooks.WithKeyframes(kf.Keyframes) : hooks);
            },
        };
        HookKeyframes Previous(NodeCall call) => call.Optional<HookKeyframesValue>("prev_hook_kf")?.Keyframes ?? HookKeyframes.Empty;
        yield return new NodeDefinition
        {
            Name = "CreateHookKeyframe", DisplayName = "Create Hook Keyframe", Category = "advanced/hooks/scheduling", PythonModule = "comfy_extras.nodes_hooks",
            Required = [NodeInput.Float("strength_mult", 1.0, -20.0, 20.0, 0.01), NodeInput.Float("start_percent", 0.0, 0.0, 1.0, 0.001)],
            Optional = [NodeInput.Link("prev_hook_kf", "HOOK_KEYFRAMES")],
            Outputs = ["HOOK_KEYFRAMES"],
            OutputNames = ["HOOK_KF"],
            Run = call => NodeResult.Of(new HookKeyframesValue(Previous(call).Add(new HookKeyframe(call.Double("strength_mult"), call.Double("start_percent"))))),
        };
        yield return new NodeDefinition
        {
            Name = "CreateHookKeyframesInterpolated", DisplayName = "Create Hook Keyframes Interp.", Category = "advanced/hooks/scheduling", PythonModule = "comfy_extras.nodes_hooks",
            Required =
            [
                NodeInput.Float("strength_start", 1.0, 0.0, 10.0, 0.001), NodeInput.Float("strength_end", 1.0, 0.0, 10.0, 0.001),
                NodeInput.Combo("interpolation", HookKeyframes.Methods),
                NodeInput.Float("start_percent", 0.0, 0.0, 1.0, 0.001), NodeInput.Float("end_percent", 1.0, 0.0, 1.0, 0.001),
                NodeInput.Int("keyframes_count", 5, 2, 100), NodeInput.Bool("print_keyframes", false),
            ],
            Optional = [NodeInput.Link("prev_hook_kf", "HOOK_KEYFRAMES")],
            Outputs = ["HOOK_KEYFRAMES"],
            OutputNames = ["HOOK_KF"],
            Run = call =>
            {
                int count = (int)call.Int("keyframes_count");
                var strengths = HookKeyframes.Interpolate(call.Double("strength_start"), call.Double("strength_end"), count, call.Text("interpolation"));
                var kf = Previous(call).AddSpread(strengths, call.Double("start_percent"), call.Double("end_percent"));
                if (call.Bool("print_keyframes"))
                    call.Run.Job.Warn("hook keyframes: " + string.Join(", ", kf.Frames.Select(k => $"{k.Strength:0.###}@{k.StartPercent:0.###}")));
                return NodeResult.Of(new HookKeyframesValue(kf));
            },
        };
        foreach (int n in new[] { 2, 4, 8 })
        {
            var names = Enumerable.Range(0, n).Select(i => "hooks_" + (char)('A' + i)).ToList();
            yield return new NodeDefinition
            {
                Name = "CombineHooks" + n, DisplayName = $"Combine Hooks [{n}]", Category = "advanced/hooks/combine", PythonModule = "comfy_extras.nodes_hooks",
                Optional = names.Select(name => NodeInput.Link(name, "HOOKS")).ToList(),
                Outputs = ["HOOKS"],
                Run = call => NodeResult.Of(HookGroup.Combine(names.Select(call.Optional<HookGroup>).ToArray())),
            };
        }
        yield return new NodeDefinition
        {
            Name = "SetClipHooks", DisplayName = "Set CLIP Hooks", Category = "advanced/hooks/clip", PythonModule = "comfy_extras.nodes_hooks",
            Required = [NodeInput.Link("clip", "CLIP"), NodeInput.Bool("apply_to_conds", true), NodeInput.Bool("schedule_clip", false)],
            Optional = [NodeInput.Link("hooks", "HOOKS")],
            Outputs = ["CLIP"],
            Run = call =>
            {
                var clip = call.Value<ClipValue>("clip");
                if (call.Optional<HookGroup>("hooks") is not { } hooks) return NodeResult.Of(clip);
                return NodeResult.Of(clip with { Hooks = hooks, HooksToConds = call.Bool("apply_to_conds"), ScheduleClip = call.Bool("schedule_clip") });
            },
        };

        // attaching hooks, masks and ranges to conditionings
        NodeInput CondStrength() => NodeInput.Float("strength", 1.0, 0.0, 10.0, 0.01);
        NodeInput CondArea() => NodeInput.Combo("set_cond_area", ["default", "mask bounds"]);
        IReadOnlyList<NodeInput> PropsOptional() => [NodeInput.Link("mask", "MASK"), NodeInput.Link("hooks", "HOOKS"), NodeInput.Link("timesteps", "TIMESTEPS_RANGE")];
        ConditioningValue Props(NodeCall call, string input) => SetProperties(call.Value<ConditioningValue>(input), call.Optional<HookGroup>("hooks"),
            call.Optional<MaskValue>("mask"), call.Double("strength"), call.Text("set_cond_area") != "default", call.Optional<TimestepsRange>("timesteps"));
        yield return new NodeDefinition
        {
            Name = "ConditioningSetProperties", DisplayName = "Cond Set Props", Category = "advanced/hooks/cond single", PythonModule = "comfy_extras.nodes_hooks",
            Required = [NodeInput.Link("cond_NEW", "CONDITIONING"), CondStrength(), CondArea()],
            Optional = PropsOptional(),
            Outputs = ["CONDITIONING"],
            Run = call => NodeResult.Of(Props(call, "cond_NEW")),
        };
        yield return new NodeDefinition
        {
            Name = "ConditioningSetPropertiesAndCombine", DisplayName = "Cond Set Props Combine", Category = "advanced/hooks/cond single", PythonModule = "comfy_extras.nodes_hooks",
            Required = [NodeInput.Link("cond", "CONDITIONING"), NodeInput.Link("cond_NEW", "CONDITIONING"), CondStrength(), CondArea()],
            Optional = PropsOptional(),
            Outputs = ["CONDITIONING"],
            Run = call => NodeResult.Of(Combine(call.Value<ConditioningValue>("cond"), Props(call, "cond_NEW"))),
        };
        yield return new NodeDefinition
        {
            Name = "PairConditioningSetProperties", DisplayName = "Cond Pair Set Props", Category = "advanced/hooks/cond pair", PythonModule = "comfy_extras.nodes_hooks",
            Required = [NodeInput.Link("positive_NEW", "CONDITIONING"), NodeInput.Link("negative_NEW", "CONDITIONING"), CondStrength(), CondArea()],
            Optional = PropsOptional(),
            Outputs = ["CONDITIONING", "CONDITIONING"],
            OutputNames = ["positive", "negative"],
            Run = call => NodeResult.Of(Props(call, "positive_NEW"), Props(call, "negative_NEW")),
        };
        yield return new NodeDefinition
        {
            Name = "PairConditioningSetPropertiesAndCombine", DisplayName = "Cond Pair Set Props Combine", Category = "advanced/hooks/cond pair", PythonModule = "comfy_extras.nodes_hooks",
            Required =
            [
                NodeInput.Link("positive", "CONDITIONING"), NodeInput.Link("negative", "CONDITIONING"),
                NodeInput.Link("positive_NEW", "CONDITIONING"), NodeInput.Link("negative_NEW", "CONDITIONING"), CondStrength(), CondArea(),
            ],
            Optional = PropsOptional(),
            Outputs = ["CONDITIONING", "CONDITIONING"],
            OutputNames = ["positive", "negative"],
            Run = call => NodeResult.Of(Combine(call.Value<ConditioningValue>("positive"), Props(call, "positive_NEW")),
                                        Combine(call.Value<ConditioningValue>("negative"), Props(call, "negative_NEW"))),
        };
        ConditioningValue Default(NodeCall call, string input) =>
            MapEntries(call.Value<ConditioningValue>(input), e => e.Alias(change: c => c with { Hooks = HookGroup.Combine(c.Hooks, call.Optional<HookGroup>("hooks")), Default = true }));
        yield return new NodeDefinition
        {
            Name = "ConditioningSetDefaultCombine", DisplayName = "Cond Set Default Combine", Category = "advanced/hooks/cond single", PythonModule = "comfy_extras.nodes_hooks",
            Required = [NodeInput.Link("cond", "CONDITIONING"), NodeInput.Link("cond_DEFAULT", "CONDITIONING")],
            Optional = [NodeInput.Link("hooks", "HOOKS")],
            Outputs = ["CONDITIONING"],
            Run = call => NodeResult.Of(Combine(call.Value<ConditioningValue>("cond"), Default(call, "cond_DEFAULT"))),
        };
        yield return new NodeDefinition
        {
            Name = "PairConditioningSetDefaultCombine", DisplayName = "Cond Pair Set Default Combine", Category = "advanced/hooks/cond pair", PythonModule = "comfy_extras.nodes_hooks",
            Required =
            [
                NodeInput.Link("positive", "CONDITIONING"), NodeInput.Link("negative", "CONDITIONING"),
                NodeInput.Link("positive_DEFAULT", "CONDITIONING"), NodeInput.Link("negative_DEFAULT", "CONDITIONING"),
            ],
            Optional = [NodeInput.Link("hooks", "HOOKS")],
            Outputs = ["CONDITIONING", "CONDITIONING"],
            OutputNames = ["positive", "negative"],
            Run = call => NodeResult.Of(Combine(call.Value<ConditioningValue>("positive"), Default(call, "positive_DEFAULT")),
                                        Combine(call.Value<ConditioningValue>("negative"), Default(call, "negative_DEFAULT"))),
        };
        yield return new NodeDefinition
        {
            Name = "PairConditioningCombine", DisplayName = "Cond Pair Combine", Category = "advanced/hooks/cond pair", PythonModule = "comfy_extras.nodes_hooks",
            Required =
            [
                NodeInput.Link("positive_A", "CONDITIONING"), NodeInput.Link("negative_A", "CONDITIONING"),
                NodeInput.Link("positive_B", "CONDITIONING"), NodeInput.Link("negative_B", "CONDITIONING"),
            ],
            Outputs = ["CONDITIONING", "CONDITIONING"],
            OutputNames = ["positive", "negative"],
            Run = call => NodeResult.Of(Combine(call.Value<ConditioningValue>("positive_A"), Copy(call.Value<ConditioningValue>("positive_B"))),
                                        Combine(call.Value<ConditioningValue>("negative_A"), Copy(call.Value<ConditioningValue>("negative_B")))),
        };
        yield return new NodeDefinition
        {
            Name = "SetModelHooksOnCond", Category = "advanced/hooks/manual", PythonModule = "comfy_extras.nodes_hooks",
            Required = [NodeInput.Link("conditioning", "CONDITIONING"), NodeInput.Link("hooks", "HOOKS")],
            Outputs = ["CONDITIONING"],
            Run = call => NodeResult.Of(SetProperties(call.Value<ConditioningValue>("conditioning"), call.Value<HookGroup>("hooks"), null, 1, false, null)),
        };
        yield return new NodeDefinition
        {
            Name = "ConditioningTimestepsRange", DisplayName = "Timesteps Range", Category = "advanced/hooks", PythonModule = "comfy_extras.nodes_hooks",
            Required = [NodeInput.Float("start_percent", 0.0, 0.0, 1.0, 0.001), NodeInput.Float("end_percent", 1.0, 0.0, 1.0, 0.001)],
            Outputs = ["TIMESTEPS_RANGE", "TIMESTEPS_RANGE", "TIMESTEPS_RANGE"],
            OutputNames = ["TIMESTEPS_RANGE", "BEFORE_RANGE", "AFTER_RANGE"],
            Run = call =>
            {
                double start = call.Double("start_percent"), end = call.Double("end_percent");
                return NodeResult.Of(new TimestepsRange(start, end), new TimestepsRange(0, start), new TimestepsRange(end, 1));
            },
        };
    }

    /// <summary>
    /// ComfyUI's set_conds_props on every entry: hooks added to the entry's own, the mask (with
    /// the strength as its mask strength; without a mask the strength does nothing, as there),
    /// and the timestep range.
    /// </summary>
    public static ConditioningValue SetProperties(ConditioningValue value, HookGroup? hooks, MaskValue? mask, double strength, bool maskBounds, TimestepsRange? range) =>
        MapEntries(value, e => e.Alias(
            change: c =>
            {
                c = c with { Hooks = HookGroup.Combine(c.Hooks, hooks) };
                if (mask is not null) c = c with { MaskStrength = strength, MaskBounds = maskBounds };
                if (range is not null) c = c with { StartPercent = range.Start, EndPercent = range.End };
                return c;
            },
            mask: mask?.Mask.Handle()));

    public static ConditioningValue MapEntries(ConditioningValue value, Func<ConditioningEntry, ConditioningEntry> map) => new(value.Entries.Select(map).ToList());

    static ConditioningValue Copy(ConditioningValue value) => MapEntries(value, e => e.Alias());

    /// <summary>The entries of <paramref name="first"/> (copied) then those of <paramref name="then"/> (taken over).</summary>
    public static ConditioningValue Combine(ConditioningValue first, ConditioningValue then) => new([.. first.Entries.Select(e => e.Alias()), .. then.Entries]);
}
