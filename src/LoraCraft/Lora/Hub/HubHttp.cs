using System.Net;
using System.Net.Http.Headers;
using System.Text.Json;

namespace LoraCraft.Lora.Hub;

/// <summary>
/// HTTP for the hub clients: redirects followed by hand so that a token goes only to the host it
/// belongs to (never to the CDN a download is sent on to), a time limit on every answer, and
/// errors turned into <see cref="HubException"/>s that name the URL without its query and never
/// hold a token.
/// </summary>
internal sealed class HubHttp : IDisposable
{
    const int MaxRedirects = 10;
    const int MaxJsonBytes = 32 << 20;

    readonly HttpClient _client;
    readonly HubOptions _options;
    readonly string[] _secrets;

    public HubHttp(HubOptions options)
    {
        _options = options;
        _secrets = new[] { options.CivitaiToken, options.HuggingFaceToken, options.UrlToken }.OfType<string>().Where(t => t.Length > 0).ToArray();
        var handler = new SocketsHttpHandler
        {
            AllowAutoRedirect = false,
            AutomaticDecompression = DecompressionMethods.None, // byte ranges and sizes are of the file itself
            ConnectTimeout = options.RequestTimeout,
            PooledConnectionLifetime = TimeSpan.FromMinutes(5),
        };
        _client = new HttpClient(handler) { Timeout = Timeout.InfiniteTimeSpan };
        _client.DefaultRequestHeaders.UserAgent.Add(new ProductInfoHeaderValue("LoraCraft", "1.0"));
    }

    public HubOptions Options => _options;

    /// <summary>
    /// Sends a request and follows redirects; the token (when given) goes only to requests on
    /// <paramref name="tokenHost"/>'s host and port. The caller disposes the answer.
    /// </summary>
    public async Task<HttpResponseMessage> SendAsync(HttpMethod method, Uri url, string? token, Uri? tokenHost, long? rangeFrom,
                                                     CancellationToken ct, bool followRedirects = true)
    {
        var at = url;
        for (int hop = 0; ; hop++)
        {
            using var request = new HttpRequestMessage(method, at);
            if (token is not null && tokenHost is not null && SameOrigin(at, tokenHost))
                request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", token);
            if (rangeFrom is > 0) request.Headers.Range = new RangeHeaderValue(rangeFrom, null);
            request.Headers.AcceptEncoding.Add(new StringWithQualityHeaderValue("identity"));
            HttpResponseMessage response;
            using (var timeout = CancellationTokenSource.CreateLinkedTokenSource(ct))
            {
                timeout.CancelAfter(_options.RequestTimeout);
                try { response = await _client.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, timeout.Token); }
                catch (OperationCanceledException) when (!ct.IsCancellationRequested)
                {
                    throw new HttpRequestException($"no answer within {_options.RequestTimeout.TotalSeconds:0} s");
                }
            }
            int status = (int)response.StatusCode;
            if (!followRedirects || status is < 300 or >= 400 || response.Headers.Location is not { } next) return response;
            response.Dispose();
            if (hop == MaxRedirects) throw new HubException($"{LoraReference.Shown(url)}: more than {MaxRedirects} redirects");
            at = new Uri(at, next);
        }
    }

    /// <summary>GETs a JSON answer; null on 404 (the caller says what was not found).</summary>
    public async Task<JsonDocument?> GetJsonAsync(Uri url, string? token, Uri tokenHost, CancellationToken ct)
    {
        try
        {
            using var response = await SendAsync(HttpMethod.Get, url, token, tokenHost, null, ct);
            if (response.StatusCode == HttpStatusCode.NotFound) return null;
            if (!response.IsSuccessStatusCode) throw await Failed(url, response, token is not null, ct);
            var bytes = await ReadBounded(response, MaxJsonBytes, ct);
            try { return JsonDocument.Parse(bytes); }
            catch (JsonException e) { throw new HubException($"{LoraReference.Shown(url)}: the answer is not JSON ({e.Message})"); }
        }
        catch (HttpRequestException e) { throw Unreachable(url, e); }
    }

    /// <summary>GETs a small file (a preview image), at most <paramref name="maxBytes"/>.</summary>
    public async Task<byte[]> GetBytesAsync(Uri url, string? token, Uri? tokenHost, int maxBytes, CancellationToken ct)
    {
        try
        {
            using var response = await SendAsync(HttpMethod.Get, url, token, tokenHost, null, ct);
            if (!response.IsSuccessStatusCode) throw await Failed(url, response, token is not null, ct);
            return await ReadBounded(response, maxBytes, ct);
        }
        catch (HttpRequestException e) { throw Unreachable(url, e); }
    }

    async Task<byte[]> ReadBounded(HttpResponseMessage response, int maxBytes, CancellationToken ct)
    {
        if (response.Content.Headers.ContentLength > maxBytes)
            throw new HubException($"{LoraReference.Shown(response.RequestMessage!.RequestUri!)}: the answer is over {maxBytes >> 20} MiB");
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(ct);
        timeout.CancelAfter(_options.RequestTimeout);
        await using var body = await response.Content.ReadAsStreamAsync(timeout.Token);
        using var buffer = new MemoryStream();
        var chunk = new byte[1 << 16];
        int n;
        try
        {
            while ((n = await body.ReadAsync(chunk, timeout.Token)) > 0)
            {
                if (buffer.Length + n > maxBytes)
                    throw new HubException($"{LoraReference.Shown(response.RequestMessage!.RequestUri!)}: the answer is over {maxBytes >> 20} MiB");
                buffer.Write(chunk, 0, n);
            }
        }
        catch (OperationCanceledException) when (!ct.IsCancellationRequested)
        {
            throw new HttpRequestException($"the answer did not arrive within {_options.RequestTimeout.TotalSeconds:0} s");
        }
        catch (IOException e) { throw new HttpRequestException(e.Message, e); }
        return buffer.ToArray();
    }

    /// <summary>An HTTP error as one line: status, the site's own message (Civitai and HF send JSON `error`/`message`), a hint for 401/403.</summary>
    public async Task<HubException> Failed(Uri url, HttpResponseMessage response, bool sentToken, CancellationToken ct)
    {
        int status = (int)response.StatusCode;
        string? said = null;
        try
        {
            var bytes = await ReadBounded(response, 64 << 10, ct);
            using var doc = JsonDocument.Parse(bytes);
            if (doc.RootElement.ValueKind == JsonValueKind.Object)
                said = new[] { "message", "error" }.Select(k => doc.RootElement.TryGetProperty(k, out var v) && v.ValueKind == JsonValueKind.String ? v.GetString() : null)
                    .FirstOrDefault(s => !string.IsNullOrWhiteSpace(s));
        }
        catch (Exception e) when (e is JsonException or HttpRequestException or HubException or IOException) { }
        string hint = status is 401 or 403
            ? sentToken ? " (the token was refused, or this account may not download it)" : " (this download may need an API token: CIVITAI_TOKEN or HF_TOKEN)"
            : "";
        string message = $"{LoraReference.Shown(url)}: HTTP {status} {response.ReasonPhrase}".TrimEnd() + (said is null ? "" : $": {Clip(said)}") + hint;
        return new HubException(Redact(message));
    }

    public HubException Unreachable(Uri url, Exception e) =>
        new(Redact($"{LoraReference.Shown(url)}: {e.Message.ReplaceLineEndings(" ")}"), e);

    /// <summary>Any token replaced by ***: a message may quote a server that echoed one.</summary>
    public string Redact(string message)
    {
        foreach (var secret in _secrets) message = message.Replace(secret, "***", StringComparison.Ordinal);
        return message;
    }

    public static bool SameOrigin(Uri a, Uri b) =>
        a.Scheme == b.Scheme && a.Authority.Equals(b.Authority, StringComparison.OrdinalIgnoreCase);

    static string Clip(string s)
    {
        s = s.ReplaceLineEndings(" ").Trim();
        return s.Length <= 200 ? s : s[..200] + "…";
    }

    public void Dispose() => _client.Dispose();
}
