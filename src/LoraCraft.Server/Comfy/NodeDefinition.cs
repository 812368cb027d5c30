using System.Text.Json.Nodes;

namespace LoraCraft.Server.Comfy;

/// <summary>
/// One input of a node as ComfyUI declares it: a primitive (INT, FLOAT, STRING, BOOLEAN) with
/// its options (default, min, max, step …), a combo (a list of choices, listed fresh each time:
/// checkpoints, LoRAs, input files), or a link type (MODEL, LATENT …) that only a link can fill.
/// </summary>
public sealed record NodeInput(string Name, string Type, JsonObject? Options = null, Func<NodeLists, IReadOnlyList<string>>? Choices = null)
{
    public bool IsCombo => Choices is not null;
    public bool IsPrimitive => Type is "INT" or "FLOAT" or "STRING" or "BOOLEAN";
    public bool IsLink => !IsCombo && !IsPrimitive;

    public double? Min => Number(Options?["min"]);
    public double? Max => Number(Options?["max"]);

    /// <summary>A JSON number of any CLR type (a JsonValue made from a long is not readable as double).</summary>
    public static double? Number(JsonNode? node) => node is JsonValue v
        ? v.TryGetValue<double>(out var d) ? d : v.TryGetValue<long>(out var l) ? l : v.TryGetValue<ulong>(out var u) ? u
        : v.TryGetValue<int>(out var i) ? i : v.TryGetValue<float>(out var f) ? f : null
        : null;

    public static NodeInput Int(string name, long def, long min, long max, long step = 1, JsonObject? extra = null) =>
        new(name, "INT", With(new JsonObject { ["default"] = def, ["min"] = min, ["max"] = max, ["step"] = step }, extra));

    /// <summary>The seed inputs: up to 2^64 − 1, with the frontend's "control after generate" widget.</summary>
    public static NodeInput Seed(string name) =>
        new(name, "INT", new JsonObject { ["default"] = 0, ["min"] = 0, ["max"] = ulong.MaxValue, ["control_after_generate"] = true });

    public static NodeInput Float(string name, double def, double min, double max, double step, JsonObject? extra = null) =>
        new(name, "FLOAT", With(new JsonObject { ["default"] = def, ["min"] = min, ["max"] = max, ["step"] = step }, extra));

    public static NodeInput Bool(string name, bool def, JsonObject? extra = null) => new(name, "BOOLEAN", With(new JsonObject { ["default"] = def }, extra));

    public static NodeInput Text(string name, string def, bool multiline = false, JsonObject? extra = null)
    {
        var o = new JsonObject { ["default"] = def };
        if (multiline)
        {
            o["multiline"] = true;
            o["dynamicPrompts"] = true;
        }
        return new(name, "STRING", With(o, extra));
    }

    public static NodeInput Combo(string name, IReadOnlyList<string> choices, string? def = null, JsonObject? extra = null) =>
        new(name, "COMBO", With(def is null ? null : new JsonObject { ["default"] = def }, extra), _ => choices);

    public static NodeInput Combo(string name, Func<NodeLists, IReadOnlyList<string>> choices, JsonObject? extra = null) =>
        new(name, "COMBO", extra, choices);

    public static NodeInput Link(string name, string type, string? tooltip = null) =>
        new(name, type, tooltip is null ? null : new JsonObject { ["tooltip"] = tooltip });

    static JsonObject? With(JsonObject? a, JsonObject? b)
    {
        if (b is null) return a;
        a ??= new JsonObject();
        foreach (var (k, v) in b) a[k] = v?.DeepClone();
        return a;
    }

    /// <summary>The `[TYPE, options]` pair of /object_info (a combo's TYPE is its list of choices).</summary>
    public JsonArray Describe(NodeLists lists)
    {
        JsonNode type = IsCombo ? new JsonArray(Choices!(lists).Select(c => (JsonNode?)JsonValue.Create(c)).ToArray()) : JsonValue.Create(Type);
        var pair = new JsonArray(type);
        if (Options is { Count: > 0 }) pair.Add(Options.DeepClone());
        return pair;
    }
}

/// <summary>The folders whose files fill the combos, listed when asked (so new files show up).</summary>
public sealed record NodeLists(Func<IReadOnlyList<string>> Checkpoints, Func<IReadOnlyList<string>> Loras, Func<IReadOnlyList<string>> InputImages);

/// <summary>
/// A node class: ComfyUI's name, display name, category, inputs, outputs and whether it is an
/// output node, plus what it does here (<see cref="Run"/>, on the queue's worker thread).
/// </summary>
public sealed class NodeDefinition
{
    public required string Name { get; init; }
    public string? DisplayName { get; init; }
    public required string Category { get; init; }
    public string Description { get; init; } = "";
    public IReadOnlyList<NodeInput> Required { get; init; } = [];
    public IReadOnlyList<NodeInput> Optional { get; init; } = [];
    /// <summary>Hidden inputs: name -> PROMPT, EXTRA_PNGINFO, UNIQUE_ID.</summary>
    public IReadOnlyDictionary<string, string> Hidden { get; init; } = new Dictionary<string, string>();
    public IReadOnlyList<string> Outputs { get; init; } = [];
    public IReadOnlyList<string>? OutputNames { get; init; }
    public IReadOnlyList<string>? OutputTooltips { get; init; }
    public bool OutputNode { get; init; }
    /// <summary>Never served from the cache (ComfyUI's IS_CHANGED returning a new value each time).</summary>
    public bool AlwaysRun { get; init; }
    /// <summary>Module shown in the frontend ("nodes", "custom_nodes.…").</summary>
    public string PythonModule { get; init; } = "nodes";
    /// <summary>ComfyUI's IS_CHANGED: part of the cache signature (a file's hash).</summary>
    public Func<NodeCall, string?>? ChangeKey { get; init; }
    /// <summary>ComfyUI's VALIDATE_INPUTS for the named inputs: an error message or null; the inputs it covers skip the combo check.</summary>
    public (IReadOnlyList<string> Inputs, Func<NodeCall, string?> Check)? ValidateInputs { get; init; }
    public required Func<NodeCall, NodeResult> Run { get; init; }

    public IEnumerable<NodeInput> AllInputs => Required.Concat(Optional);
    public NodeInput? Input(string name) => AllInputs.FirstOrDefault(i => i.Name == name);

    /// <summary>The class as /object_info describes it.</summary>
    public JsonObject Describe(NodeLists lists)
    {
        var input = new JsonObject { ["required"] = Section(Required, lists) };
        if (Optional.Count > 0) input["optional"] = Section(Optional, lists);
        if (Hidden.Count > 0) input["hidden"] = new JsonObject(Hidden.Select(h => KeyValuePair.Create(h.Key, (JsonNode?)h.Value)));
        var order = new JsonObject { ["required"] = Names(Required) };
        if (Optional.Count > 0) order["optional"] = Names(Optional);
        if (Hidden.Count > 0) order["hidden"] = new JsonArray(Hidden.Keys.Select(k => (JsonNode?)k).ToArray());
        var info = new JsonObject
        {
            ["input"] = input,
            ["input_order"] = order,
            ["output"] = Strings(Outputs),
            ["output_is_list"] = new JsonArray(Outputs.Select(_ => (JsonNode?)false).ToArray()),
            ["output_name"] = Strings(OutputNames ?? Outputs),
            ["name"] = Name,
            ["display_name"] = DisplayName ?? Name,
            ["description"] = Description,
            ["python_module"] = PythonModule,
            ["category"] = Category,
            ["output_node"] = OutputNode,
        };
        if (OutputTooltips is not null) info["output_tooltips"] = Strings(OutputTooltips);
        return info;
    }

    static JsonObject Section(IEnumerable<NodeInput> inputs, NodeLists lists) =>
        new(inputs.Select(i => KeyValuePair.Create(i.Name, (JsonNode?)i.Describe(lists))));

    static JsonArray Names(IEnumerable<NodeInput> inputs) => new(inputs.Select(i => (JsonNode?)i.Name).ToArray());
    static JsonArray Strings(IEnumerable<string> s) => new(s.Select(x => (JsonNode?)x).ToArray());
}

/// <summary>What a node returns: one value per output, and what the frontend shows on the node (`ui`).</summary>
public sealed record NodeResult(IReadOnlyList<object?> Outputs, JsonObject? Ui = null)
{
    public static NodeResult Of(params object?[] outputs) => new(outputs);
}
