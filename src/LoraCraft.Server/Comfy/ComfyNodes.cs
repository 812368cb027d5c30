using LoraCraft.Server.Comfy.Nodes;

namespace LoraCraft.Server.Comfy;

/// <summary>Every node class the ComfyUI API offers, in /object_info's order.</summary>
public static class ComfyNodes
{
    public static IEnumerable<NodeDefinition> All(ComfyEnvironment env) =>
        ModelNodes.All(env).Concat(ConditioningNodes.All(env)).Concat(HookNodes.All(env)).Concat(LatentNodes.All(env)).Concat(ImageNodes.All(env)).Concat(InpaintCropNodes.All(env));
}
