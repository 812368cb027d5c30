using System.Globalization;
using System.Text.Json.Nodes;
using LoraCraft.Generation;

namespace LoraCraft.Server.Comfy;

/// <summary>
/// One node being run (or checked): its inputs, converted to their declared types (links give
/// the linked output's value), and — while a prompt runs — the prompt's run for models, progress
/// and previews.
/// </summary>
public sealed class NodeCall(ComfyEnvironment env, GraphNode node, NodeDefinition definition, IReadOnlyDictionary<string, object?> inputs, PromptRun? run)
{
    public ComfyEnvironment Env { get; } = env;
    public GraphNode Node { get; } = node;
    public NodeDefinition Definition { get; } = definition;
    public IReadOnlyDictionary<string, object?> Inputs { get; } = inputs;
    public PromptRun Run => run ?? throw new InvalidOperationException("this node is only being validated");

    public bool Has(string name) => Inputs.TryGetValue(name, out var v) && v is not null;

    object? Raw(string name)
    {
        if (Inputs.TryGetValue(name, out var v) && v is not null) return v;
        var input = Definition.Input(name);
        // a missing optional primitive takes its default
        if (input?.Options?["default"] is { } def) return ComfyValidation.Convert(input, def, out _);
        return null;
    }

    public long Int(string name) => Raw(name) switch
    {
        long l => l,
        ulong u => unchecked((long)u),
        double d => (long)d,
        var other => throw Missing(name, other),
    };

    public ulong ULong(string name) => Raw(name) switch
    {
        long l when l >= 0 => (ulong)l,
        ulong u => u,
        var other => throw Missing(name, other),
    };

    public double Double(string name) => Raw(name) switch
    {
        double d => d,
        long l => l,
        ulong u => u,
        var other => throw Missing(name, other),
    };

    public bool Bool(string name) => Raw(name) is bool b ? b : throw Missing(name, null);

    public string Text(string name) => Raw(name) switch
    {
        string s => s,
        null => throw Missing(name, null),
        var other => Convert.ToString(other, CultureInfo.InvariantCulture) ?? "",
    };

    /// <summary>A linked value of type <typeparamref name="T"/>.</summary>
    public T Value<T>(string name) where T : class => Raw(name) as T ?? throw Missing(name, Raw(name));

    public T? Optional<T>(string name) where T : class => Raw(name) as T;

    UserErrorException Missing(string name, object? got) =>
        new($"{Definition.Name} {Node.Id}: input '{name}' {(got is null ? "is missing" : $"has the wrong kind of value ({got.GetType().Name})")}") { Field = name };
}

/// <summary>
/// One prompt's run on the worker thread: the models it leased (held until it ends), its events
/// and its cancellation. Nodes use it for weights (<see cref="Model"/>), progress and previews.
/// </summary>
public sealed class PromptRun(ComfyEnvironment env, JobContext job, ComfyPromptRecord prompt, ComfySocketHub hub) : IDisposable
{
    readonly Dictionary<string, ModelLease> _leases = new(StringComparer.Ordinal);

    public ComfyEnvironment Env { get; } = env;
    public JobContext Job { get; } = job;
    public ComfyPromptRecord Prompt { get; } = prompt;
    public CancellationToken Cancel => Job.Cancel;
    /// <summary>The node running now (progress and previews name it).</summary>
    public string? CurrentNode { get; set; }

    /// <summary>The loaded checkpoint, leased from the model cache for the rest of this prompt.</summary>
    public LoadedModel Model(CheckpointEntry entry)
    {
        if (_leases.TryGetValue(entry.Path, out var lease)) return lease.Model;
        lease = Env.Engine.Models.Acquire(entry, onLoad: name => Job.Report(new JobPhase(Job.Id, "loading", name)));
        _leases[entry.Path] = lease;
        return lease.Model;
    }

    /// <summary>A sampler step: ComfyUI's `progress` message.</summary>
    public void Progress(int value, int max)
    {
        if (Prompt.ClientId is { } client)
            hub.Send(client, "progress", new JsonObject { ["value"] = value, ["max"] = max, ["prompt_id"] = Prompt.Id, ["node"] = CurrentNode });
    }

    /// <summary>A preview image (PNG) of the running node.</summary>
    public void Preview(byte[] png) => hub.SendPreview(Prompt.ClientId, png, CurrentNode ?? "", Prompt.Id);

    /// <summary>An image for the client itself (SaveImageWebsocket).</summary>
    public void SendImage(byte[] png) => hub.SendImage(Prompt.ClientId, png);

    public void Dispose()
    {
        foreach (var l in _leases.Values) l.Dispose();
        _leases.Clear();
    }
}
