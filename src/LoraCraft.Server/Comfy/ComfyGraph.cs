using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace LoraCraft.Server.Comfy;

/// <summary>An input of a graph node: a literal value or a link to output <see cref="Output"/> of node <see cref="Node"/>.</summary>
public readonly record struct GraphInput(JsonNode? Literal, string? Node, int Output, bool IsLink, bool BadLink)
{
    public static GraphInput Parse(JsonNode? value)
    {
        // a literal list is written {"__value__": [...]}; any other list is a link
        if (value is JsonObject o && o.Count == 1 && o.TryGetPropertyValue("__value__", out var wrapped)) return new(wrapped, null, 0, false, false);
        if (value is not JsonArray a) return new(value, null, 0, false, false);
        if (a.Count != 2 || a[0] is not JsonValue id || a[1] is not JsonValue index || !index.TryGetValue<int>(out int output) && !TryInt(index, out output))
            return new(value, null, 0, true, true);
        string node = id.TryGetValue<string>(out var s) ? s : id.ToJsonString();
        return new(null, node, output, true, false);
    }

    static bool TryInt(JsonValue v, out int i)
    {
        i = 0;
        return v.TryGetValue<double>(out var d) && d == Math.Floor(d) && d >= 0 && d < int.MaxValue && (i = (int)d) == d;
    }
}

/// <summary>One node of an API-format prompt: `{"class_type", "inputs", "_meta": {"title"}}`.</summary>
public sealed record GraphNode(string Id, string? ClassType, IReadOnlyDictionary<string, GraphInput> Inputs, string? Title);

/// <summary>
/// An API-format prompt (`{id: {class_type, inputs}}`), the one form ComfyUI executes. The UI
/// format (`nodes`/`links`, what "Save" writes) is recognised so the error can say so.
/// </summary>
public sealed class ComfyGraph
{
    ComfyGraph(JsonObject json, Dictionary<string, GraphNode> nodes)
    {
        Json = json;
        Nodes = nodes;
    }

    /// <summary>The prompt as posted (with `is_changed` never added): what history, PNGs and the queue show.</summary>
    public JsonObject Json { get; }
    public IReadOnlyDictionary<string, GraphNode> Nodes { get; }

    /// <summary>Whether a JSON object is a UI-format workflow (the frontend's saved file) rather than an API prompt.</summary>
    public static bool IsUiFormat(JsonNode? json) => json is JsonObject o && o["nodes"] is JsonArray && o["links"] is JsonArray;

    public static ComfyGraph Parse(JsonObject json)
    {
        var nodes = new Dictionary<string, GraphNode>(StringComparer.Ordinal);
        foreach (var (id, value) in json)
        {
            if (value is not JsonObject node)
            {
                nodes[id] = new GraphNode(id, null, new Dictionary<string, GraphInput>(), null);
                continue;
            }
            string? classType = node["class_type"] is JsonValue c && c.TryGetValue<string>(out var ct) ? ct : null;
            var inputs = new Dictionary<string, GraphInput>(StringComparer.Ordinal);
            if (node["inputs"] is JsonObject ins)
                foreach (var (name, v) in ins) inputs[name] = GraphInput.Parse(v);
            string? title = node["_meta"]?["title"] is JsonValue t && t.TryGetValue<string>(out var tt) ? tt : null;
            nodes[id] = new GraphNode(id, classType, inputs, title);
        }
        return new ComfyGraph(json, nodes);
    }

    /// <summary>
    /// The cache key of every node reachable from <paramref name="roots"/>: its class, its literal
    /// inputs, its change key (a loaded file's hash) and the keys of the nodes it links to — equal
    /// keys mean equal outputs, in this prompt or a later one.
    /// </summary>
    public Dictionary<string, string> Signatures(IEnumerable<string> roots, Func<GraphNode, string?> changeKey)
    {
        var done = new Dictionary<string, string>(StringComparer.Ordinal);
        var visiting = new HashSet<string>(StringComparer.Ordinal);
        string Of(string id)
        {
            if (done.TryGetValue(id, out var s)) return s;
            if (!visiting.Add(id)) throw new InvalidOperationException($"dependency cycle at node {id}");
            var node = Nodes[id];
            var text = new StringBuilder(node.ClassType).Append('|').Append(changeKey(node)).Append('|');
            foreach (var (name, input) in node.Inputs.OrderBy(i => i.Key, StringComparer.Ordinal))
            {
                text.Append(name).Append('=');
                if (input.IsLink && !input.BadLink && Nodes.ContainsKey(input.Node!)) text.Append('@').Append(Of(input.Node!)).Append(':').Append(input.Output);
                else text.Append(input.Literal?.ToJsonString() ?? "null");
                text.Append(';');
            }
            visiting.Remove(id);
            return done[id] = Convert.ToHexString(SHA256.HashData(Encoding.UTF8.GetBytes(text.ToString())));
        }
        foreach (var r in roots) Of(r);
        return done;
    }

    /// <summary>The nodes <paramref name="output"/> needs, dependencies first, itself last.</summary>
    public IReadOnlyList<string> Order(string output)
    {
        var order = new List<string>();
        var seen = new HashSet<string>(StringComparer.Ordinal);
        void Visit(string id)
        {
            if (!seen.Add(id)) return;
            foreach (var input in Nodes[id].Inputs.Values.Where(i => i.IsLink && !i.BadLink && Nodes.ContainsKey(i.Node!)))
                Visit(input.Node!);
            order.Add(id);
        }
        Visit(output);
        return order;
    }

    public static JsonElement ToElement(JsonNode? node) => JsonSerializer.SerializeToElement(node);
}
