using LoraCraft.Pipelines;
using static TorchSharp.torch;

namespace LoraCraft.Server.Comfy.Nodes;

/// <summary>ComfyUI's core nodes that set properties on conditionings (mask, strength, timestep range) or blank them.</summary>
public static class ConditioningNodes
{
    public static IEnumerable<NodeDefinition> All(ComfyEnvironment env)
    {
        yield return new NodeDefinition
        {
            Name = "ConditioningSetTimestepRange", DisplayName = "ConditioningSetTimestepRange", Category = "advanced/conditioning",
            Required =
            [
                NodeInput.Link("conditioning", "CONDITIONING"),
                NodeInput.Float("start", 0.0, 0.0, 1.0, 0.001), NodeInput.Float("end", 1.0, 0.0, 1.0, 0.001),
            ],
            Outputs = ["CONDITIONING"],
            Run = call => NodeResult.Of(HookNodes.SetProperties(call.Value<ConditioningValue>("conditioning"), null, null, 1, false,
                                                                new TimestepsRange(call.Double("start"), call.Double("end")))),
        };
        yield return new NodeDefinition
        {
            Name = "ConditioningSetMask", DisplayName = "Conditioning (Set Mask)", Category = "conditioning",
            Required =
            [
                NodeInput.Link("conditioning", "CONDITIONING"), NodeInput.Link("mask", "MASK"),
                NodeInput.Float("strength", 1.0, 0.0, 10.0, 0.01), NodeInput.Combo("set_cond_area", ["default", "mask bounds"]),
            ],
            Outputs = ["CONDITIONING"],
            Run = call => NodeResult.Of(HookNodes.SetProperties(call.Value<ConditioningValue>("conditioning"), null, call.Value<MaskValue>("mask"),
                                                                call.Double("strength"), call.Text("set_cond_area") != "default", null)),
        };
        yield return new NodeDefinition
        {
            Name = "ConditioningSetAreaStrength", Category = "conditioning",
            Required = [NodeInput.Link("conditioning", "CONDITIONING"), NodeInput.Float("strength", 1.0, 0.0, 10.0, 0.01)],
            Outputs = ["CONDITIONING"],
            Run = call =>
            {
                double strength = call.Double("strength");
                return NodeResult.Of(HookNodes.MapEntries(call.Value<ConditioningValue>("conditioning"), e => e.Alias(change: c => c with { Strength = strength })));
            },
        };
        yield return new NodeDefinition
        {
            Name = "ConditioningZeroOut", Category = "advanced/conditioning",
            Required = [NodeInput.Link("conditioning", "CONDITIONING")],
            Outputs = ["CONDITIONING"],
            Run = call => NodeResult.Of(HookNodes.MapEntries(call.Value<ConditioningValue>("conditioning"), e =>
            {
                var copy = e.Alias();
                using (copy)
                {
                    var zeroed = new Text.Conditioning(zeros_like(copy.Conditioning.Context).DetachFromDisposeScope(),
                                                       copy.Conditioning.Pooled is { } p ? zeros_like(p).DetachFromDisposeScope() : null);
                    return new ConditioningEntry(copy.Condition with { Conditioning = zeroed, Mask = copy.Condition.Mask?.Handle() },
                                                 copy.Concat is { } c ? new InpaintConcat(c.Mask.Handle(), c.MaskedLatent.Handle()) : null);
                }
            })),
        };
    }
}
