using System.Globalization;
using System.Text;
using System.Text.RegularExpressions;
using LoraCraft.Models;
using LoraCraft.Text.Embeddings;
using TorchSharp;
using static TorchSharp.torch;

namespace LoraCraft.Text;

/// <summary>
/// ComfyUI's CLIPTextEncode (`comfy/sd1_clip.py`): `\(` `\)` are protected, then each top-level
/// `( … )` group multiplies the weight by 1.1 and `(text:w)` sets it to w (the last `:` of the
/// group, when a number follows); `[ ]` means nothing. Each weighted piece is split at
/// `embedding:NAME` (after whitespace) and tokenized; a piece shorter than 8 tokens is never split
/// across 77-token chunks. If any weight is not 1, an empty sequence is encoded too and each
/// weighted token becomes (z − z_empty) · w + z_empty; no mean rescale. Chunks are concatenated,
/// pooled from the first. An `embedding:NAME` that is not found is dropped, as ComfyUI does, and
/// reported in <see cref="ComfyEncoding.Missing"/>.
/// </summary>
public static partial class ComfyPromptEncoder
{
    public const int MaxWordLength = 8;
    const string Identifier = "embedding:";

    /// <summary>One position of a chunk: a token id, or vector <see cref="Vector"/> of an embedding.</summary>
    public readonly record struct Item(int Token, TextualInversion? Embedding, int Vector, double Weight);

    [GeneratedRegex(@"(?<=\s)embedding:")]
    private static partial Regex EmbeddingSplitRx();

    [GeneratedRegex(@"[<\[]")]
    private static partial Regex NameEndRx();

    /// <summary>ComfyUI's `token_weights`: (text, weight) pieces.</summary>
    public static IReadOnlyList<(string Text, double Weight)> ParseWeights(string text)
    {
        var result = new List<(string, double)>();
        TokenWeights(Escape(text), 1.0, result);
        return result.Select(r => (Unescape(r.Item1), r.Item2)).ToList();
    }

    static string Escape(string text) => text.Replace("\\)", "\0\u0001").Replace("\\(", "\0\u0002");
    static string Unescape(string text) => text.Replace("\0\u0001", ")").Replace("\0\u0002", "(");

    static void TokenWeights(string s, double current, List<(string, double)> output)
    {
        foreach (var x in ParseParentheses(s))
        {
            if (x.Length >= 2 && x[^1] == ')' && x[0] == '(')
            {
                string inner = x[1..^1];
                int colon = inner.LastIndexOf(':');
                double weight = current * 1.1;
                if (colon > 0 && PythonFloat(inner[(colon + 1)..]) is double w)
                {
                    weight = w;
                    inner = inner[..colon];
                }
                TokenWeights(inner, weight, output);
            }
            else output.Add((x, current));
        }
    }

    /// <summary>ComfyUI's `parse_parentheses`: the string cut into top-level groups and the text between them.</summary>
    static List<string> ParseParentheses(string s)
    {
        var result = new List<string>();
        var item = new StringBuilder();
        int nesting = 0;
        foreach (char c in s)
        {
            if (c == '(')
            {
                if (nesting == 0)
                {
                    if (item.Length > 0) result.Add(item.ToString());
                    item.Clear().Append('(');
                }
                else item.Append(c);
                nesting++;
            }
            else if (c == ')')
            {
                nesting--;
                if (nesting == 0)
                {
                    result.Add(item.Append(')').ToString());
                    item.Clear();
                }
                else item.Append(c);
            }
            else item.Append(c);
        }
        if (item.Length > 0) result.Add(item.ToString());
        return result;
    }

    /// <summary>Python's float() of a string: surrounding whitespace, inf/nan, underscores between digits.</summary>
    static double? PythonFloat(string s)
    {
        s = s.Trim();
        string lower = s.ToLowerInvariant().TrimStart('+', '-');
        bool negative = s.StartsWith('-');
        if (lower is "inf" or "infinity" && s.Length - lower.Length <= 1) return negative ? double.NegativeInfinity : double.PositiveInfinity;
        if (lower == "nan" && s.Length - lower.Length <= 1) return double.NaN;
        if (s.Contains('_'))
        {
            if (!Regex.IsMatch(s, @"^[+-]?(\d(_?\d)*)?(\.(\d(_?\d)*)?)?([eE][+-]?\d(_?\d)*)?$")) return null;
            s = s.Replace("_", "");
        }
        if (s.Length == 0 || s.Any(c => char.IsLetter(c) && c is not ('e' or 'E'))) return null;
        return double.TryParse(s, NumberStyles.Float, CultureInfo.InvariantCulture, out double v) ? v : null;
    }

    /// <summary>ComfyUI's `tokenize_with_weights` for one tokenizer: the chunks, 77 items each.</summary>
    public static IReadOnlyList<Item[]> Tokenize(string text, ClipTokenizer tokenizer, int padId, EmbeddingSet? embeddings, List<string>? missing = null)
    {
        var groups = new List<List<Item>>();
        foreach (var (segment, weight) in ParseWeights(text))
        {
            var split = EmbeddingSplitRx().Split(segment);
            var words = new List<string> { split[0] };
            for (int i = 1; i < split.Length; i++) words.Add(Identifier + split[i]);
            foreach (var w in words.Where(w => w.Length > 0))
            {
                string word = w;
                if (word.StartsWith(Identifier, StringComparison.Ordinal) && embeddings is not null)
                {
                    var (embedding, name, leftover) = FindEmbedding(word[Identifier.Length..].Trim('\n'), embeddings);
                    if (embedding is null) missing?.Add(name);
                    else groups.Add(Enumerable.Range(0, embedding.Vectors).Select(v => new Item(0, embedding, v, weight)).ToList());
                    if (leftover.Length == 0) continue;
                    word = leftover;
                }
                groups.Add(tokenizer.Encode(word).Select(t => new Item(t, null, 0, weight)).ToList());
            }
        }

        var start = new Item(tokenizer.StartId, null, 0, 1.0);
        var end = new Item(tokenizer.EndId, null, 0, 1.0);
        var pad = new Item(padId, null, 0, 1.0);
        const int max = PromptChunk.Length + 2;
        var chunks = new List<List<Item>>();
        var batch = new List<Item> { start };
        chunks.Add(batch);
        foreach (var g in groups)
        {
            var group = g;
            bool large = group.Count >= MaxWordLength;
            while (group.Count > 0)
            {
                if (group.Count + batch.Count > max - 1)
                {
                    int remaining = max - batch.Count - 1;
                    if (large)
                    {
                        batch.AddRange(group.Take(remaining));
                        batch.Add(end);
                        group = group.Skip(remaining).ToList();
                    }
                    else
                    {
                        batch.Add(end);
                        batch.AddRange(Enumerable.Repeat(pad, remaining));
                    }
                    batch = new List<Item> { start };
                    chunks.Add(batch);
                }
                else
                {
                    batch.AddRange(group);
                    group = [];
                }
            }
        }
        batch.Add(end);
        if (batch.Count < max) batch.AddRange(Enumerable.Repeat(pad, max - batch.Count));
        return chunks.Select(c => c.ToArray()).ToList();
    }

    /// <summary>ComfyUI's `_try_get_embedding`: the name ends at whitespace, `&lt;` or `[`; trailing commas are tried off.</summary>
    static (TextualInversion? Embedding, string Name, string Leftover) FindEmbedding(string text, EmbeddingSet embeddings)
    {
        var parts = text.Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries);
        if (parts.Length == 0) return (null, "", "");
        string name = parts[0];
        string leftover = string.Join(' ', parts.Skip(1));
        var m = NameEndRx().Match(name);
        if (m.Success)
        {
            leftover = name[m.Index..] + (leftover.Length > 0 ? " " + leftover : "");
            name = name[..m.Index];
        }
        var found = name.Length > 0 ? embeddings.Find(name) : null;
        if (found is null)
        {
            string stripped = name.Trim(',');
            if (stripped.Length < name.Length)
                return (stripped.Length > 0 ? embeddings.Find(stripped) : null, name, $"{name[stripped.Length..]} {leftover}");
        }
        return (found, name, leftover);
    }

    /// <summary>The conditioning of <paramref name="text"/> with ComfyUI's weighting.</summary>
    public static ComfyEncoding Encode(ChunkEncoder encoder, string text, EmbeddingSet? embeddings = null)
    {
        using var noGrad = torch.no_grad();
        using var scope = NewDisposeScope();
        var missing = new List<string>();
        var perSlot = new List<Tensor>();
        Tensor? pooled = null;
        for (int s = 0; s < encoder.Slots; s++)
        {
            var slot = encoder.Slot(s);
            var chunks = Tokenize(text, slot.Tokenizer, slot.PadId, embeddings, s == 0 ? missing : null);
            bool weighted = chunks.Any(c => c.Any(i => i.Weight != 1.0));
            Tensor? zEmpty = null;
            if (weighted)
            {
                var empty = new int[PromptChunk.Length + 2];
                Array.Fill(empty, slot.PadId);
                empty[0] = slot.Tokenizer.StartId;
                empty[1] = slot.Tokenizer.EndId;
                zEmpty = encoder.Encode(s, empty, []).Z;
            }
            var zs = new List<Tensor>();
            for (int k = 0; k < chunks.Count; k++)
            {
                var (ids, fixes) = Layout(chunks[k]);
                var (z, p) = encoder.Encode(s, ids, fixes);
                if (k == 0 && p is not null) pooled = p;
                if (weighted) z = Weigh(z, zEmpty!, chunks[k]);
                zs.Add(z);
            }
            perSlot.Add(zs.Count == 1 ? zs[0] : torch.cat(zs, 1));
        }
        long cut = perSlot.Min(t => t.shape[1]);
        var context = perSlot.Count == 1 ? perSlot[0] : torch.cat(perSlot.Select(t => t[.., ..(int)cut]).ToList(), -1);
        return new ComfyEncoding(new Conditioning(context.clone().DetachFromDisposeScope(), pooled?.clone().DetachFromDisposeScope()), missing);
    }

    /// <summary>Token ids (0 where an embedding's vectors go) and the embedding runs as fixes.</summary>
    static (int[] Ids, List<EmbeddingFix> Fixes) Layout(Item[] chunk)
    {
        var ids = chunk.Select(i => i.Embedding is null ? i.Token : 0).ToArray();
        var fixes = new List<EmbeddingFix>();
        for (int p = 0; p < chunk.Length; p++)
        {
            if (chunk[p].Embedding is not { } e) continue;
            int first = chunk[p].Vector, q = p;
            while (q + 1 < chunk.Length && chunk[q + 1].Embedding == e && chunk[q + 1].Vector == chunk[q].Vector + 1) q++;
            fixes.Add(new EmbeddingFix(p - 1, e, first, q - p + 1));
            p = q;
        }
        return (ids, fixes);
    }

    /// <summary>z[j] = (z[j] − z_empty[j]) · w + z_empty[j] for each weighted position j.</summary>
    static Tensor Weigh(Tensor z, Tensor zEmpty, Item[] chunk)
    {
        var result = z.clone();
        for (int j = 0; j < chunk.Length; j++)
        {
            double w = chunk[j].Weight;
            if (w == 1.0) continue;
            using var row = z[0, j];
            using var e = zEmpty[0, j];
            using var diff = row - e;
            using var weighted = diff.Mul(w).Add(e);
            result[0, j] = weighted;
        }
        return result;
    }
}

/// <summary>A ComfyUI-style encoding and the `embedding:` names it did not find (ComfyUI drops them with a warning).</summary>
public sealed record ComfyEncoding(Conditioning Conditioning, IReadOnlyList<string> Missing);
