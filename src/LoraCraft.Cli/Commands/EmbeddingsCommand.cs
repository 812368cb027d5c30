using System.Globalization;
using System.Text.Encodings.Web;
using System.Text.Json;
using LoraCraft.Text.Embeddings;

namespace LoraCraft.Cli.Commands;

/// <summary><c>loracraft embeddings list [--dir DIR] [--json]</c>: the textual-inversion library (headers only).</summary>
public static class EmbeddingsCommand
{
    static readonly JsonWriterOptions JsonOptions = new() { Indented = true, Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    public static int Run(string[] argv, TextWriter stdout)
    {
        if (argv.Length == 0) throw new UserErrorException("'embeddings' needs a subcommand: list");
        if (argv[0] != "list") throw new UserErrorException($"unknown 'embeddings' subcommand '{argv[0]}' (list)");
        var a = new Args("embeddings list", argv[1..], flags: ["json"], options: ["dir"]);
        if (a.Positionals.Count > 0) throw new UserErrorException($"'embeddings list' takes no positional arguments (got '{a.Positionals[0]}'; use --dir)");
        string dir = a.Get("dir") ?? EmbeddingLibrary.DefaultRoot;
        if (!Directory.Exists(dir)) throw new UserErrorException($"embeddings folder {dir} does not exist (use --dir)");
        var list = new EmbeddingLibrary(dir).List();
        if (a.Flag("json"))
        {
            using var buffer = new MemoryStream();
            using (var json = new Utf8JsonWriter(buffer, JsonOptions))
            {
                json.WriteStartArray();
                foreach (var e in list)
                {
                    json.WriteStartObject();
                    json.WriteString("name", e.Name);
                    json.WriteString("path", e.Path);
                    json.WriteNumber("vectors", e.Vectors);
                    json.WriteNumber("shape", e.Shape);
                    json.WriteStartObject("widths");
                    foreach (var (k, w) in e.Widths) json.WriteNumber(k.Length == 0 ? "text" : k, w);
                    json.WriteEndObject();
                    if (e.Family is null) json.WriteNull("family"); else json.WriteString("family", e.Family);
                    if (e.Problem is null) json.WriteNull("problem"); else json.WriteString("problem", e.Problem);
                    json.WriteEndObject();
                }
                json.WriteEndArray();
            }
            stdout.WriteLine(System.Text.Encoding.UTF8.GetString(buffer.ToArray()));
            return 0;
        }
        if (list.Count == 0)
        {
            stdout.WriteLine($"no embeddings (.safetensors, .pt, .bin) in {dir}");
            return 0;
        }
        string[] head = ["NAME", "FAMILY", "VECTORS", "WIDTH", "FILE"];
        var rows = list.Select(e => e.Problem is not null
            ? new[] { e.Name, "-", "-", "-", $"{e.Path}  (refused: {e.Problem})" }
            : [e.Name, e.Family ?? "?", e.Vectors.ToString(CultureInfo.InvariantCulture),
               string.Join("+", e.Widths.Select(w => w.Key.Length == 0 ? $"{w.Value}" : $"{w.Key} {w.Value}")), e.Path]).ToList();
        var widths = head.Select((h, k) => Math.Max(h.Length, rows.Max(r => r[k].Length))).ToArray();
        foreach (var r in rows.Prepend(head))
            stdout.WriteLine(string.Join("  ", r.Select((c, k) => k == r.Length - 1 ? TextFormat.Escape(c) : TextFormat.Escape(c).PadRight(widths[k]))).TrimEnd());
        return 0;
    }
}
