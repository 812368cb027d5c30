using System.Runtime.ExceptionServices;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using LoraCraft.Generation;

namespace LoraCraft.Server.Comfy;

/// <summary>
/// The ComfyUI API's state on top of the shared engine: prompts are validated here (HTTP thread,
/// no tensors) and queued as jobs on the engine's queue, where <see cref="ComfyExecutor"/> runs
/// them on the worker thread; sockets, the output cache, history and the user folder live here.
/// </summary>
public sealed partial class ComfyService : IDisposable
{
    public const string JobKind = "comfy";
    const int HistoryLimit = 1000;

    readonly object _lock = new();
    readonly LinkedList<ComfyHistoryEntry> _history = new();
    int _number;

    public ComfyService(ServerEngine engine, ServerOptions options)
    {
        Engine = engine;
        Env = new ComfyEnvironment(engine, options);
        Validation = new ComfyValidation(Env);
        Cache = new ComfyOutputCache(64);
        Hub = new ComfySocketHub(QueueRemaining, options.MaxBodyBytes);
        Executor = new ComfyExecutor(Env, Cache, Hub);
        UserData = new ComfyUserData(Env.UserDir);
        engine.Queue.Events += OnQueueEvent;
    }

    public ServerEngine Engine { get; }
    public ComfyEnvironment Env { get; }
    public ComfyValidation Validation { get; }
    public ComfyOutputCache Cache { get; }
    public ComfySocketHub Hub { get; }
    public ComfyExecutor Executor { get; }
    public ComfyUserData UserData { get; }

    void OnQueueEvent(Job job, JobEvent e)
    {
        if (e is JobQueued or JobStarted or JobCompleted or JobFailed or JobCancelled) Hub.Broadcast("status", Hub.Status());
    }

    public int QueueRemaining() => Engine.Queue.Pending.Count + Engine.Queue.Running.Count;

    public IEnumerable<Job> Pending => Engine.Queue.Pending.Where(j => j.Kind == JobKind);
    public IEnumerable<Job> Running => Engine.Queue.Running.Where(j => j.Kind == JobKind);

    [GeneratedRegex("^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")]
    private static partial Regex CanonicalUuid();

    static JsonObject Failure(JsonObject error, JsonNode? nodeErrors = null) => new() { ["error"] = error, ["node_errors"] = nodeErrors ?? new JsonObject() };

    /// <summary>POST /prompt: 200 with prompt_id, number and node_errors, or 400 with ComfyUI's error body.</summary>
    public (int Status, JsonObject Body) Submit(JsonNode? body)
    {
        if (ComfyGraph.IsUiFormat(body) || ComfyGraph.IsUiFormat(body?["prompt"]))
            return (400, Failure(ComfyValidation.Error("invalid_prompt",
                "This is a UI-format workflow (it has 'nodes' and 'links'), not an API-format prompt",
                "Post the API format: in ComfyUI use Workflow > Export (API), which gives {\"node id\": {\"class_type\": …, \"inputs\": …}}; send it as {\"prompt\": …}.")));
        if (body is not JsonObject request || request["prompt"] is not JsonObject promptJson)
            return (400, Failure(ComfyValidation.Error("no_prompt", "No prompt provided", "No prompt provided")));

        string id;
        if (request["prompt_id"] is JsonValue given && given.TryGetValue<string>(out var wanted))
        {
            if (!CanonicalUuid().IsMatch(wanted))
                return (400, Failure(ComfyValidation.Error("invalid_prompt_id", "Invalid prompt_id format", $"prompt_id must be a valid UUID, got '{wanted}'")));
            id = wanted;
        }
        else id = Guid.NewGuid().ToString();

        var graph = ComfyGraph.Parse((JsonObject)promptJson.DeepClone());
        var targets = request["partial_execution_targets"] is JsonArray t ? t.Select(x => x?.ToString() ?? "").ToList() : null;
        var result = Validation.Validate(graph, targets);
        if (!result.Ok) return (400, Failure(result.Error!, result.NodeErrors));

        bool front = request["front"] is JsonValue f && f.TryGetValue<bool>(out var fb) && fb;
        double number;
        lock (_lock)
        {
            number = request["number"] is JsonValue n && n.TryGetValue<double>(out var nv) ? nv : front ? -_number : _number;
            if (request["number"] is null) _number++;
        }
        var extra = request["extra_data"] is JsonObject e ? (JsonObject)e.DeepClone() : new JsonObject();
        string? client = request["client_id"] is JsonValue c && c.TryGetValue<string>(out var cs) && cs.Length > 0 ? cs : null;
        if (client is not null) extra["client_id"] = client;
        extra["create_time"] = ComfyExecutor.Now();
        var record = new ComfyPromptRecord(number, id, graph, extra, result.Outputs, client);
        Engine.Queue.Submit(JobKind, record, ctx => Run(record, ctx), client, id, front);
        return (200, new JsonObject
        {
            ["prompt_id"] = id,
            ["number"] = number == Math.Floor(number) ? JsonValue.Create((long)number) : JsonValue.Create(number),
            ["node_errors"] = result.NodeErrors,
        });
    }

    object? Run(ComfyPromptRecord record, JobContext ctx)
    {
        try
        {
            var entry = Executor.Execute(record, ctx);
            AddHistory(entry);
            return entry;
        }
        catch (ComfyPromptFailed failed)
        {
            AddHistory(failed.Entry);
            if (failed.Interrupted) throw new OperationCanceledException();
            ExceptionDispatchInfo.Throw(failed.InnerException ?? failed);
            throw;
        }
        finally
        {
            if (record.ClientId is { } client) Hub.Send(client, "executing", new JsonObject { ["node"] = null, ["display_node"] = null, ["prompt_id"] = record.Id });
        }
    }

    void AddHistory(ComfyHistoryEntry entry)
    {
        lock (_lock)
        {
            _history.AddLast(entry);
            while (_history.Count > HistoryLimit) _history.RemoveFirst();
        }
    }

    public IReadOnlyList<ComfyHistoryEntry> History()
    {
        lock (_lock) return _history.ToList();
    }

    public JsonObject HistoryJson(int? maxItems, int? offset)
    {
        var all = History();
        int start = offset ?? (maxItems is { } m ? Math.Max(0, all.Count - m) : 0);
        var picked = all.Skip(Math.Max(0, start)).Take(maxItems ?? int.MaxValue);
        return new JsonObject(picked.Select(h => KeyValuePair.Create(h.Prompt.Id, (JsonNode?)h.ToJson())));
    }

    public JsonObject HistoryOf(string id) =>
        History().LastOrDefault(h => h.Prompt.Id == id) is { } h ? new JsonObject { [id] = h.ToJson() } : new JsonObject();

    public void ClearHistory(IEnumerable<string>? ids)
    {
        lock (_lock)
        {
            if (ids is null)
            {
                _history.Clear();
                return;
            }
            var drop = ids.ToHashSet(StringComparer.Ordinal);
            for (var node = _history.First; node is not null;)
            {
                var next = node.Next;
                if (drop.Contains(node.Value.Prompt.Id)) _history.Remove(node);
                node = next;
            }
        }
    }

    /// <summary>GET /queue: running and pending prompts as ComfyUI's 5-tuples.</summary>
    public JsonObject QueueJson() => new()
    {
        ["queue_running"] = new JsonArray(Running.Select(j => (JsonNode?)((ComfyPromptRecord)j.Request!).Tuple()).ToArray()),
        ["queue_pending"] = new JsonArray(Pending.Select(j => (JsonNode?)((ComfyPromptRecord)j.Request!).Tuple()).ToArray()),
    };

    /// <summary>Removes waiting prompts (all, or those named).</summary>
    public void DeleteQueued(IEnumerable<string>? ids)
    {
        var names = ids?.ToHashSet(StringComparer.Ordinal);
        foreach (var job in Pending.ToList())
            if (names is null || names.Contains(job.Id)) Engine.Queue.Cancel(job.Id);
    }

    /// <summary>Stops the running prompt (only the one named, when a prompt id is given).</summary>
    public bool Interrupt(string? promptId = null)
    {
        bool any = false;
        foreach (var job in Running.ToList())
            if (promptId is null || job.Id == promptId) any |= Engine.Queue.Cancel(job.Id);
        return any;
    }

    /// <summary>Cancels a waiting or running prompt (the jobs API).</summary>
    public bool Cancel(string id)
    {
        var job = Engine.Queue.Get(id);
        return job is { Kind: JobKind } && Engine.Queue.Cancel(id);
    }

    public void Dispose()
    {
        Engine.Queue.Events -= OnQueueEvent;
        Cache.Dispose();
    }
}
