using System.Text;

namespace LoraCraft.IO;

/// <summary>A safetensors file that breaks the format: says which file, which tensor (when one is at fault) and what is wrong.</summary>
public sealed class SafetensorsFormatException : UserErrorException
{
    public string Path { get; }
    public string? Tensor { get; }
    public string Problem { get; }

    public SafetensorsFormatException(string path, string? tensor, string problem)
        : base(OneLine(tensor is null ? $"{path}: {problem}" : $"{path}: tensor '{tensor}': {problem}"))
    {
        Path = path;
        Tensor = tensor;
        Problem = problem;
    }

    // Names and values come from the file: escape control characters so the CLI's error stays one line.
    static string OneLine(string s)
    {
        if (!s.Any(char.IsControl)) return s;
        var sb = new StringBuilder(s.Length + 8);
        foreach (var c in s)
        {
            if (c == '\n') sb.Append("\\n");
            else if (c == '\r') sb.Append("\\r");
            else if (c == '\t') sb.Append("\\t");
            else if (char.IsControl(c)) sb.Append($"\\u{(int)c:x4}");
            else sb.Append(c);
        }
        return sb.ToString();
    }
}
