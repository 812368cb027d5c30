using LoraCraft.Models;
using LoraCraft.Text.Embeddings;
using TorchSharp;
using static TorchSharp.torch;

namespace LoraCraft.Text;

/// <summary>
/// A1111's text conditioning (`FrozenCLIPEmbedderWithCustomWords.forward`, "Original" emphasis):
/// each text is cut into 75-token chunks (<see cref="A1111Chunker"/>), the texts encoded
/// together are padded with empty chunks to the same count, each chunk is encoded, multiplied
/// by its tokens' emphasis and rescaled so the mean over the batch's chunk is unchanged, and
/// the chunks are concatenated. SD2's and SDXL encoder 2's chunks get id 0 after their first
/// end token. SDXL: each encoder does this on its own; the pooled output is encoder 2's first chunk.
/// </summary>
public static class A1111PromptEncoder
{
    /// <summary>
    /// The conditioning of each text, encoded as one A1111 batch (the emphasis rescale spans the
    /// batch: A1111 encodes the texts of a prompt's schedule together). Equal texts share one result.
    /// The caller owns (and disposes) the results.
    /// </summary>
    public static IReadOnlyList<Conditioning> EncodeBatch(ChunkEncoder encoder, IReadOnlyList<string> texts, EmbeddingSet? embeddings = null)
    {
        if (texts.Count == 0) return [];
        embeddings ??= EmbeddingSet.Empty;
        using var noGrad = torch.no_grad();
        using var scope = NewDisposeScope();
        var model = encoder.Model;
        int slots = encoder.Slots;
        var distinct = texts.Distinct(StringComparer.Ordinal).ToList();
        var count = distinct.ToDictionary(t => t, t => texts.Count(x => x == t), StringComparer.Ordinal);

        // per slot, per distinct text: its chunks
        var chunks = new List<List<IReadOnlyList<PromptChunk>>>();
        for (int s = 0; s < slots; s++)
        {
            var slot = encoder.Slot(s);
            var matcher = embeddings.Count == 0 ? null : embeddings.MatcherFor(slot.Tokenizer);
            chunks.Add(distinct.Select(t => A1111Chunker.Chunk(t, slot.Tokenizer, matcher)).ToList());
        }
        int chunkCount = chunks.Max(perSlot => perSlot.Max(c => c.Count));

        // per distinct text, per slot: the encoded chunks in order
        var zs = distinct.Select(_ => Enumerable.Range(0, slots).Select(_ => new List<Tensor>()).ToList()).ToList();
        Tensor?[] pooled = new Tensor?[distinct.Count];
        for (int s = 0; s < slots; s++)
        {
            var slot = encoder.Slot(s);
            var empty = PromptChunk.Empty(slot.Tokenizer);
            for (int i = 0; i < chunkCount; i++)
            {
                var rows = new List<(Tensor Z, float[] Multipliers)>();
                for (int t = 0; t < distinct.Count; t++)
                {
                    var chunk = i < chunks[s][t].Count ? chunks[s][t][i] : empty;
                    var (z, p) = encoder.Encode(s, WithPad(chunk.Tokens, slot), chunk.Fixes);
                    rows.Add((z, chunk.Multipliers));
                    if (i == 0 && p is not null) pooled[t] = p;
                }
                var emphasized = Emphasis(rows, distinct.Select(t => count[t]).ToList());
                for (int t = 0; t < distinct.Count; t++) zs[t][s].Add(emphasized[t]);
            }
        }

        var byText = new Dictionary<string, Conditioning>(StringComparer.Ordinal);
        for (int t = 0; t < distinct.Count; t++)
        {
            var perSlot = zs[t].Select(list => list.Count == 1 ? list[0] : torch.cat(list, 1)).ToList();
            var context = perSlot.Count == 1 ? perSlot[0] : torch.cat(perSlot, -1);
            byText[distinct[t]] = new Conditioning(context.clone().DetachFromDisposeScope(), pooled[t]?.clone().DetachFromDisposeScope());
        }
        return texts.Select(t => byText[t]).ToList();
    }

    /// <summary>One text on its own.</summary>
    public static Conditioning Encode(ChunkEncoder encoder, string text, EmbeddingSet? embeddings = null) => EncodeBatch(encoder, [text], embeddings)[0];

    /// <summary>A1111's `process_tokens`: where the pad id differs from the end token, every position after the first end token becomes the pad id.</summary>
    static int[] WithPad(int[] tokens, TextEncoderSlot slot)
    {
        int end = slot.Tokenizer.EndId;
        if (slot.PadId == end) return tokens;
        int first = Array.IndexOf(tokens, end);
        if (first < 0) return tokens;
        var padded = (int[])tokens.Clone();
        for (int i = first + 1; i < padded.Length; i++) padded[i] = slot.PadId;
        return padded;
    }

    /// <summary>
    /// "Original" emphasis on one chunk position of a batch: z × multiplier per token, then the
    /// whole batch rescaled by mean(z) / mean(z × multipliers). Rows stand for <paramref name="counts"/>
    /// copies each (A1111 encodes repeated schedule texts more than once). All multipliers 1: unchanged.
    /// </summary>
    static List<Tensor> Emphasis(List<(Tensor Z, float[] Multipliers)> rows, List<int> counts)
    {
        if (rows.All(r => r.Multipliers.All(m => m == 1f))) return rows.Select(r => r.Z).ToList();
        var z = torch.cat(rows.SelectMany((r, i) => Enumerable.Repeat(r.Z, counts[i])).ToList(), 0);
        var m = torch.tensor(rows.SelectMany((r, i) => Enumerable.Repeat(r.Multipliers, counts[i]).SelectMany(x => x)).ToArray())
            .reshape(z.shape[0], z.shape[1], 1);
        var originalMean = z.mean();
        var weighted = z * m;
        var newMean = weighted.mean();
        var scaled = weighted * (originalMean / newMean);
        var result = new List<Tensor>();
        long at = 0;
        for (int i = 0; i < rows.Count; i++)
        {
            result.Add(scaled[TensorIndex.Slice(at, at + 1)]);
            at += counts[i];
        }
        return result;
    }
}
