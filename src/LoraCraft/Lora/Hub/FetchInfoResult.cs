namespace LoraCraft.Lora.Hub;

public enum FetchInfoStatus
{
    /// <summary>Civitai knows the file: its sidecars were written.</summary>
    Found,
    /// <summary>No Civitai model version has this file (by SHA-256, nor by its AutoV3 data hash).</summary>
    NotFound,
    /// <summary>It has a `NAME.civitai.info` already (and overwriting was not asked for).</summary>
    Skipped,
    /// <summary>The lookup failed (network, HTTP error, unreadable file): see <see cref="FetchInfoResult.Error"/>.</summary>
    Failed,
}

/// <summary>One file of a fetch-info run: what Civitai said about it and what was written.</summary>
public sealed record FetchInfoResult(
    string Path, FetchInfoStatus Status, string? Sha256, long? VersionId, string? ModelName, string? VersionName,
    string? BaseModel, string? CivitaiInfoPath, string? PreviewPath, string? Error);
