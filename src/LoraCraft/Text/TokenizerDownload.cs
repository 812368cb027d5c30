using LoraCraft.Models.Loading;

namespace LoraCraft.Text;

/// <summary>
/// Fetches the CLIP vocabulary (`vocab.json`, `merges.txt` of openai/clip-vit-large-patch14) from
/// the Hugging Face hub or a mirror, into a folder or into the hub cache laid out as
/// huggingface_hub does (`models--openai--clip-vit-large-patch14/snapshots/&lt;commit&gt;/` and
/// `refs/main`), where <see cref="TokenizerLocator"/> finds it. The files arrive in a staging
/// folder and are moved into place only once both are complete and load as a tokenizer; on any
/// failure nothing is left behind.
/// </summary>
public static class TokenizerDownload
{
    public const string DefaultEndpoint = "https://huggingface.co";
    const string Revision = "main";
    static readonly string[] Files = ["vocab.json", "merges.txt"];
    // The real pair is 1.5 MB; a much larger answer is not a vocabulary and must not fill the disk.
    const long MaxFileBytes = 64L << 20;
    const int MaxRedirects = 10;

    /// <summary>The hub to download from: the given URL, else HF_ENDPOINT (as huggingface_hub reads it), else huggingface.co.</summary>
    public static string Endpoint(string? baseUrl) =>
        baseUrl ?? (Environment.GetEnvironmentVariable("HF_ENDPOINT") is { Length: > 0 } e ? e : DefaultEndpoint);

    /// <summary>
    /// Downloads into <paramref name="toDir"/>, or when it is null into a snapshot of the hub cache
    /// at <paramref name="hubCacheRoot"/>; returns the folder that holds the two files.
    /// </summary>
    public static async Task<string> DownloadAsync(string? toDir, string endpoint, string hubCacheRoot, CancellationToken ct = default)
    {
        if (!Uri.TryCreate(endpoint.TrimEnd('/') + "/", UriKind.Absolute, out var hub) || hub.Scheme is not ("http" or "https"))
            throw new UserErrorException($"'{endpoint}' is not an http(s) URL (the base URL or HF_ENDPOINT)") { Field = "base_url" };
        var repoUrl = new Uri(hub, $"{TokenizerLocator.HubRepo}/resolve/{Revision}/");

        if (toDir is not null && File.Exists(toDir)) throw new UserErrorException($"to {toDir}: is a file, not a folder") { Field = "to" };
        // Staging sits inside the destination's folder, so that moving the files out is a rename.
        string home = toDir ?? TokenizerLocator.HubRepoDir(hubCacheRoot);
        string? created = FirstMissing(Path.GetFullPath(home));
        string staging = Path.Combine(home, $".download-{Guid.NewGuid():N}");
        try
        {
            Directory.CreateDirectory(staging);
            using var http = new HttpClient(new HttpClientHandler { AllowAutoRedirect = false }) { Timeout = TimeSpan.FromMinutes(2) };
            string? commit = null;
            foreach (var name in Files)
            {
                var fileCommit = await Fetch(http, new Uri(repoUrl, name), Path.Combine(staging, name), ct);
                commit ??= fileCommit;
            }
            try { ClipTokenizer.FromDirectory(staging); }
            catch (UserErrorException e)
            {
                var problem = e.Message.Replace(staging + Path.DirectorySeparatorChar, "", StringComparison.Ordinal);
                throw new UserErrorException($"{repoUrl}: the downloaded files are not a CLIP tokenizer: {problem}");
            }

            string snapshot = commit ?? Revision;
            string final = toDir ?? Path.Combine(home, "snapshots", snapshot);
            Directory.CreateDirectory(final);
            foreach (var name in Files) File.Move(Path.Combine(staging, name), Path.Combine(final, name), overwrite: true);
            if (toDir is null) WriteRef(home, snapshot);
            return final;
        }
        catch
        {
            if (created is not null) TryDelete(created);
            throw;
        }
        finally
        {
            TryDelete(staging);
        }
    }

    /// <summary>
    /// GETs <paramref name="url"/> into <paramref name="path"/>; returns the hub's X-Repo-Commit.
    /// Redirects are followed by hand because the hub sends that header on its own answer, which
    /// may be a redirect to a CDN that does not repeat it.
    /// </summary>
    static async Task<string?> Fetch(HttpClient http, Uri url, string path, CancellationToken ct)
    {
        string? commit = null;
        var at = url;
        try
        {
            for (int hop = 0; ; hop++)
            {
                using var response = await http.GetAsync(at, HttpCompletionOption.ResponseHeadersRead, ct);
                if (response.Headers.TryGetValues("X-Repo-Commit", out var values) && values.FirstOrDefault() is { } c && IsCommit(c))
                    commit ??= c;
                if ((int)response.StatusCode is >= 300 and < 400 && response.Headers.Location is { } next)
                {
                    if (hop == MaxRedirects) throw Failed(url, $"more than {MaxRedirects} redirects");
                    at = new Uri(at, next);
                    continue;
                }
                if (!response.IsSuccessStatusCode) throw Failed(url, $"HTTP {(int)response.StatusCode} {response.ReasonPhrase}".TrimEnd());
                await using var body = await response.Content.ReadAsStreamAsync(ct);
                await using var file = new FileStream(path, FileMode.CreateNew, FileAccess.Write, FileShare.None);
                var buffer = new byte[1 << 16];
                long total = 0;
                int n;
                while ((n = await body.ReadAsync(buffer, ct)) > 0)
                {
                    if ((total += n) > MaxFileBytes) throw Failed(url, $"answer is over {MaxFileBytes >> 20} MiB, not a vocabulary file");
                    await file.WriteAsync(buffer.AsMemory(0, n), ct);
                }
                return commit;
            }
        }
        catch (HttpRequestException e) { throw Failed(url, e.Message); }
        catch (TaskCanceledException) when (!ct.IsCancellationRequested) { throw Failed(url, "timed out"); }
        catch (IOException e) { throw Failed(url, e.Message); }
    }

    static UserErrorException Failed(Uri url, string problem) =>
        new($"download of {url} failed: {problem.ReplaceLineEndings(" ")}");

    // A commit becomes a folder name: only a real 40-digit hash is trusted as one.
    static bool IsCommit(string s) => s.Length == 40 && s.All(char.IsAsciiHexDigitLower);

    /// <summary>refs/main names the snapshot, as huggingface_hub writes it (the commit, no newline).</summary>
    static void WriteRef(string repoDir, string snapshot)
    {
        var refs = Directory.CreateDirectory(Path.Combine(repoDir, "refs")).FullName;
        var temporary = Path.Combine(refs, $".{Revision}.tmp-{Guid.NewGuid():N}");
        File.WriteAllText(temporary, snapshot);
        File.Move(temporary, Path.Combine(refs, Revision), overwrite: true);
    }

    /// <summary>The outermost folder of <paramref name="dir"/> that does not exist yet (what a failure must remove), or null.</summary>
    static string? FirstMissing(string dir)
    {
        string? missing = null;
        for (var d = dir; d is not null && !Directory.Exists(d); d = Path.GetDirectoryName(d)) missing = d;
        return missing;
    }

    static void TryDelete(string dir)
    {
        try { if (Directory.Exists(dir)) Directory.Delete(dir, recursive: true); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { }
    }
}
