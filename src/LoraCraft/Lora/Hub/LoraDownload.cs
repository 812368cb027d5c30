namespace LoraCraft.Lora.Hub;

/// <summary>
/// A LoRA installed by <see cref="HubClient.GetAsync"/>: where it is, what it is, and the sidecars
/// written beside it. <see cref="AlreadyPresent"/>: the same file (same SHA-256) was there already.
/// </summary>
public sealed record LoraDownload(
    string Path, HubSite Site, string Source, long SizeBytes, string Sha256, bool AlreadyPresent,
    string? ModelName, string? VersionName, string? BaseModel, IReadOnlyList<string> TriggerWords,
    string? CivitaiInfoPath, string? UserMetadataPath, string? PreviewPath, IReadOnlyList<string> Warnings);
