using System.Text.Json.Nodes;
using LoraCraft.Generation;

namespace LoraCraft.Server.Comfy;

/// <summary>A queued prompt as ComfyUI keeps it: number, id, the prompt, extra_data (client_id, workflow) and the outputs to run.</summary>
public sealed record ComfyPromptRecord(double Number, string Id, ComfyGraph Graph, JsonObject ExtraData, IReadOnlyList<string> Outputs, string? ClientId)
{
    public long CreateTime { get; init; } = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();

    /// <summary>ComfyUI's 5-tuple [number, prompt_id, prompt, extra_data, outputs_to_execute].</summary>
    public JsonArray Tuple() => new(Number == Math.Floor(Number) ? JsonValue.Create((long)Number) : JsonValue.Create(Number), Id, Graph.Json.DeepClone(),
                                    ExtraData.DeepClone(), new JsonArray(Outputs.Select(o => (JsonNode?)o).ToArray()));
}

/// <summary>What a finished prompt leaves in history: outputs per node, status and its messages.</summary>
public sealed record ComfyHistoryEntry(ComfyPromptRecord Prompt, JsonObject Outputs, string Status, bool Completed, JsonArray Messages, JsonObject Meta)
{
    public JsonObject ToJson() => new()
    {
        ["prompt"] = Prompt.Tuple(),
        ["outputs"] = Outputs.DeepClone(),
        ["status"] = new JsonObject { ["status_str"] = Status, ["completed"] = Completed, ["messages"] = Messages.DeepClone() },
        ["meta"] = Meta.DeepClone(),
    };
}

/// <summary>
/// Node outputs kept across prompts, keyed by input signature, least recently used first out;
/// evicted outputs are disposed (their tensors freed). Only the worker thread touches it.
/// </summary>
public sealed class ComfyOutputCache(int capacity) : IDisposable
{
    public sealed record Entry(NodeResult Result, long Bytes);

    readonly Dictionary<string, (Entry Entry, long LastUse)> _entries = new(StringComparer.Ordinal);
    readonly object _lock = new();
    long _clock;

    public int Capacity { get; } = Math.Max(1, capacity);
    public int Count
    {
        get
        {
            lock (_lock) return _entries.Count;
        }
    }

    public bool Contains(string signature)
    {
        lock (_lock) return _entries.ContainsKey(signature);
    }

    public NodeResult? Get(string signature)
    {
        lock (_lock)
        {
            if (!_entries.TryGetValue(signature, out var e)) return null;
            _entries[signature] = (e.Entry, ++_clock);
            return e.Entry.Result;
        }
    }

    public void Put(string signature, NodeResult result)
    {
        lock (_lock)
        {
            if (_entries.Remove(signature, out var old)) DisposeResult(old.Entry.Result);
            _entries[signature] = (new Entry(result, 0), ++_clock);
        }
    }

    /// <summary>Drops the least recently used outputs beyond the capacity (after a prompt, never during one).</summary>
    public void Trim(int? keep = null)
    {
        lock (_lock)
        {
            int limit = keep ?? Capacity;
            foreach (var (key, value) in _entries.OrderBy(e => e.Value.LastUse).Take(Math.Max(0, _entries.Count - limit)).ToList())
            {
                _entries.Remove(key);
                DisposeResult(value.Entry.Result);
            }
        }
    }

    public static void DisposeResult(NodeResult result)
    {
        foreach (var o in result.Outputs)
            if (o is IDisposable d) d.Dispose();
    }

    public void Dispose() => Trim(0);
}

/// <summary>
/// Runs a validated prompt on the worker thread as ComfyUI does: only the output nodes and what
/// they need; a node whose signature is cached is not run again (a re-queued identical prompt
/// runs nothing, yet its output nodes still report `executed` and fill history); messages in
/// ComfyUI's order to the submitting client (execution_start, execution_cached, executing,
/// progress, executed, execution_success / execution_error / execution_interrupted, then
/// executing with node null).
/// </summary>
public sealed class ComfyExecutor(ComfyEnvironment env, ComfyOutputCache cache, ComfySocketHub hub)
{
    public static long Now() => DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();

    public ComfyHistoryEntry Execute(ComfyPromptRecord prompt, JobContext job)
    {
        var graph = prompt.Graph;
        var messages = new JsonArray();
        var outputsUi = new JsonObject();
        var meta = new JsonObject();
        void Send(string type, JsonObject data, bool record = false, bool broadcast = false)
        {
            if (record) messages.Add(new JsonArray(type, data.DeepClone()));
            if (broadcast) hub.Broadcast(type, data);
            else if (prompt.ClientId is not null) hub.Send(prompt.ClientId, type, data);
        }

        Send("execution_start", new JsonObject { ["prompt_id"] = prompt.Id, ["timestamp"] = Now() }, record: true);
        var signatures = graph.Signatures(prompt.Outputs, n => ChangeKey(n));
        var needed = prompt.Outputs.SelectMany(graph.Order).Distinct().ToList();
        var cached = needed.Where(id => !env.Nodes[graph.Nodes[id].ClassType!].AlwaysRun && cache.Contains(signatures[id])).ToList();
        Send("execution_cached", new JsonObject { ["nodes"] = new JsonArray(cached.Select(c => (JsonNode?)c).ToArray()), ["prompt_id"] = prompt.Id, ["timestamp"] = Now() }, record: true);

        var results = new Dictionary<string, NodeResult>(StringComparer.Ordinal);
        var owned = new List<NodeResult>(); // outputs of nodes never cached, freed when the prompt ends
        var executed = new List<string>();
        string? current = null;
        using var run = new PromptRun(env, job, prompt, hub);
        try
        {
            // outputs needing the fewest uncached nodes first, as ComfyUI orders them
            foreach (var output in prompt.Outputs.OrderBy(o => graph.Order(o).Count(id => !cached.Contains(id))).ThenBy(o => o, StringComparer.Ordinal))
            {
                foreach (var id in graph.Order(output))
                {
                    if (results.ContainsKey(id)) continue;
                    var node = graph.Nodes[id];
                    var def = env.Nodes[node.ClassType!];
                    if (!def.AlwaysRun && cache.Get(signatures[id]) is { } hit)
                    {
                        results[id] = hit;
                        if (def.OutputNode && hit.Ui is { Count: > 0 } ui) Report(id, ui);
                        continue;
                    }
                    current = id;
                    run.CurrentNode = id;
                    job.Cancel.ThrowIfCancellationRequested();
                    Send("executing", new JsonObject { ["node"] = id, ["display_node"] = id, ["prompt_id"] = prompt.Id });
                    var result = def.Run(new NodeCall(env, node, def, Inputs(node, def, results), run));
                    results[id] = result;
                    if (def.AlwaysRun) owned.Add(result);
                    else cache.Put(signatures[id], result);
                    executed.Add(id);
                    if (result.Ui is { Count: > 0 } nodeUi) Report(id, nodeUi);
                }
            }
            current = null;
            Send("execution_success", new JsonObject { ["prompt_id"] = prompt.Id, ["timestamp"] = Now() }, record: true);
            return new ComfyHistoryEntry(prompt, outputsUi, "success", true, messages, meta);
        }
        catch (OperationCanceledException)
        {
            var node = current ?? prompt.Outputs.FirstOrDefault() ?? "";
            Send("execution_interrupted", new JsonObject
            {
                ["prompt_id"] = prompt.Id, ["node_id"] = node, ["node_type"] = graph.Nodes.TryGetValue(node, out var n) ? n.ClassType : null,
                ["executed"] = Ids(executed), ["timestamp"] = Now(),
            }, record: true, broadcast: true);
            throw new ComfyPromptFailed(new ComfyHistoryEntry(prompt, outputsUi, "error", false, messages, meta), interrupted: true);
        }
        catch (Exception e)
        {
            var node = current ?? "";
            var (kind, text) = JobQueue.UserFacing(e) ?? (ErrorKind.Invalid, e.Message);
            Send("execution_error", new JsonObject
            {
                ["prompt_id"] = prompt.Id, ["node_id"] = node, ["node_type"] = graph.Nodes.TryGetValue(node, out var n) ? n.ClassType : null,
                ["executed"] = Ids(executed), ["exception_message"] = text,
                ["exception_type"] = JobQueue.UserFacing(e) is null ? e.GetType().FullName : "UserError." + kind,
                ["traceback"] = JobQueue.UserFacing(e) is null ? new JsonArray((e.StackTrace ?? "").Split('\n').Select(l => (JsonNode?)l.TrimEnd()).ToArray()) : new JsonArray(), ["current_inputs"] = new JsonObject(), ["current_outputs"] = new JsonArray(), ["timestamp"] = Now(),
            }, record: true);
            throw new ComfyPromptFailed(new ComfyHistoryEntry(prompt, outputsUi, "error", false, messages, meta), interrupted: false, e);
        }
        finally
        {
            run.CurrentNode = null;
            foreach (var r in owned) ComfyOutputCache.DisposeResult(r);
            cache.Trim();
            Runtime.Compute.ReleaseFreedMemory();
        }

        void Report(string id, JsonObject ui)
        {
            outputsUi[id] = ui.DeepClone();
            meta[id] = new JsonObject { ["node_id"] = id, ["display_node"] = id, ["parent_node"] = null, ["real_node_id"] = id };
            Send("executed", new JsonObject { ["node"] = id, ["display_node"] = id, ["output"] = ui.DeepClone(), ["prompt_id"] = prompt.Id });
        }
    }

    static JsonArray Ids(IEnumerable<string> ids) => new(ids.Select(i => (JsonNode?)i).ToArray());

    /// <summary>The node's IS_CHANGED part of its signature (literal inputs only).</summary>
    string? ChangeKey(GraphNode node)
    {
        var def = env.Nodes[node.ClassType!];
        if (def.ChangeKey is null) return null;
        var literals = new Dictionary<string, object?>(StringComparer.Ordinal);
        foreach (var (name, input) in node.Inputs)
            if (!input.IsLink && def.Input(name) is { } spec) literals[name] = ComfyValidation.Convert(spec, input.Literal, out _);
        try { return def.ChangeKey(new NodeCall(env, node, def, literals, null)); }
        catch (Exception e) when (JobQueue.UserFacing(e) is not null || e is IOException) { return Guid.NewGuid().ToString(); }
    }

    Dictionary<string, object?> Inputs(GraphNode node, NodeDefinition def, Dictionary<string, NodeResult> results)
    {
        var values = new Dictionary<string, object?>(StringComparer.Ordinal);
        foreach (var (name, input) in node.Inputs)
        {
            var spec = def.Input(name);
            if (spec is null) continue;
            if (input.IsLink) values[name] = results[input.Node!].Outputs[input.Output];
            else values[name] = ComfyValidation.Convert(spec, input.Literal, out _);
        }
        return values;
    }
}

/// <summary>A prompt that failed or was interrupted, with what history keeps of it.</summary>
public sealed class ComfyPromptFailed(ComfyHistoryEntry entry, bool interrupted, Exception? inner = null)
    : Exception(interrupted ? "interrupted" : inner?.Message ?? "failed", inner)
{
    public ComfyHistoryEntry Entry { get; } = entry;
    public bool Interrupted { get; } = interrupted;
}
