namespace LoraCraft.Lora.Hub;

/// <summary>Where a LoRA comes from.</summary>
public enum HubSite { Civitai, HuggingFace, Url }

public static class HubSites
{
    public static string Id(this HubSite site) => site switch
    {
        HubSite.Civitai => "civitai",
        HubSite.HuggingFace => "hf",
        _ => "url",
    };
}
