using LoraCraft.Models;
using LoraCraft.Models.Loading;
using System.Globalization;
using System.Text;
using System.Text.Encodings.Web;
using System.Text.Json;
using LoraCraft.IO;

namespace LoraCraft.Cli.Commands;

/// <summary><c>loracraft inspect FILE [--json]</c>: a summary of a safetensors file, from its header only.</summary>
public static class InspectCommand
{
    const int ShownValueLength = 100;

    public static int Run(string[] args, TextWriter stdout)
    {
        // --quiet is a global option; inspect has no progress output to silence.
        var parsed = new Args("inspect", args, flags: ["json", "quiet"], options: []);
        var path = parsed.Positional(0, "a FILE");
        if (parsed.Positionals.Count > 1) throw new UserErrorException("'inspect' takes one FILE");

        var summary = Summary.Of(SafetensorsHeader.Read(path));
        stdout.WriteLine(parsed.Flag("json") ? summary.Json() : summary.Text());
        return 0;
    }

    sealed record Summary(SafetensorsHeader Header, long Parameters, IReadOnlyList<(SafeDType DType, int Count)> DTypes, string? Family, bool Inpainting)
    {
        public static Summary Of(SafetensorsHeader header)
        {
            var dtypes = header.Tensors.GroupBy(t => t.DType).OrderBy(g => g.Key).Select(g => (g.Key, g.Count())).ToList();
            var (family, inpainting) = CheckpointLayout.Detect(header);
            return new Summary(header, header.Tensors.Sum(t => t.ElementCount), dtypes, family?.Id(), inpainting);
        }

        public string Text()
        {
            var inv = CultureInfo.InvariantCulture;
            var text = new StringBuilder();
            void Line(string label, string value) => text.Append(inv, $"{label,-12}{value}\n");

            Line("file", Header.Path);
            Line("size", string.Format(inv, "{0:N0} bytes ({1})", Header.FileLength, TextFormat.Human(Header.FileLength)));
            Line("tensors", Header.Tensors.Count.ToString("N0", inv));
            Line("parameters", Parameters.ToString("N0", inv));
            Line("dtypes", DTypes.Count == 0 ? "none" : string.Join(", ", DTypes.Select(d => string.Create(inv, $"{SafeDTypes.Name(d.DType)} {d.Count}"))));
            Line("family", Family ?? "unknown");
            Line("inpainting", Inpainting ? "yes" : "no");
            Line("metadata", Header.Metadata.Count == 0 ? "none" : $"{Header.Metadata.Count} keys");
            int width = Header.Metadata.Keys.Select(k => k.Length).DefaultIfEmpty(0).Max();
            foreach (var (key, value) in Header.Metadata)
                text.Append("  ").Append(TextFormat.Escape(key).PadRight(width)).Append("  ").Append(TextFormat.Shown(value, ShownValueLength)).Append('\n');
            return text.ToString().TrimEnd('\n');
        }

        public string Json()
        {
            using var buffer = new MemoryStream();
            using (var json = new Utf8JsonWriter(buffer, new JsonWriterOptions { Indented = true, Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping }))
            {
                json.WriteStartObject();
                json.WriteString("path", Header.Path);
                json.WriteNumber("size_bytes", Header.FileLength);
                json.WriteNumber("tensor_count", Header.Tensors.Count);
                json.WriteNumber("parameters", Parameters);
                json.WriteStartObject("dtypes");
                foreach (var (dtype, count) in DTypes) json.WriteNumber(SafeDTypes.Name(dtype), count);
                json.WriteEndObject();
                json.WriteStartObject("metadata");
                foreach (var (key, value) in Header.Metadata) json.WriteString(key, value);
                json.WriteEndObject();
                json.WriteString("family", Family);
                json.WriteBoolean("inpainting", Inpainting);
                json.WriteEndObject();
            }
            return Encoding.UTF8.GetString(buffer.ToArray());
        }
    }
}
