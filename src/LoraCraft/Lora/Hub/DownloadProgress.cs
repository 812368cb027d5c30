namespace LoraCraft.Lora.Hub;

/// <summary>
/// Bytes of one file on disk so far (a resumed download starts at what the partial file held)
/// and its size when the site says it; reported at most every few hundred kilobytes and once at the end.
/// </summary>
public readonly record struct DownloadProgress(string FileName, long BytesReceived, long? TotalBytes);
