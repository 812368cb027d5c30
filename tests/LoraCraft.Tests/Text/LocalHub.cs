using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;

namespace LoraCraft.Tests.Text;

/// <summary>
/// A stand-in for the Hugging Face hub on 127.0.0.1 (a free port): answers GETs from a route
/// table and 404 for anything else, so download tests never reach the internet.
/// </summary>
sealed class LocalHub : IDisposable
{
    public const string RepoPath = "/openai/clip-vit-large-patch14/resolve/main/";

    readonly HttpListener _listener = new();
    readonly ConcurrentDictionary<string, Action<HttpListenerResponse>> _routes = new();

    public string Url { get; }

    public LocalHub()
    {
        // A free port can be taken by someone else before HttpListener binds it: try a few.
        for (int attempt = 0; ; attempt++)
        {
            Url = $"http://127.0.0.1:{FreePort()}";
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

    /// <summary>A port nothing listens on (for "connection refused").</summary>
    public static int FreePort()
    {
        var probe = new TcpListener(IPAddress.Loopback, 0);
        probe.Start();
        int port = ((IPEndPoint)probe.LocalEndpoint).Port;
        probe.Stop();
        return port;
    }

    /// <summary>Serves <paramref name="body"/> at <paramref name="path"/>, with an X-Repo-Commit header when given.</summary>
    public void File(string path, byte[] body, string? commit = null) => _routes[path] = r =>
    {
        if (commit is not null) r.AddHeader("X-Repo-Commit", commit);
        r.ContentLength64 = body.Length;
        r.OutputStream.Write(body);
    };

    /// <summary>Answers <paramref name="path"/> with a 302 to <paramref name="to"/>, as the hub does for files on its CDN.</summary>
    public void Redirect(string path, string to, string? commit = null) => _routes[path] = r =>
    {
        if (commit is not null) r.AddHeader("X-Repo-Commit", commit);
        r.StatusCode = 302;
        r.RedirectLocation = to;
    };

    async Task Serve()
    {
        while (_listener.IsListening)
        {
            HttpListenerContext context;
            try { context = await _listener.GetContextAsync(); }
            catch (Exception e) when (e is HttpListenerException or ObjectDisposedException) { return; }
            // A client that hangs up mid-answer must not stop the server for the next request.
            try
            {
                using var response = context.Response;
                if (_routes.TryGetValue(context.Request.Url!.AbsolutePath, out var answer)) answer(response);
                else response.StatusCode = 404;
            }
            catch (Exception e) when (e is HttpListenerException or IOException) { }
        }
    }

    public void Dispose() => _listener.Close();
}
