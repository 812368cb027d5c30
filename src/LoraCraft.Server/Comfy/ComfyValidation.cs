using System.Globalization;
using System.Text.Json.Nodes;

namespace LoraCraft.Server.Comfy;

/// <summary>The outcome of checking a prompt: the outputs to run, or ComfyUI's error body.</summary>
public sealed record ValidationResult(bool Ok, JsonObject? Error, IReadOnlyList<string> Outputs, JsonObject NodeErrors);

/// <summary>
/// ComfyUI's validate_prompt before queueing: every node's class must exist, at least one output
/// node, and for each output every input it depends on — required inputs present, links to
/// existing nodes with the right type, literals convertible and within min/max, combo values in
/// their list, custom checks (an image file that exists). Errors carry ComfyUI's types, messages
/// and `extra_info.input_name`, so the frontend rings the right widget.
/// </summary>
public sealed class ComfyValidation(ComfyEnvironment env)
{
    public ValidationResult Validate(ComfyGraph graph, IReadOnlyList<string>? targets = null)
    {
        var nodeErrors = new JsonObject();
        foreach (var node in graph.Nodes.Values)
        {
            if (node.ClassType is null)
                return Fail(Error("invalid_prompt", "Cannot execute because a node is missing the class_type property.", $"Node ID '#{node.Id}'"), nodeErrors);
            if (!env.Nodes.ContainsKey(node.ClassType))
                return Fail(Error("missing_node_type", $"Node '{node.Title ?? node.Id}' not found. The custom node may not be installed.", $"Node ID '#{node.Id}'",
                    new JsonObject { ["node_id"] = node.Id, ["class_type"] = node.ClassType, ["node_title"] = node.Title ?? node.ClassType }), nodeErrors);
        }
        var outputs = targets is { Count: > 0 }
            ? targets.Where(graph.Nodes.ContainsKey).ToList()
            : graph.Nodes.Values.Where(n => env.Nodes[n.ClassType!].OutputNode).Select(n => n.Id).ToList();
        if (outputs.Count == 0) return Fail(Error("prompt_no_outputs", "Prompt has no outputs", ""), nodeErrors);

        var validated = new Dictionary<string, (bool Ok, JsonArray Errors)>(StringComparer.Ordinal);
        var good = new List<string>();
        var failures = new List<string>();
        foreach (var output in outputs.Order(StringComparer.Ordinal))
        {
            var visiting = new HashSet<string>(StringComparer.Ordinal);
            var (ok, _) = ValidateNode(graph, output, validated, visiting);
            if (ok)
            {
                good.Add(output);
                continue;
            }
            foreach (var (id, result) in validated)
            {
                if (result.Ok || result.Errors.Count == 0) continue;
                if (nodeErrors[id] is not JsonObject entry)
                {
                    entry = new JsonObject { ["errors"] = result.Errors.DeepClone(), ["dependent_outputs"] = new JsonArray(), ["class_type"] = graph.Nodes[id].ClassType };
                    nodeErrors[id] = entry;
                    foreach (var e in result.Errors) failures.Add($"{e!["message"]}: {e["details"]}");
                }
                var dependents = (JsonArray)entry["dependent_outputs"]!;
                if (!dependents.Any(d => d!.GetValue<string>() == output)) dependents.Add(output);
            }
        }
        if (good.Count == 0)
            return Fail(Error("prompt_outputs_failed_validation", "Prompt outputs failed validation", string.Join("\n", failures.Distinct())), nodeErrors);
        return new ValidationResult(true, null, good, nodeErrors);
    }

    static ValidationResult Fail(JsonObject error, JsonObject nodeErrors) => new(false, error, [], nodeErrors);

    public static JsonObject Error(string type, string message, string details, JsonObject? extra = null) =>
        new() { ["type"] = type, ["message"] = message, ["details"] = details, ["extra_info"] = extra ?? new JsonObject() };

    (bool Ok, JsonArray Errors) ValidateNode(ComfyGraph graph, string id, Dictionary<string, (bool, JsonArray)> validated, HashSet<string> visiting)
    {
        if (validated.TryGetValue(id, out var known)) return known;
        var node = graph.Nodes[id];
        var def = env.Nodes[node.ClassType!];
        var errors = new JsonArray();
        bool ok = true;
        if (!visiting.Add(id))
        {
            errors.Add(Error("dependency_cycle", "Dependency cycle detected", id));
            return validated[id] = (false, errors);
        }
        var literals = new Dictionary<string, object?>(StringComparer.Ordinal);
        var custom = def.ValidateInputs?.Inputs ?? [];
        foreach (var input in def.AllInputs)
        {
            bool required = def.Required.Contains(input);
            if (!node.Inputs.TryGetValue(input.Name, out var given))
            {
                if (required)
                    errors.Add(Error("required_input_missing", "Required input is missing", input.Name, new JsonObject { ["input_name"] = input.Name }));
                continue;
            }
            var config = input.Describe(env.Lists);
            if (given.IsLink)
            {
                if (given.BadLink || !graph.Nodes.TryGetValue(given.Node!, out var source))
                {
                    errors.Add(Error("bad_linked_input", "Bad linked input, must be a length-2 list of [node_id, slot_index]", input.Name,
                        new JsonObject { ["input_name"] = input.Name, ["input_config"] = config, ["received_value"] = given.Literal?.DeepClone() ?? new JsonArray(given.Node, given.Output) }));
                    continue;
                }
                var sourceDef = env.Nodes[source.ClassType!];
                string? received = given.Output >= 0 && given.Output < sourceDef.Outputs.Count ? sourceDef.Outputs[given.Output] : null;
                string expected = input.IsCombo ? "COMBO" : input.Type;
                if (received is null || (received != expected && received != "*" && !(input.IsCombo && received == "STRING")))
                {
                    errors.Add(Error("return_type_mismatch", "Return type mismatch between linked nodes", $"{input.Name}, {received ?? "nothing"} != {expected}",
                        new JsonObject { ["input_name"] = input.Name, ["input_config"] = config, ["received_type"] = received, ["linked_node"] = new JsonArray(given.Node, given.Output) }));
                    continue;
                }
                var (sourceOk, _) = ValidateNode(graph, given.Node!, validated, visiting);
                if (!sourceOk) ok = false;
                continue;
            }
            if (input.IsLink)
            {
                errors.Add(Error("bad_linked_input", "Bad linked input, must be a length-2 list of [node_id, slot_index]", input.Name,
                    new JsonObject { ["input_name"] = input.Name, ["input_config"] = config, ["received_value"] = given.Literal?.DeepClone() }));
                continue;
            }
            var value = Convert(input, given.Literal, out var problem);
            if (problem is not null)
            {
                errors.Add(Error("invalid_input_type", $"Failed to convert an input value to a {input.Type} value", $"{input.Name}, {given.Literal?.ToJsonString()}, {problem}",
                    new JsonObject { ["input_name"] = input.Name, ["input_config"] = config, ["received_value"] = given.Literal?.DeepClone(), ["exception_message"] = problem }));
                continue;
            }
            literals[input.Name] = value;
            if (value is long or double or ulong)
            {
                double v = System.Convert.ToDouble(value, CultureInfo.InvariantCulture);
                if (input.Min is { } min && v < min)
                {
                    errors.Add(Error("value_smaller_than_min", $"Value {Show(value)} smaller than min of {Show(min)}", input.Name,
                        new JsonObject { ["input_name"] = input.Name, ["input_config"] = config, ["received_value"] = given.Literal?.DeepClone() }));
                    continue;
                }
                if (input.Max is { } max && v > max)
                {
                    errors.Add(Error("value_bigger_than_max", $"Value {Show(value)} bigger than max of {Show(max)}", input.Name,
                        new JsonObject { ["input_name"] = input.Name, ["input_config"] = config, ["received_value"] = given.Literal?.DeepClone() }));
                    continue;
                }
            }
            if (input.IsCombo && !custom.Contains(input.Name))
            {
                var choices = input.Choices!(env.Lists);
                if (value is not string s || !choices.Contains(s))
                {
                    bool big = choices.Count > 20;
                    string list = big ? $"(list of length {choices.Count})" : "[" + string.Join(", ", choices.Select(c => $"'{c}'")) + "]";
                    errors.Add(Error("value_not_in_list", "Value not in list", $"{input.Name}: '{Show(value)}' not in {list}",
                        new JsonObject { ["input_name"] = input.Name, ["input_config"] = big ? null : config, ["received_value"] = given.Literal?.DeepClone() }));
                }
            }
        }
        if (def.ValidateInputs is { } check && errors.Count == 0)
        {
            string? message;
            try { message = check.Check(new NodeCall(env, node, def, literals, null)); }
            catch (Exception e) { message = e.Message; }
            if (message is not null)
                foreach (var name in check.Inputs)
                    errors.Add(Error("custom_validation_failed", "Custom validation failed for node", $"{name} - {message}",
                        new JsonObject { ["input_name"] = name, ["received_value"] = node.Inputs.TryGetValue(name, out var g) ? g.Literal?.DeepClone() : null }));
        }
        visiting.Remove(id);
        return validated[id] = (ok && errors.Count == 0, errors);
    }

    static string Show(object? v) => v switch
    {
        double d => d.ToString("R", CultureInfo.InvariantCulture),
        null => "None",
        _ => System.Convert.ToString(v, CultureInfo.InvariantCulture) ?? "",
    };

    /// <summary>A literal as its input's type (INT -> long or ulong, FLOAT -> double, STRING, BOOLEAN); <paramref name="problem"/> says why not.</summary>
    public static object? Convert(NodeInput input, JsonNode? literal, out string? problem)
    {
        problem = null;
        var v = literal as JsonValue;
        try
        {
            switch (input.Type)
            {
                case "INT":
                    if (v is null) break;
                    if (v.TryGetValue<long>(out var l)) return l;
                    if (v.TryGetValue<ulong>(out var u)) return u;
                    if (v.TryGetValue<int>(out var i32)) return (long)i32;
                    if (NodeInput.Number(v) is { } d && !double.IsNaN(d) && !double.IsInfinity(d)) return (long)Math.Truncate(d);
                    if (v.TryGetValue<string>(out var s) && long.TryParse(s.Trim(), NumberStyles.Integer, CultureInfo.InvariantCulture, out var ps)) return ps;
                    if (v.TryGetValue<string>(out s) && ulong.TryParse(s.Trim(), NumberStyles.Integer, CultureInfo.InvariantCulture, out var pu)) return pu;
                    if (v.TryGetValue<bool>(out var b)) return b ? 1L : 0L;
                    break;
                case "FLOAT":
                    if (v is null) break;
                    if (NodeInput.Number(v) is { } f) return f;
                    if (v.TryGetValue<string>(out var fs) && double.TryParse(fs.Trim(), NumberStyles.Float, CultureInfo.InvariantCulture, out var pf)) return pf;
                    if (v.TryGetValue<bool>(out var fb)) return fb ? 1.0 : 0.0;
                    break;
                case "STRING":
                    if (v is null) return literal?.ToJsonString() ?? "None";
                    return v.TryGetValue<string>(out var str) ? str : v.ToJsonString();
                case "BOOLEAN":
                    if (v is null) break;
                    if (v.TryGetValue<bool>(out var bo)) return bo;
                    if (NodeInput.Number(v) is { } bd) return bd != 0;
                    if (v.TryGetValue<string>(out var bs)) return bs.Length > 0 && !bs.Equals("false", StringComparison.OrdinalIgnoreCase) && bs != "0";
                    break;
                default: // combo
                    if (v is not null && v.TryGetValue<string>(out var c)) return c;
                    return v?.ToJsonString();
            }
        }
        catch (Exception e) when (e is FormatException or InvalidOperationException or OverflowException)
        {
            problem = e.Message;
            return null;
        }
        problem = $"invalid literal for {input.Type}: {literal?.ToJsonString() ?? "None"}";
        return null;
    }
}
