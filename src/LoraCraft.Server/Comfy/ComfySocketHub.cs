using System.Buffers.Binary;
using System.Collections.Concurrent;
using System.Net.WebSockets;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Threading.Channels;
using Microsoft.AspNetCore.Http;

namespace LoraCraft.Server.Comfy;

/// <summary>
/// ComfyUI's /ws: one socket per client id (`?clientId=`, else a new uuid hex; a new socket
/// with the same id replaces the old one). On connect the server sends `status` with `sid`; the
/// client's `feature_flags` is answered with the server's. Text frames are `{"type","data"}`;
/// previews are binary frames: a big-endian u32 event type, then type 1 = u32 image format
/// (1 JPEG, 2 PNG) and the image, or type 4 = u32 metadata length, metadata JSON and the image
/// (only for clients whose feature flags asked for preview metadata). Every socket has its own
/// queue and sender, so the worker thread never waits on a slow client.
/// </summary>
public sealed class ComfySocketHub(Func<int> queueRemaining, long maxUploadBytes)
{
    public const int PreviewImage = 1, PreviewImageWithMetadata = 4;

    sealed class Client(string id, WebSocket socket)
    {
        public string Id { get; } = id;
        public WebSocket Socket { get; } = socket;
        public Channel<(byte[] Data, WebSocketMessageType Type)> Outbox { get; } =
            Channel.CreateUnbounded<(byte[], WebSocketMessageType)>(new UnboundedChannelOptions { SingleReader = true });
        public volatile bool PreviewMetadata;
        public CancellationTokenSource Closed { get; } = new();
    }

    readonly ConcurrentDictionary<string, Client> _clients = new(StringComparer.Ordinal);

    public IReadOnlyCollection<string> ClientIds => _clients.Keys.ToList();

    public static JsonObject ServerFeatures(long maxUpload) => new()
    {
        ["supports_preview_metadata"] = true,
        ["max_upload_size"] = maxUpload,
        ["extension"] = new JsonObject { ["manager"] = new JsonObject { ["supports_v4"] = false } },
        ["node_replacements"] = false,
        ["assets"] = false,
    };

    public JsonObject Status(string? sid = null)
    {
        var data = new JsonObject { ["status"] = new JsonObject { ["exec_info"] = new JsonObject { ["queue_remaining"] = queueRemaining() } } };
        if (sid is not null) data["sid"] = sid;
        return data;
    }

    /// <summary>Serves one WebSocket until it closes.</summary>
    public async Task Accept(HttpContext http)
    {
        if (!http.WebSockets.IsWebSocketRequest)
        {
            http.Response.StatusCode = 400;
            await http.Response.WriteAsync("expected a WebSocket request");
            return;
        }
        string? requested = http.Request.Query["clientId"];
        string sid = string.IsNullOrEmpty(requested) ? Guid.NewGuid().ToString("N") : requested;
        using var socket = await http.WebSockets.AcceptWebSocketAsync();
        var client = new Client(sid, socket);
        if (_clients.TryRemove(sid, out var old)) Close(old);
        _clients[sid] = client;
        var sender = Task.Run(() => SendLoop(client));
        try
        {
            Enqueue(client, "status", Status(sid));
            await ReceiveLoop(client, http.RequestAborted);
        }
        finally
        {
            _clients.TryRemove(new KeyValuePair<string, Client>(sid, client));
            Close(client);
            try { await sender; } catch (Exception) { /* the socket went away */ }
        }
    }

    async Task ReceiveLoop(Client client, CancellationToken aborted)
    {
        var buffer = new byte[16 * 1024];
        var message = new MemoryStream();
        using var both = CancellationTokenSource.CreateLinkedTokenSource(aborted, client.Closed.Token);
        while (client.Socket.State == WebSocketState.Open)
        {
            WebSocketReceiveResult r;
            try { r = await client.Socket.ReceiveAsync(buffer, both.Token); }
            catch (Exception e) when (e is WebSocketException or OperationCanceledException) { return; }
            if (r.MessageType == WebSocketMessageType.Close)
            {
                try { await client.Socket.CloseOutputAsync(WebSocketCloseStatus.NormalClosure, null, CancellationToken.None); }
                catch (Exception e) when (e is WebSocketException or OperationCanceledException) { }
                return;
            }
            message.Write(buffer, 0, r.Count);
            if (message.Length > 1 << 20) return; // no client message is this large
            if (!r.EndOfMessage) continue;
            if (r.MessageType == WebSocketMessageType.Text) Handle(client, message.ToArray());
            message.SetLength(0);
        }
    }

    void Handle(Client client, byte[] text)
    {
        JsonNode? json;
        try { json = JsonNode.Parse(text); }
        catch (JsonException) { return; }
        if (json?["type"]?.GetValue<string>() != "feature_flags") return;
        client.PreviewMetadata = json["data"]?["supports_preview_metadata"] is JsonValue v && v.TryGetValue<bool>(out var b) && b;
        Enqueue(client, "feature_flags", ServerFeatures(maxUploadBytes));
    }

    async Task SendLoop(Client client)
    {
        var reader = client.Outbox.Reader;
        try
        {
            while (await reader.WaitToReadAsync(client.Closed.Token))
                while (reader.TryRead(out var m))
                    await client.Socket.SendAsync(m.Data, m.Type, true, client.Closed.Token);
        }
        catch (Exception e) when (e is WebSocketException or OperationCanceledException or ObjectDisposedException) { }
    }

    static void Close(Client client)
    {
        client.Outbox.Writer.TryComplete();
        client.Closed.Cancel();
    }

    static void Enqueue(Client client, string type, JsonObject data)
    {
        var bytes = Encoding.UTF8.GetBytes(new JsonObject { ["type"] = type, ["data"] = data.DeepClone() }.ToJsonString());
        client.Outbox.Writer.TryWrite((bytes, WebSocketMessageType.Text));
    }

    /// <summary>A message to one client (nothing when it is not connected).</summary>
    public void Send(string clientId, string type, JsonObject data)
    {
        if (_clients.TryGetValue(clientId, out var c)) Enqueue(c, type, data);
    }

    public void Broadcast(string type, JsonObject data)
    {
        foreach (var c in _clients.Values) Enqueue(c, type, data);
    }

    /// <summary>A preview (PNG) to one client: type 4 with metadata when it asked for it, else type 1.</summary>
    public void SendPreview(string? clientId, byte[] png, string node, string promptId)
    {
        if (clientId is null || !_clients.TryGetValue(clientId, out var c)) return;
        c.Outbox.Writer.TryWrite((EncodePreview(png, c.PreviewMetadata ? new JsonObject
        {
            ["node_id"] = node, ["prompt_id"] = promptId, ["display_node_id"] = node, ["parent_node_id"] = null,
            ["real_node_id"] = node, ["image_type"] = "image/png",
        } : null), WebSocketMessageType.Binary));
    }

    /// <summary>An image sent as ComfyUI's SaveImageWebsocket does: a type 1 frame with format 2 (PNG).</summary>
    public void SendImage(string? clientId, byte[] png)
    {
        if (clientId is null || !_clients.TryGetValue(clientId, out var c)) return;
        c.Outbox.Writer.TryWrite((EncodePreview(png, null), WebSocketMessageType.Binary));
    }

    public static byte[] EncodePreview(byte[] png, JsonObject? metadata)
    {
        if (metadata is null)
        {
            var frame = new byte[8 + png.Length];
            BinaryPrimitives.WriteUInt32BigEndian(frame, PreviewImage);
            BinaryPrimitives.WriteUInt32BigEndian(frame.AsSpan(4), 2);
            png.CopyTo(frame, 8);
            return frame;
        }
        var meta = Encoding.UTF8.GetBytes(metadata.ToJsonString());
        var withMeta = new byte[8 + meta.Length + png.Length];
        BinaryPrimitives.WriteUInt32BigEndian(withMeta, PreviewImageWithMetadata);
        BinaryPrimitives.WriteUInt32BigEndian(withMeta.AsSpan(4), (uint)meta.Length);
        meta.CopyTo(withMeta, 8);
        png.CopyTo(withMeta, 8 + meta.Length);
        return withMeta;
    }
}
