namespace LoraCraft.Lora.Hub;

/// <summary>
/// A download, lookup or search on Civitai, Hugging Face or a plain URL that cannot be done as
/// asked (not found, refused file, hash mismatch, HTTP error). Messages never hold a token or a
/// URL's query string (where signed links and `?token=` live).
/// </summary>
public sealed class HubException : UserErrorException
{
    public HubException(string message) : base(message) { }
    public HubException(string message, Exception inner) : base(message, inner) { }
}
