using System.Collections.Concurrent;
using System.Net;
using System.Text;
using LoraCraft.Tests.Text;

namespace LoraCraft.Tests.Lora.Hub;

/// <summary>
/// A stand-in for Civitai, Hugging Face or a CDN on 127.0.0.1 (a free port): routes by path
/// (case-insensitive, as Civitai's hash lookups are), files with HTTP Range support and
/// connections that can be cut mid-answer; it records every request so tests can check the
/// headers and URLs sent. Nothing here reaches the internet.
/// </summary>
sealed class FakeSite : IDisposable
{
    /// <summary>One request as it arrived: <see cref="Url"/> is the raw path and query, escapes kept.</summary>
    public sealed record Request(string Method, string Path, string Url, string? Authorization, string? Range);

    readonly HttpListener _listener = new();
    // routes are unescaped paths: "/a b.safetensors" answers "/a%20b.safetensors"
    readonly ConcurrentDictionary<string, Action<HttpListenerRequest, HttpListenerResponse>> _routes = new(StringComparer.OrdinalIgnoreCase);
    readonly ConcurrentQueue<Request> _requests = new();

    public string Url { get; }
    public Uri Base => new(Url + "/");
    public IReadOnlyList<Request> Requests => _requests.ToArray();

    public FakeSite()
    {
        for (int attempt = 0; ; attempt++)
        {
            Url = $"http://127.0.0.1:{LocalHub.FreePort()}";
            _listener.Prefixes.Add(Url + "/");
            try
            {
                _listener.Start();
                break;
            }
            catch (HttpListenerException) when (attempt < 5)
            {
                _listener.Prefixes.Clear();
            }
        }
        _ = Task.Run(Serve);
    }

    public IEnumerable<Request> RequestsTo(string path) => Requests.Where(r => string.Equals(r.Path, path, StringComparison.OrdinalIgnoreCase));

    public void Json(string path, string json, int status = 200) => _routes[path] = (_, r) =>
    {
        var body = Encoding.UTF8.GetBytes(json);
        r.StatusCode = status;
        r.ContentType = "application/json";
        r.ContentLength64 = body.Length;
        r.OutputStream.Write(body);
    };

    /// <summary>
    /// Serves <paramref name="body"/> with byte ranges. The first <paramref name="cutTimes"/>
    /// answers stop after <paramref name="cutAt"/> bytes of the file and drop the connection.
    /// </summary>
    public void File(string path, byte[] body, int cutTimes = 0, long cutAt = 0, IReadOnlyDictionary<string, string>? headers = null, bool ranges = true)
    {
        int cuts = cutTimes;
        _routes[path] = (request, r) =>
        {
            foreach (var (k, v) in headers ?? new Dictionary<string, string>()) r.AddHeader(k, v);
            long from = 0;
            if (ranges && request.Headers["Range"] is { } range && range.StartsWith("bytes=", StringComparison.Ordinal) && range.EndsWith('-'))
            {
                from = long.Parse(range[6..^1]);
                if (from >= body.Length)
                {
                    r.StatusCode = 416;
                    r.AddHeader("Content-Range", $"bytes */{body.Length}");
                    r.ContentLength64 = 0;
                    return;
                }
                r.StatusCode = 206;
                r.AddHeader("Content-Range", $"bytes {from}-{body.Length - 1}/{body.Length}");
            }
            r.AddHeader("Accept-Ranges", "bytes");
            r.ContentLength64 = body.Length - from;
            if (request.HttpMethod == "HEAD") return;
            if (Interlocked.Decrement(ref cuts) >= 0 && cutAt > from)
            {
                r.OutputStream.Write(body, (int)from, (int)(cutAt - from));
                r.OutputStream.Flush();
                r.Abort();
                return;
            }
            r.OutputStream.Write(body, (int)from, (int)(body.Length - from));
        };
    }

    public void Redirect(string path, string to, IReadOnlyDictionary<string, string>? headers = null) => _routes[path] = (_, r) =>
    {
        foreach (var (k, v) in headers ?? new Dictionary<string, string>()) r.AddHeader(k, v);
        r.StatusCode = 302;
        r.RedirectLocation = to;
        r.ContentLength64 = 0;
    };

    async Task Serve()
    {
        while (_listener.IsListening)
        {
            HttpListenerContext context;
            try { context = await _listener.GetContextAsync(); }
            catch (Exception e) when (e is HttpListenerException or ObjectDisposedException or InvalidOperationException) { return; }
            _ = Task.Run(() => Answer(context));
        }
    }

    void Answer(HttpListenerContext context)
    {
        var request = context.Request;
        string path = request.Url!.AbsolutePath;
        _requests.Enqueue(new Request(request.HttpMethod, Uri.UnescapeDataString(path), request.RawUrl ?? "", request.Headers["Authorization"], request.Headers["Range"]));
        // a client that hangs up mid-answer must not stop the server for the next request
        try
        {
            using var response = context.Response;
            if (_routes.TryGetValue(Uri.UnescapeDataString(path), out var answer)) answer(request, response);
            else
            {
                var body = """{"error":"Not found"}"""u8.ToArray();
                response.StatusCode = 404;
                response.ContentLength64 = body.Length;
                response.OutputStream.Write(body);
            }
        }
        catch (Exception e) when (e is HttpListenerException or IOException or ObjectDisposedException or InvalidOperationException) { }
    }

    public void Dispose() => _listener.Close();
}
