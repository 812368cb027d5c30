using System.Net;

namespace LoraCraft.Lora.Hub;

/// <summary>
/// One file fetched into a partial file that survives a cut connection: each try asks with an
/// HTTP Range for what is missing and appends it; a server that ignores the Range starts the
/// file over. The partial file is kept on failure or cancellation (the next run resumes it);
/// checking what arrived is the caller's business.
/// </summary>
internal static class ResumableDownload
{
    const int BufferSize = 1 << 16;
    const long ReportEvery = 256 << 10;

    /// <summary>What to fetch: the URL, the token and its host, and the size when the site publishes it exactly.</summary>
    public sealed record Source(Uri Url, string? Token, Uri? TokenHost, long? ExactSize);

    /// <summary>Downloads into <paramref name="partPath"/> until it holds the whole file; returns its length.</summary>
    public static async Task<long> RunAsync(HubHttp http, Source source, string partPath, string displayName,
                                            IProgress<DownloadProgress>? progress, CancellationToken ct)
    {
        var options = http.Options;
        Exception? last = null;
        for (int attempt = 1; attempt <= Math.Max(1, options.MaxAttempts); attempt++)
        {
            if (attempt > 1) await Task.Delay(options.RetryDelay, ct);
            long have = File.Exists(partPath) ? new FileInfo(partPath).Length : 0;
            if (source.ExactSize is long size && have > size) { File.Delete(partPath); have = 0; }
            if (source.ExactSize is long whole && have == whole && have > 0)
            {
                progress?.Report(new DownloadProgress(displayName, have, whole));
                return have;
            }
            try
            {
                if (await TryOnce(http, source, partPath, have, displayName, progress, ct) is long done) return done;
                last = new IOException("the server ended the answer before the end of the file");
            }
            catch (Exception e) when (Retryable(e, ct))
            {
                last = e;
            }
        }
        throw new HubException(http.Redact(
            $"download of {LoraReference.Shown(source.Url)} failed after {options.MaxAttempts} tries: {Describe(last!)}; " +
            $"the partial file {partPath} is kept and the next try resumes it"));
    }

    /// <summary>One request; the file's length when it is complete, null when the answer stopped short (retry).</summary>
    static async Task<long?> TryOnce(HubHttp http, Source source, string partPath, long have, string displayName,
                                     IProgress<DownloadProgress>? progress, CancellationToken ct)
    {
        using var response = await http.SendAsync(HttpMethod.Get, source.Url, source.Token, source.TokenHost, have > 0 ? have : null, ct);
        long start;
        long? total = source.ExactSize;
        switch (response.StatusCode)
        {
            case HttpStatusCode.PartialContent when have > 0:
                var range = response.Content.Headers.ContentRange;
                if (range?.From is not long from || from != have)
                {
                    // an answer for another range than asked: start over rather than splice
                    File.Delete(partPath);
                    return null;
                }
                start = have;
                total ??= range.Length;
                break;
            case HttpStatusCode.OK:
                start = 0;
                total ??= response.Content.Headers.ContentLength;
                break;
            case HttpStatusCode.RequestedRangeNotSatisfiable when have > 0:
                // the partial file is already whole (size unknown beforehand) or belongs to another file
                long? length = response.Content.Headers.ContentRange?.Length;
                if (length == have) return have;
                File.Delete(partPath);
                return null;
            default:
                int status = (int)response.StatusCode;
                var failure = await http.Failed(source.Url, response, source.Token is not null, ct);
                if (status is 408 or 429 or >= 500) throw new HttpRequestException(failure.Message);
                throw failure;
        }
        if (source.ExactSize is long exact && response.Content.Headers.ContentLength is long len && start + len != exact)
            throw new HubException(http.Redact($"{LoraReference.Shown(source.Url)}: the server sends {start + len:N0} bytes but the site lists {exact:N0}"));

        await using var file = new FileStream(partPath, FileMode.OpenOrCreate, FileAccess.Write, FileShare.None, BufferSize);
        file.SetLength(start);
        file.Seek(start, SeekOrigin.Begin);
        long received = start, reported = start;
        progress?.Report(new DownloadProgress(displayName, received, total));

        using var stall = CancellationTokenSource.CreateLinkedTokenSource(ct);
        await using var body = await response.Content.ReadAsStreamAsync(ct);
        var buffer = new byte[BufferSize];
        while (true)
        {
            stall.CancelAfter(http.Options.StallTimeout);
            int n;
            try { n = await body.ReadAsync(buffer, stall.Token); }
            catch (OperationCanceledException) when (!ct.IsCancellationRequested)
            {
                throw new TimeoutException($"nothing arrived for {http.Options.StallTimeout.TotalSeconds:0} s");
            }
            if (n == 0) break;
            await file.WriteAsync(buffer.AsMemory(0, n), ct);
            received += n;
            if (total is long t && received > t)
                throw new HubException(http.Redact($"{LoraReference.Shown(source.Url)}: the server sends more than the {t:N0} bytes it announced"));
            if (received - reported >= ReportEvery)
            {
                reported = received;
                progress?.Report(new DownloadProgress(displayName, received, total));
            }
        }
        await file.FlushAsync(ct);
        if (total is long expected && received < expected) return null;
        progress?.Report(new DownloadProgress(displayName, received, total ?? received));
        return received;
    }

    static bool Retryable(Exception e, CancellationToken ct) =>
        !ct.IsCancellationRequested && e is HttpRequestException or IOException or TimeoutException && e is not HubException;

    static string Describe(Exception e) => e.Message.ReplaceLineEndings(" ");
}
