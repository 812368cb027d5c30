using System.Globalization;
using System.Text;
using System.Text.Encodings.Web;
using System.Text.Json;
using LoraCraft.IO;
using LoraCraft.Lora;
using LoraCraft.Models;
using LoraCraft.Models.Loading;
using static TorchSharp.torch;

namespace LoraCraft.Cli.Commands;

/// <summary>
/// <c>loracraft lora list|info|check</c> and <c>loracraft make-lora</c>: looking at LoRA files
/// without generating. list and info read headers (and the sidecars beside them) only; check loads
/// the model to map keys. get, fetch-info and search talk to Civitai and Hugging Face (their own files).
/// </summary>
public static class LoraCommand
{
    public const string DefaultDir = "./models/Lora";
    const int ShownValueLength = 100;
    const int ShownUnmatched = 20;
    const int ShownTagLength = 40;
    static readonly CultureInfo Inv = CultureInfo.InvariantCulture;
    static readonly JsonWriterOptions JsonOptions = new() { Indented = true, Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping };
    internal static readonly JsonSerializerOptions JsonSerializerOptions = new() { WriteIndented = true, Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping };
    static readonly string Subcommands = "list, info, check, get, fetch-info, search, " + string.Join(", ", LoraToolsCommand.Subcommands);

    public static int Run(string command, string[] argv, TextWriter stdout, TextWriter? stderr = null)
    {
        stderr ??= TextWriter.Null;
        if (command == "make-lora") return MakeLoraCommand.Run(argv, stdout);
        if (argv.Length == 0) throw new UserErrorException($"'lora' needs a subcommand: {Subcommands}");
        var rest = argv[1..];
        if (LoraToolsCommand.Subcommands.Contains(argv[0])) return LoraToolsCommand.Run(argv[0], rest, stdout);
        return argv[0] switch
        {
            "list" => List(rest, stdout),
            "info" => Info(rest, stdout),
            "check" => Check(rest, stdout),
            "get" => LoraGetCommand.Run(rest, stdout, stderr),
            "fetch-info" => LoraFetchInfoCommand.Run(rest, stdout, stderr),
            "search" => LoraSearchCommand.Run(rest, stdout, stderr),
            var s => throw new UserErrorException($"unknown 'lora' subcommand '{s}' ({Subcommands})"),
        };
    }

    static int List(string[] argv, TextWriter stdout)
    {
        var a = new Args("lora list", argv, flags: ["json", "quiet"], options: ["dir"]);
        if (a.Positionals.Count > 0) throw new UserErrorException($"'lora list' takes no positional arguments (got '{a.Positionals[0]}'; use --dir)");
        string dir = a.Get("dir") ?? DefaultDir;
        if (!Directory.Exists(dir)) throw new UserErrorException($"LoRA folder {dir} does not exist (use --dir)");

        var rows = LoraInfo.List(new LoraLibrary(dir), FileHashes.Default);
        var sidecars = rows.AsParallel().AsOrdered().Select(r => LoraSidecars.Read(r.Path)).ToList();

        if (a.Flag("json"))
        {
            stdout.WriteLine(Json(json =>
            {
                json.WriteStartArray();
                foreach (var ((path, info, error), side) in rows.Zip(sidecars))
                {
                    json.WriteStartObject();
                    if (info is not null) WriteSummary(json, info, side);
                    else
                    {
                        json.WriteString("name", Path.GetFileNameWithoutExtension(path));
                        json.WriteString("path", path);
                        json.WriteString("error", error);
                    }
                    json.WriteEndObject();
                }
                json.WriteEndArray();
            }));
            return 0;
        }
        if (rows.Count == 0)
        {
            stdout.WriteLine($"no .safetensors files in {dir}");
            return 0;
        }
        string[] head = ["NAME", "FAMILY", "TYPE", "RANK", "ALPHA", "UNET", "TE", "SIZE", "HASH", "TITLE", "BASE", "TRIGGER WORDS"];
        var table = rows.Zip(sidecars, (r, side) => r.Info is { } i
            ? new[]
            {
                i.Name, i.Family?.Id() ?? "?", Algorithm(i.Algorithm) + (i.Dora ? "+dora" : ""), i.Rank?.ToString(Inv) ?? "?", i.Alpha is { } al ? TextFormat.Num(al) : "=rank",
                i.Modules.UNet.ToString(Inv), TextEncoders(i.Modules), TextFormat.Human(i.SizeBytes), i.Hash ?? "", TextFormat.Shown(i.Title ?? "", 40),
                TextFormat.Shown(side.BaseModel ?? "", 20),
                i.Triggers is { } t ? TextFormat.Shown(string.Join(", ", t.Words), 60) : "",
            }
            : [Path.GetFileNameWithoutExtension(r.Path), "unreadable: " + r.Error]).ToList();
        var widths = head.Select((h, c) => Math.Max(h.Length, table.Where(row => row.Length == head.Length).Select(row => row[c].Length).DefaultIfEmpty(0).Max())).ToArray();
        string Line(string[] cells) => cells.Length < head.Length
            ? string.Join("  ", cells)
            : string.Join("  ", cells.Select((c, k) => k == cells.Length - 1 ? c : c.PadRight(widths[k]))).TrimEnd();
        stdout.WriteLine(Line(head));
        foreach (var row in table) stdout.WriteLine(Line(row));
        int unreadable = rows.Count(r => r.Info is null), good = rows.Count - unreadable;
        stdout.WriteLine($"{good} LoRA file{(good == 1 ? "" : "s")} in {dir}" + (unreadable > 0 ? $", {unreadable} unreadable" : ""));
        return 0;
    }

    static int Info(string[] argv, TextWriter stdout)
    {
        var a = new Args("lora info", argv, flags: ["json", "quiet"], options: ["dir"]);
        if (a.Positionals.Count != 1) throw new UserErrorException("'lora info' takes one FILE (or a LoRA name with --dir)");
        string path = new LoraLibrary(a.Get("dir") ?? DefaultDir).ResolveFileOrName(a.Positionals[0]);
        var info = LoraInfo.Read(path, FileHashes.Default);
        var side = LoraSidecars.Read(path);
        var tags = info.TopTags();
        if (a.Flag("json"))
        {
            stdout.WriteLine(Json(json =>
            {
                json.WriteStartObject();
                WriteSummary(json, info, side);
                json.WriteString("trigger_source", info.Triggers?.Source);
                LoraSidecarOutput.Json(json, side);
                json.WriteStartObject("top_tags");
                foreach (var (tag, count) in tags) json.WriteNumber(tag, count);
                json.WriteEndObject();
                json.WriteStartObject("metadata");
                foreach (var (key, value) in info.Metadata.OrderBy(m => m.Key, StringComparer.Ordinal)) json.WriteString(key, value);
                json.WriteEndObject();
                json.WriteEndObject();
            }));
            return 0;
        }
        var text = new StringBuilder();
        void Line(string label, string value) => text.Append(Inv, $"{label,-14}{value}\n");
        Line("file", info.Path);
        Line("name", info.Name);
        Line("title", info.Title ?? "none");
        Line("family", info.Family?.Id() ?? "unknown");
        Line("type", Algorithm(info.Algorithm) + (info.Dora ? " with DoRA" : "")
                     + (info.Algorithms.Keys.Select(k => k == LoraAlgorithm.LoCon ? LoraAlgorithm.Lora : k).Distinct().Count() > 1 ? $" ({string.Join(", ", info.Algorithms.Select(p => string.Create(Inv, $"{p.Value} {Algorithm(p.Key)}")))})" : ""));
        Line("rank", info.Rank?.ToString(Inv) ?? "unknown");
        Line("alpha", info.Alpha is { } alpha
            ? TextFormat.Num(alpha) + (info.Rank is { } r ? $" (scale {TextFormat.Num(alpha / r)})" : "")
            : "none (= rank, scale 1)");
        Line("modules", Modules(info.Modules) + (info.UnknownTensors > 0 ? $"; {info.UnknownTensors} unrecognised tensors" : ""));
        Line("size", string.Format(Inv, "{0:N0} bytes ({1})", info.SizeBytes, TextFormat.Human(info.SizeBytes)));
        Line("hash", info.Hash ?? "");
        Line("trigger words", info.Triggers is { } t ? $"{string.Join(", ", t.Words)} (from {t.Source})" : "none");
        LoraSidecarOutput.Lines(side, Line);
        Line("top tags", tags.Count == 0 ? "none" : string.Join(", ", tags.Select(p => string.Create(Inv, $"{TextFormat.Shown(p.Tag, ShownTagLength)} ({p.Count})"))));
        Line("metadata", info.Metadata.Count == 0 ? "none" : $"{info.Metadata.Count} keys");
        int width = info.Metadata.Keys.Select(k => k.Length).DefaultIfEmpty(0).Max();
        foreach (var (key, value) in info.Metadata.OrderBy(m => m.Key, StringComparer.Ordinal))
            text.Append("  ").Append(TextFormat.Escape(key).PadRight(width)).Append("  ").Append(TextFormat.Shown(value, ShownValueLength)).Append('\n');
        stdout.Write(text.ToString());
        return 0;
    }

    static int Check(string[] argv, TextWriter stdout)
    {
        var a = new Args("lora check", argv, flags: ["json", "quiet"], options: ["model", "config", "tokenizer", "dir"]);
        if (a.Positionals.Count != 1) throw new UserErrorException("'lora check' takes one FILE (or a LoRA name with --dir)");
        string loraPath = new LoraLibrary(a.Get("dir") ?? DefaultDir).ResolveFileOrName(a.Positionals[0]);
        string modelPath = a.Require("model");
        // the LoRA first: a broken file is reported before the (slow) model load
        using var lora = LoraFile.Load(loraPath);
        // only the layers' names and shapes are needed: half precision halves the memory
        using var model = CheckpointLoader.Load(modelPath, new LoadOptions { ConfigDir = a.Get("config"), TokenizerDir = a.Get("tokenizer"), DType = ScalarType.Float16 });
        var targets = new LoraTargets(model);
        var plan = LoraPlan.Create(lora, targets);
        var coverage = Coverage.Of(plan, targets, model);
        stdout.WriteLine(a.Flag("json") ? coverage.Json(loraPath, modelPath) : coverage.Text(loraPath, modelPath));
        return 0;
    }

    /// <summary>Matched and unmatched keys per model part, and what to make of them.</summary>
    sealed record Coverage(LoraPlan Plan, ModelFamily ModelFamily, ModelFamily? LoraFamily,
        IReadOnlyList<(string Name, string Label, int Matched, int Unmatched, int Layers)> Parts)
    {
        public static Coverage Of(LoraPlan plan, LoraTargets targets, StableDiffusionModel model)
        {
            var parts = new List<(string, string, int, int, int)>();
            bool sdxl = model.TextEncoders.Count > 1;
            void Part(LoraComponent c, string name, string label) => parts.Add((name, label, plan.Count(c),
                plan.Unmatched.Count(k => LoraInfo.ComponentOf(k) == c), targets.Layers.Count(l => l.Target.Component == c)));
            Part(LoraComponent.UNet, "unet", "UNet");
            Part(LoraComponent.TextEncoder1, "text_encoder_1", sdxl ? "text encoder 1" : "text encoder");
            if (sdxl) Part(LoraComponent.TextEncoder2, "text_encoder_2", "text encoder 2");
            // keys of a model part this model lacks (lora_te2_ on SD1) or of no known part
            int foreign = plan.Unmatched.Count(k => LoraInfo.ComponentOf(k) is not { } c || (c == LoraComponent.TextEncoder2 && !sdxl));
            if (foreign > 0) parts.Add(("other", "other", 0, foreign, 0));
            return new Coverage(plan, model.Family, LoraFamilyGuess.Guess(plan.File), parts);
        }

        bool Complete => Plan.Unmatched.Count == 0;

        // a file made for another family never gets here: LoraPlan.Create refuses it
        string Verdict() => Complete
            ? $"OK: all {Plan.Matched.Count} modules map onto this {ModelFamily.Id()} model"
            : $"PARTIAL: {Plan.Matched.Count} of {Plan.Matched.Count + Plan.Unmatched.Count} keys map onto this {ModelFamily.Id()} model; the other {Plan.Unmatched.Count} are ignored";

        public string Text(string loraPath, string modelPath)
        {
            var text = new StringBuilder();
            text.Append(Inv, $"lora      {loraPath} ({Algorithm(Plan.File.Algorithm)}, made for {LoraFamily?.Id() ?? "an unknown family"})\n");
            text.Append(Inv, $"model     {modelPath} ({ModelFamily.Id()})\n");
            int width = Parts.Max(p => p.Label.Length);
            foreach (var p in Parts)
            {
                text.Append(Inv, $"  {p.Label.PadRight(width)}  {p.Matched,5} matched  {p.Unmatched,5} unmatched");
                text.Append(p.Layers > 0 ? string.Create(Inv, $"  (model has {p.Layers} patchable layers)\n") : "\n");
            }
            text.Append("types     ").Append(string.Join(", ", Plan.Matched.GroupBy(m => m.Module.Algorithm).OrderBy(g => g.Key).Select(g =>
            {
                int dora = g.Count(m => m.Module.IsDora);
                return string.Create(Inv, $"{g.Count()} {Algorithm(g.Key)}") + (dora > 0 ? string.Create(Inv, $" ({dora} with DoRA)") : "");
            }))).Append('\n');
            if (!Complete)
            {
                text.Append("unmatched keys:\n");
                foreach (var k in Plan.Unmatched.Take(ShownUnmatched)) text.Append("  ").Append(k).Append('\n');
                if (Plan.Unmatched.Count > ShownUnmatched) text.Append(Inv, $"  … and {Plan.Unmatched.Count - ShownUnmatched} more (--json lists all)\n");
            }
            text.Append("verdict: ").Append(Verdict());
            return text.ToString();
        }

        public string Json(string loraPath, string modelPath) => LoraCommand.Json(json =>
        {
            json.WriteStartObject();
            json.WriteString("lora", loraPath);
            json.WriteString("model", modelPath);
            json.WriteString("algorithm", Algorithm(Plan.File.Algorithm));
            json.WriteString("lora_family", LoraFamily?.Id());
            json.WriteString("model_family", ModelFamily.Id());
            json.WriteStartObject("components");
            foreach (var p in Parts)
            {
                json.WriteStartObject(p.Name);
                json.WriteNumber("matched", p.Matched);
                json.WriteNumber("unmatched", p.Unmatched);
                json.WriteNumber("layers", p.Layers);
                json.WriteEndObject();
            }
            json.WriteEndObject();
            json.WriteStartArray("modules");
            foreach (var (module, target) in Plan.Matched)
            {
                json.WriteStartObject();
                json.WriteString("key", module.Key);
                json.WriteString("algorithm", Algorithm(module.Algorithm));
                json.WriteBoolean("dora", module.IsDora);
                if (module.Rank is { } rank) json.WriteNumber("rank", rank); else json.WriteNull("rank");
                json.WriteString("component", target.Component switch
                {
                    LoraComponent.UNet => "unet", LoraComponent.TextEncoder1 => "text_encoder_1", _ => "text_encoder_2",
                });
                json.WriteString("target", target.Name);
                json.WriteEndObject();
            }
            json.WriteEndArray();
            json.WriteStartArray("unmatched_keys");
            foreach (var k in Plan.Unmatched) json.WriteStringValue(k);
            json.WriteEndArray();
            json.WriteString("verdict", Complete ? "ok" : "partial");
            json.WriteString("message", Verdict());
            json.WriteEndObject();
        });
    }

    /// <summary>The fields `list` and `info` share.</summary>
    static void WriteSummary(Utf8JsonWriter json, LoraInfo i, LoraSidecars side)
    {
        json.WriteString("name", i.Name);
        json.WriteString("path", i.Path);
        json.WriteNumber("size_bytes", i.SizeBytes);
        json.WriteString("family", i.Family?.Id());
        json.WriteString("algorithm", Algorithm(i.Algorithm));
        json.WriteBoolean("dora", i.Dora);
        json.WriteStartObject("algorithms");
        foreach (var (a, n) in i.Algorithms) json.WriteNumber(Algorithm(a), n);
        json.WriteEndObject();
        if (i.Rank is { } rank) json.WriteNumber("rank", rank); else json.WriteNull("rank");
        if (i.Alpha is { } alpha) json.WriteNumber("alpha", alpha); else json.WriteNull("alpha");
        json.WriteStartObject("modules");
        json.WriteNumber("unet", i.Modules.UNet);
        json.WriteNumber("text_encoder_1", i.Modules.TextEncoder1);
        json.WriteNumber("text_encoder_2", i.Modules.TextEncoder2);
        json.WriteNumber("other", i.Modules.Other);
        json.WriteEndObject();
        json.WriteNumber("unknown_tensors", i.UnknownTensors);
        json.WriteString("title", i.Title);
        json.WriteStartArray("trigger_words");
        foreach (var w in i.Triggers?.Words ?? []) json.WriteStringValue(w);
        json.WriteEndArray();
        json.WriteString("hash", i.Hash);
        json.WriteString("base_model", side.BaseModel);
        if (side.Civitai?.VersionId is { } civitai) json.WriteString("civitai", $"civitai:{civitai}"); else json.WriteNull("civitai");
        json.WriteString("preview", side.PreviewPath);
    }

    static string Json(Action<Utf8JsonWriter> write)
    {
        using var buffer = new MemoryStream();
        using (var json = new Utf8JsonWriter(buffer, JsonOptions)) write(json);
        return Encoding.UTF8.GetString(buffer.ToArray());
    }

    static string Algorithm(LoraAlgorithm a) => a.Id();

    static string TextEncoders(LoraModuleCounts m) =>
        m.TextEncoder2 > 0 ? string.Create(Inv, $"{m.TextEncoder1}+{m.TextEncoder2}") : m.TextEncoder1.ToString(Inv);

    static string Modules(LoraModuleCounts m)
    {
        var parts = new List<string> { $"UNet {m.UNet}" };
        if (m.TextEncoder2 > 0) parts.Add($"text encoder 1 {m.TextEncoder1}, text encoder 2 {m.TextEncoder2}");
        else parts.Add($"text encoder {m.TextEncoder1}");
        if (m.Other > 0) parts.Add($"other {m.Other}");
        return string.Create(Inv, $"{m.Total} ({string.Join(", ", parts)})");
    }
}
