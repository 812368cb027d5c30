using System.Buffers.Binary;
using System.Text;
using System.Text.Json.Nodes;
using Xunit;

namespace LoraCraft.Tests.Server;

/// <summary>The /ws protocol against a real Kestrel: ComfyUI's message order, progress, previews, cache, interrupt, per-client events.</summary>
[Collection(ComfyServerCollection.Name)]
public class ComfySocketTests(ComfyServer server)
{
    async Task<string> Queue(JsonObject prompt, string? clientId)
    {
        var (status, body) = await server.PostJson("/prompt", ComfyPrompts.Body(prompt, clientId));
        Assert.True(status == 200, body?.ToJsonString());
        Assert.Empty(body!["node_errors"]!.AsObject());
        return (string)body["prompt_id"]!;
    }

    [SkippableFact]
    public async Task A_prompt_sends_comfyuis_messages_in_order_with_progress_per_step_and_previews()
    {
        server.Require();
        await using var ws = await ComfySocket.Connect(server);
        Assert.Equal(32, ws.ClientId.Length); // a uuid hex when the client gives no id
        string id = await Queue(ComfyPrompts.Txt2Img(seed: 101, steps: 3), ws.ClientId);
        await ws.WaitDone(id);
        var start = ws.Of(id)[0].Data!;
        var end = ws.Of(id).Single(e => e.Type == "execution_success").Data!;
        Console.WriteLine($"64x64, 3 steps: {(long)end["timestamp"]! - (long)start["timestamp"]!} ms from execution_start to execution_success");

        var events = ws.Of(id);
        var types = events.Select(e => e.Type).ToList();
        Assert.Equal("execution_start", types[0]);
        Assert.Equal("execution_cached", types[1]);
        Assert.Equal(["execution_success", "executing"], types.TakeLast(2).ToList());
        Assert.Null(events[^1].Data!["node"]);
        // every node of the default graph ran once, announced by `executing`, or was cached (the loader, by earlier tests)
        var executing = events.Where(e => e.Type == "executing" && e.Data!["node"] is not null).Select(e => (string)e.Data!["node"]!).ToList();
        var cached = events[1].Data!["nodes"]!.AsArray().Select(n => (string)n!).ToList();
        Assert.Equal(["3", "4", "5", "6", "7", "8", "9"], executing.Concat(cached).Order().ToList());
        Assert.Equal(["3", "8", "9"], executing.Where(n => n is "3" or "8" or "9").ToList());
        Assert.Equal("9", executing[^1]);
        // progress 1..3 of 3 while the sampler (node 3) runs, each followed by a preview frame
        var progress = events.Where(e => e.Type == "progress").Select(e => e.Data!).ToList();
        Assert.Equal([1, 2, 3], progress.Select(p => (int)p["value"]!).ToList());
        Assert.All(progress, p => Assert.Equal(3, (int)p["max"]!));
        Assert.All(progress, p => Assert.Equal("3", (string)p["node"]!));
        var previews = ws.Binary;
        Assert.True(previews.Count >= 3);
        Assert.Equal(1u, BinaryPrimitives.ReadUInt32BigEndian(previews[0]));   // PREVIEW_IMAGE
        Assert.Equal(2u, BinaryPrimitives.ReadUInt32BigEndian(previews[0].AsSpan(4))); // PNG
        Assert.Equal(0x89, previews[0][8]);
        // executed for the Save Image node with ComfyUI's file entry, then history and /view serve it
        var executed = events.Single(e => e.Type == "executed").Data!;
        Assert.Equal("9", (string)executed["node"]!);
        var image = executed["output"]!["images"]![0]!;
        Assert.Matches(@"^ComfyUI_\d{5}_\.png$", (string)image["filename"]!);
        Assert.Equal("output", (string)image["type"]!);
        Assert.All(events.Where(e => e.Data?["timestamp"] is not null), e => Assert.True((long)e.Data!["timestamp"]! > 1_600_000_000_000));

        var history = (await server.GetJson($"/history/{id}"))![id]!;
        Assert.Equal("success", (string)history["status"]!["status_str"]!);
        Assert.True((bool)history["status"]!["completed"]!);
        Assert.Equal(image.ToJsonString(), history["outputs"]!["9"]!["images"]![0]!.ToJsonString());
        Assert.Equal(id, (string)history["prompt"]![1]!);
        var png = await server.Http.GetByteArrayAsync($"{server.BaseUrl}/view?filename={image["filename"]}&subfolder=&type=output");
        var text = LoraCraft.Pipelines.ImageFiles.ReadTextChunks(png, "view");
        Assert.Equal("KSampler", (string)JsonNode.Parse(text["prompt"])!["3"]!["class_type"]!);
    }

    [SkippableFact]
    public async Task Previews_carry_metadata_when_the_client_asked_for_it()
    {
        server.Require();
        await using var ws = await ComfySocket.Connect(server, "meta-client", previewMetadata: true);
        Assert.Equal("meta-client", ws.ClientId);
        var flags = await ws.WaitFor(m => (string?)m["type"] == "feature_flags");
        Assert.True((bool)flags["data"]!["supports_preview_metadata"]!);
        string id = await Queue(ComfyPrompts.Txt2Img(seed: 202, steps: 2), ws.ClientId);
        await ws.WaitDone(id);
        var frame = ws.Binary[0];
        Assert.Equal(4u, BinaryPrimitives.ReadUInt32BigEndian(frame));
        int length = (int)BinaryPrimitives.ReadUInt32BigEndian(frame.AsSpan(4));
        var meta = JsonNode.Parse(Encoding.UTF8.GetString(frame, 8, length))!;
        Assert.Equal(id, (string)meta["prompt_id"]!);
        Assert.Equal("3", (string)meta["node_id"]!);
        Assert.Equal("image/png", (string)meta["image_type"]!);
        Assert.Equal(0x89, frame[8 + length]);
    }

    [SkippableFact]
    public async Task Requeueing_an_identical_prompt_runs_nothing_but_still_reports_its_output()
    {
        server.Require();
        await using var ws = await ComfySocket.Connect(server);
        var prompt = ComfyPrompts.Txt2Img(seed: 303, steps: 2, prefix: "requeue");
        string first = await Queue(prompt, ws.ClientId);
        await ws.WaitDone(first);
        string second = await Queue(prompt, ws.ClientId);
        await ws.WaitDone(second);

        var events = ws.Of(second);
        var cached = events.Single(e => e.Type == "execution_cached").Data!["nodes"]!.AsArray().Select(n => (string)n!).Order().ToList();
        Assert.Equal(["3", "4", "5", "6", "7", "8", "9"], cached);
        Assert.DoesNotContain(events, e => e.Type == "executing" && e.Data!["node"] is not null);
        Assert.DoesNotContain(events, e => e.Type == "progress");
        var executed = events.Single(e => e.Type == "executed").Data!;
        var firstImage = ws.Of(first).Single(e => e.Type == "executed").Data!["output"]!.ToJsonString();
        Assert.Equal(firstImage, executed["output"]!.ToJsonString());
        var history = (await server.GetJson($"/history/{second}"))![second]!;
        Assert.Equal(firstImage, history["outputs"]!["9"]!.ToJsonString());
        Assert.Single(Directory.GetFiles(server.OutputsDir, "requeue_*.png"));

        // a changed seed reruns only the sampler and what follows it
        var changed = ComfyPrompts.Txt2Img(seed: 304, steps: 2, prefix: "requeue");
        string third = await Queue(changed, ws.ClientId);
        await ws.WaitDone(third);
        var ran = ws.Of(third).Where(e => e.Type == "executing" && e.Data!["node"] is not null).Select(e => (string)e.Data!["node"]!).ToList();
        Assert.Equal(["3", "8", "9"], ran);
    }

    [SkippableFact]
    public async Task Interrupt_stops_the_running_prompt_and_says_so()
    {
        server.Require();
        await using var ws = await ComfySocket.Connect(server);
        string id = await Queue(ComfyPrompts.Txt2Img(seed: 404, steps: 3000), ws.ClientId);
        await ws.WaitFor(m => (string?)m["type"] == "progress" && (string?)m["data"]!["prompt_id"] == id);
        var (status, _) = await server.PostJson("/api/interrupt", new JsonObject());
        Assert.Equal(200, status);
        await ws.WaitDone(id, 60);
        var events = ws.Of(id);
        var interrupted = events.Single(e => e.Type == "execution_interrupted").Data!;
        Assert.Equal("3", (string)interrupted["node_id"]!);
        Assert.Equal("KSampler", (string)interrupted["node_type"]!);
        Assert.DoesNotContain(events, e => e.Type == "execution_success");
        Assert.True(events.Count(e => e.Type == "progress") < 3000);
        var history = (await server.GetJson($"/history/{id}"))![id]!;
        Assert.Equal("error", (string)history["status"]!["status_str"]!);
        Assert.Contains(history["status"]!["messages"]!.AsArray(), m => (string)m![0]! == "execution_interrupted");
    }

    [SkippableFact]
    public async Task Two_clients_each_receive_only_their_own_prompts_events()
    {
        server.Require();
        await using var a = await ComfySocket.Connect(server);
        await using var b = await ComfySocket.Connect(server);
        string pa = await Queue(ComfyPrompts.Txt2Img(seed: 505, steps: 2), a.ClientId);
        string pb = await Queue(ComfyPrompts.Txt2Img(seed: 506, steps: 2), b.ClientId);
        await a.WaitDone(pa);
        await b.WaitDone(pb);
        bool Mentions(JsonObject m, string prompt) => (string?)m["data"]?["prompt_id"] == prompt;
        Assert.DoesNotContain(a.Messages, m => Mentions(m, pb));
        Assert.DoesNotContain(b.Messages, m => Mentions(m, pa));
        Assert.Contains(a.Messages, m => (string?)m["type"] == "executed" && Mentions(m, pa));
        Assert.Contains(b.Messages, m => (string?)m["type"] == "executed" && Mentions(m, pb));
        // queue changes are broadcast to every socket
        Assert.Contains(a.Messages.Skip(1), m => (string?)m["type"] == "status");
    }
}
