using System.Text;
using System.Text.Encodings.Web;
using System.Text.Json;
using System.Text.Json.Nodes;
using LoraCraft.Text;

namespace LoraCraft.Models.Random;

/// <summary>
/// A CLIP tokenizer with no merges, for tiny random models: every UTF-8 byte is a token. The
/// vocabulary is CLIP's own first 512 entries (the 256 byte symbols, then the same with
/// <c>&lt;/w&gt;</c>), then the start and end tokens, so ids 0..511 mean what they mean in CLIP.
/// </summary>
public static class ByteLevelTokenizer
{
    public const int VocabSize = 514;
    public const int StartId = 512;
    public const int EndId = 513;

    /// <summary>The tokens by id. CLIP orders byte symbols by code point (printable bytes first).</summary>
    public static IReadOnlyList<string> Tokens()
    {
        var symbols = Enumerable.Range(0, 256).Select(b => ClipTokenizer.ByteSymbol((byte)b).ToString()).Order(StringComparer.Ordinal).ToList();
        return [.. symbols, .. symbols.Select(s => s + "</w>"), ClipTokenizer.StartToken, ClipTokenizer.EndToken];
    }

    /// <summary>
    /// Writes <c>vocab.json</c>, a <c>merges.txt</c> holding only its version line, and a
    /// transformers <c>tokenizer_config.json</c> into <paramref name="dir"/>.
    /// </summary>
    public static void Write(string dir, string padToken)
    {
        Directory.CreateDirectory(dir);
        var vocab = new JsonObject();
        var tokens = Tokens();
        for (int id = 0; id < tokens.Count; id++) vocab[tokens[id]] = id;
        var relaxed = new JsonSerializerOptions { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping };
        File.WriteAllText(Path.Combine(dir, "vocab.json"), vocab.ToJsonString(relaxed), new UTF8Encoding(false));
        File.WriteAllText(Path.Combine(dir, "merges.txt"), "#version: 0.2\n", new UTF8Encoding(false));
        var config = new JsonObject
        {
            ["bos_token"] = ClipTokenizer.StartToken,
            ["eos_token"] = ClipTokenizer.EndToken,
            ["model_max_length"] = TextConditioner.MaxTokens,
            ["pad_token"] = padToken,
            ["tokenizer_class"] = "CLIPTokenizer",
            ["unk_token"] = ClipTokenizer.EndToken,
        };
        File.WriteAllText(Path.Combine(dir, "tokenizer_config.json"), config.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
    }
}
