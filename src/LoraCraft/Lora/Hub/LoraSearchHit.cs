using LoraCraft.Models;

namespace LoraCraft.Lora.Hub;

/// <summary>
/// One search result: <see cref="Id"/> is what `lora get` takes (`civitai:VERSION_ID` of the
/// newest version, or `hf:OWNER/REPO`); <see cref="BaseModel"/> is the site's own name for it.
/// </summary>
public sealed record LoraSearchHit(
    HubSite Site, string Id, string Name, string? Version, string? BaseModel, ModelFamily? Family,
    long? Downloads, string PageUrl);
