using System.Net;
using StackExchange.Redis;

namespace LoraCraft.Redis;

/// <summary>
/// A queue address: <c>redis://[[USER]:PASSWORD@]HOST[:PORT][/DB][?ssl=true&amp;prefix=NAME]</c>
/// (<c>rediss://</c> is TLS). Everything after the host and port is optional; the prefix names the
/// keys, so several deployments can share one Redis.
/// </summary>
public sealed record RedisQueueAddress(string Host, int Port, int Database, string? User, string? Password, bool Ssl, string Prefix)
{
    public static RedisQueueAddress Parse(string text)
    {
        if (!Uri.TryCreate(text, UriKind.Absolute, out var uri) || uri.Scheme is not ("redis" or "rediss") || string.IsNullOrEmpty(uri.Host))
            throw new UserErrorException($"a queue address looks like redis://[:PASSWORD@]HOST:PORT[/DB][?ssl=true], got '{Redact(text)}'");
        string? user = null, password = null;
        if (uri.UserInfo.Length > 0)
        {
            var info = uri.UserInfo;
            int colon = info.IndexOf(':');
            user = colon < 0 ? null : Uri.UnescapeDataString(info[..colon]);
            password = Uri.UnescapeDataString(colon < 0 ? info : info[(colon + 1)..]);
            if (user == "") user = null;
        }
        int db = 0;
        var path = uri.AbsolutePath.Trim('/');
        if (path.Length > 0 && (!int.TryParse(path, out db) || db < 0))
            throw new UserErrorException($"the database in a queue address is a number (redis://HOST:PORT/0), got '/{path}'");
        bool ssl = uri.Scheme == "rediss";
        string prefix = "loracraft";
        foreach (var pair in uri.Query.TrimStart('?').Split('&', StringSplitOptions.RemoveEmptyEntries))
        {
            var (key, value) = pair.IndexOf('=') is var eq and >= 0 ? (pair[..eq], Uri.UnescapeDataString(pair[(eq + 1)..])) : (pair, "true");
            switch (key)
            {
                case "ssl" or "tls": ssl = value is "true" or "1" or "yes"; break;
                case "prefix" when value.Length > 0 && value.All(c => char.IsAsciiLetterOrDigit(c) || c is '-' or '_' or '.'): prefix = value; break;
                default: throw new UserErrorException($"a queue address takes ssl=true and prefix=NAME, got '{Redact(pair)}'");
            }
        }
        return new RedisQueueAddress(uri.Host, uri.Port > 0 ? uri.Port : 6379, db, user, password, ssl, prefix);
    }

    /// <summary>The address without its password, for messages and logs.</summary>
    public override string ToString() =>
        $"{(Ssl ? "rediss" : "redis")}://{(Password is null ? "" : (User ?? "") + ":***@")}{Host}:{Port}/{Database}{(Prefix == "loracraft" ? "" : "?prefix=" + Prefix)}";

    static string Redact(string text) => System.Text.RegularExpressions.Regex.Replace(text, "//[^@/]*@", "//***@");

    internal ConfigurationOptions Configuration()
    {
        var o = new ConfigurationOptions
        {
            DefaultDatabase = Database, Ssl = Ssl, User = User, Password = Password,
            // the first connection fails clearly; after that the client reconnects by itself (a Redis restart)
            AbortOnConnectFail = true, ConnectTimeout = 5000, ConnectRetry = 2, SyncTimeout = 10000, AsyncTimeout = 10000,
            ClientName = "loracraft",
        };
        if (IPAddress.TryParse(Host, out var ip)) o.EndPoints.Add(ip, Port);
        else o.EndPoints.Add(Host, Port);
        if (Ssl) o.SslHost = Host;
        return o;
    }

    /// <summary>Connects, or says clearly why it cannot.</summary>
    public IConnectionMultiplexer Connect()
    {
        try
        {
            var connection = ConnectionMultiplexer.Connect(Configuration());
            connection.GetDatabase().Ping();
            return connection;
        }
        catch (Exception e) when (e is RedisConnectionException or RedisServerException or RedisTimeoutException)
        {
            throw new UserErrorException(ErrorKind.Busy, $"cannot reach the queue at {this}: {e.Message.Split('\n')[0].Trim()}");
        }
    }
}
