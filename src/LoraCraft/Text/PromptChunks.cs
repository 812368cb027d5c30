using LoraCraft.Text.Embeddings;

namespace LoraCraft.Text;

/// <summary>
/// An embedding's vectors placed in a chunk: from vector <see cref="First"/>, <see cref="Count"/> of
/// them (null: as many as fit) replace the token embeddings from position <see cref="Offset"/> + 1
/// (offsets count from after the start token, as A1111's do).
/// </summary>
public sealed record EmbeddingFix(int Offset, TextualInversion Embedding, int First = 0, int? Count = null)
{
    public string Key => $"{Offset}:{First}:{Count}:{Embedding.Key}";
}

/// <summary>
/// One 77-token piece of a prompt as a text encoder gets it: start token, 75 tokens (text or
/// embedding placeholders 0), end token; one emphasis multiplier per position.
/// </summary>
public sealed record PromptChunk(int[] Tokens, float[] Multipliers, IReadOnlyList<EmbeddingFix> Fixes)
{
    public const int Length = 75;

    /// <summary>A1111's empty chunk (start, then end tokens), which pads a shorter prompt in a batch.</summary>
    public static PromptChunk Empty(ClipTokenizer tokenizer)
    {
        var tokens = new int[Length + 2];
        Array.Fill(tokens, tokenizer.EndId);
        tokens[0] = tokenizer.StartId;
        var multipliers = new float[Length + 2];
        Array.Fill(multipliers, 1f);
        return new PromptChunk(tokens, multipliers, []);
    }

    /// <summary>A key that identifies what the text encoder sees (ids and embeddings placed).</summary>
    public string Key => string.Join(',', Tokens) + "|" + string.Join(',', Fixes.Select(f => f.Key));
}

/// <summary>
/// A1111's `tokenize_line` ("Original" emphasis): each weighted run is tokenized on its own,
/// its tokens join the current chunk with the run's weight; a chunk holds 75 tokens; when a chunk
/// is full and the last comma is at most <see cref="CommaBacktrack"/> tokens back, the tokens after
/// that comma move to the next chunk; `BREAK` closes the chunk; an embedding's name (as tokens)
/// is replaced by its vectors, which never straddle two chunks. The last chunk is padded with the
/// end token.
/// </summary>
public static class A1111Chunker
{
    /// <summary>A1111's `comma_padding_backtrack` default.</summary>
    public const int CommaBacktrack = 20;

    public static IReadOnlyList<PromptChunk> Chunk(string line, ClipTokenizer tokenizer, EmbeddingMatcher? embeddings = null) =>
        Chunk(line, tokenizer, embeddings, out _);

    /// <param name="tokenCount">A1111's token count (its UI's "N/75"): 75 per closed chunk plus the tokens of the last.</param>
    public static IReadOnlyList<PromptChunk> Chunk(string line, ClipTokenizer tokenizer, EmbeddingMatcher? embeddings, out int tokenCount)
    {
        int count = 0;
        var parsed = PromptAttention.Parse(line);
        var chunks = new List<PromptChunk>();
        var tokens = new List<int>();
        var multipliers = new List<float>();
        var fixes = new List<EmbeddingFix>();
        int lastComma = -1;
        int comma = CommaId(tokenizer);

        void NextChunk(bool last = false)
        {
            count += last ? tokens.Count : PromptChunk.Length;
            while (tokens.Count < PromptChunk.Length)
            {
                tokens.Add(tokenizer.EndId);
                multipliers.Add(1f);
            }
            tokens.Insert(0, tokenizer.StartId);
            multipliers.Insert(0, 1f);
            tokens.Add(tokenizer.EndId);
            multipliers.Add(1f);
            chunks.Add(new PromptChunk(tokens.ToArray(), multipliers.ToArray(), fixes.ToArray()));
            tokens.Clear();
            multipliers.Clear();
            fixes.Clear();
            lastComma = -1;
        }

        foreach (var run in parsed)
        {
            if (run.IsBreak)
            {
                NextChunk();
                continue;
            }
            var ids = tokenizer.Encode(run.Text);
            float weight = (float)run.Weight;
            int position = 0;
            while (position < ids.Count)
            {
                int token = ids[position];
                if (token == comma) lastComma = tokens.Count;
                else if (tokens.Count == PromptChunk.Length && lastComma != -1 && tokens.Count - lastComma <= CommaBacktrack)
                {
                    // move what follows the last comma to the next chunk
                    int breakAt = lastComma + 1;
                    var movedTokens = tokens.GetRange(breakAt, tokens.Count - breakAt);
                    var movedMultipliers = multipliers.GetRange(breakAt, multipliers.Count - breakAt);
                    tokens.RemoveRange(breakAt, tokens.Count - breakAt);
                    multipliers.RemoveRange(breakAt, multipliers.Count - breakAt);
                    NextChunk();
                    tokens.AddRange(movedTokens);
                    multipliers.AddRange(movedMultipliers);
                }
                if (tokens.Count == PromptChunk.Length) NextChunk();

                var match = embeddings?.At(ids, position);
                if (match is null)
                {
                    tokens.Add(token);
                    multipliers.Add(weight);
                    position++;
                    continue;
                }
                var (embedding, nameLength) = match.Value;
                int vectors = embedding.Vectors;
                if (tokens.Count + vectors > PromptChunk.Length) NextChunk();
                fixes.Add(new EmbeddingFix(tokens.Count, embedding));
                for (int v = 0; v < vectors; v++)
                {
                    tokens.Add(0);
                    multipliers.Add(weight);
                }
                position += nameLength;
            }
        }
        if (tokens.Count > 0 || chunks.Count == 0) NextChunk(last: true);
        tokenCount = count;
        return chunks;
    }

    /// <summary>The id of `,&lt;/w&gt;` (a lone comma), or -1 when the vocabulary has none.</summary>
    public static int CommaId(ClipTokenizer tokenizer)
    {
        var ids = tokenizer.Encode(",");
        return ids.Count == 1 ? ids[0] : -1;
    }
}
