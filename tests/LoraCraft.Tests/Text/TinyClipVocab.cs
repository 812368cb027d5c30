using System.Text;
using System.Text.Json;

namespace LoraCraft.Tests.Text;

/// <summary>
/// A hand-checkable CLIP vocabulary written to a temp folder: byte b has id b, "b&lt;/w&gt;" id 256 + b
/// (in GPT-2 byte symbols), then five merges and the two specials.
/// </summary>
sealed class TinyClipVocab : IDisposable
{
    public const int Ca = 512, CatW = 513, Th = 514, TheW = 515, On = 516, Start = 517, End = 518;
    public static int Byte(char c) => c;
    public static int ByteW(char c) => 256 + c;

    public string Dir { get; } = Directory.CreateTempSubdirectory("loracraft-vocab-").FullName;

    public TinyClipVocab()
    {
        var vocab = new Dictionary<string, int>();
        for (int b = 0; b < 256; b++)
        {
            vocab[Symbol(b)] = b;
            vocab[Symbol(b) + "</w>"] = 256 + b;
        }
        string[] merges = ["c a", "ca t</w>", "t h", "th e</w>", "o n"];
        foreach (var m in merges) vocab[m.Replace(" ", "")] = vocab.Count;
        vocab["<|startoftext|>"] = vocab.Count;
        vocab["<|endoftext|>"] = vocab.Count;
        File.WriteAllText(Path.Combine(Dir, "vocab.json"), JsonSerializer.Serialize(vocab));
        File.WriteAllText(Path.Combine(Dir, "merges.txt"), "#version: 0.2\n" + string.Join("\n", merges) + "\n", new UTF8Encoding(false));
    }

    /// <summary>GPT-2's printable stand-in for byte b.</summary>
    static string Symbol(int b)
    {
        int next = 256;
        for (int x = 0; x < 256; x++)
        {
            bool printable = x is >= '!' and <= '~' or >= 0xA1 and <= 0xAC or >= 0xAE and <= 0xFF;
            int cp = printable ? x : next++;
            if (x == b) return char.ConvertFromUtf32(cp);
        }
        throw new ArgumentOutOfRangeException(nameof(b));
    }

    public void Dispose() => Directory.Delete(Dir, recursive: true);
}
