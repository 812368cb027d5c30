using LoraCraft.Models;
using LoraCraft.Text.Embeddings;
using TorchSharp;
using static TorchSharp.torch;

namespace LoraCraft.Text;

/// <summary>
/// Runs a model's text encoders on 77-token chunks, per family: SD1 the last layer after the
/// final norm (clip skip N: the N-th layer from the end, then the final norm); SD2 the same on an
/// encoder whose last layer was dropped at load (its penultimate layer); SDXL the penultimate
/// states of each encoder, without final norm, and encoder 2's projected pooled output at the
/// first end token. Embedding vectors are placed after the start token at their offsets. Each distinct chunk runs once per encoder: results are cached for the life of this
/// object (one generation), which owns them.
/// </summary>
public sealed class ChunkEncoder : IDisposable
{
    readonly StableDiffusionModel _model;
    readonly int _clipSkip;
    readonly Dictionary<string, (Tensor Z, Tensor? Pooled)> _cache = new();

    public ChunkEncoder(StableDiffusionModel model, int clipSkip)
    {
        if (clipSkip < 1) throw new UserErrorException($"clip skip must be 1 or more, got {clipSkip}");
        if (model.Family != ModelFamily.Sdxl && clipSkip > model.TextEncoders[0].Model.Config.Layers)
            throw new UserErrorException($"clip skip {clipSkip} exceeds the text encoder's {model.TextEncoders[0].Model.Config.Layers} layers");
        _model = model;
        _clipSkip = clipSkip;
    }

    public StableDiffusionModel Model => _model;
    public int Slots => _model.TextEncoders.Count;
    public TextEncoderSlot Slot(int slot) => _model.TextEncoders[slot];
    /// <summary>How many chunk forwards actually ran (the rest came from the cache).</summary>
    public int Forwards { get; private set; }

    /// <summary>
    /// The encoder output of one chunk, float32 [1, 77, width] (and for SDXL's second encoder the
    /// pooled [1, P]); owned by this encoder, do not dispose.
    /// </summary>
    public (Tensor Z, Tensor? Pooled) Encode(int slot, int[] ids, IReadOnlyList<EmbeddingFix> fixes)
    {
        string key = $"{slot}|{string.Join(',', ids)}|{string.Join(',', fixes.Select(f => f.Key))}";
        if (_cache.TryGetValue(key, out var hit)) return hit;
        var result = Run(slot, ids, fixes);
        _cache[key] = result;
        Forwards++;
        return result;
    }

    (Tensor Z, Tensor? Pooled) Run(int slot, int[] ids, IReadOnlyList<EmbeddingFix> fixes)
    {
        using var noGrad = torch.no_grad();
        using var scope = NewDisposeScope();
        var encoder = _model.TextEncoders[slot].Model;
        var idTensor = torch.tensor(ids.Select(i => (long)i).ToArray(), ScalarType.Int64).unsqueeze(0);
        var embeds = fixes.Count == 0 ? null : TokenEmbeddings(slot, encoder, idTensor, fixes);
        if (_model.Family != ModelFamily.Sdxl)
        {
            int layers = encoder.Config.Layers;
            using var output = encoder.Forward(idTensor, stopAfterLayers: layers - (_clipSkip - 1), tokenEmbeddings: embeds);
            var z = output.LastHiddenState.to(ScalarType.Float32, CPU);
            return (Own(z), null);
        }
        using var o = encoder.Forward(idTensor, tokenEmbeddings: embeds);
        int back = Math.Max(2, _clipSkip);
        if (back > o.HiddenStates.Length - 1)
            throw new UserErrorException($"clip skip {_clipSkip} exceeds the text encoder's {o.HiddenStates.Length - 1} layers");
        var zx = o.HiddenStates[^back].to(ScalarType.Float32, CPU);
        var pooled = slot == 1 ? o.TextEmbeds!.to(ScalarType.Float32, CPU) : null;
        return (Own(zx), pooled is null ? null : Own(pooled));
    }

    /// <summary>A tensor the cache owns: out of every dispose scope, and never one the encoder's output also holds.</summary>
    static Tensor Own(Tensor t) => t.alias().DetachFromDisposeScope();

    /// <summary>A1111's EmbeddingsWithFixes: the vectors replace the token embeddings after the start token at each offset.</summary>
    Tensor TokenEmbeddings(int slot, Models.Clip.ClipTextModel encoder, Tensor ids, IReadOnlyList<EmbeddingFix> fixes)
    {
        var embeds = encoder.TokenEmbeddings(ids).clone();
        string key = TextualInversion.EncoderKey(_model, slot);
        int width = encoder.Config.Hidden;
        long length = ids.shape[1];
        foreach (var fix in fixes)
        {
            using var vectors = fix.Embedding.Load(key, width);
            long available = vectors.shape[0] - fix.First;
            long count = Math.Min(length - fix.Offset - 1, fix.Count is int c ? Math.Min(c, available) : available);
            if (count <= 0) continue;
            using var slice = vectors[TensorIndex.Slice(fix.First, fix.First + count)].to(embeds.dtype, embeds.device);
            embeds[TensorIndex.Single(0), TensorIndex.Slice(fix.Offset + 1, fix.Offset + 1 + count)] = slice;
        }
        return embeds;
    }

    public void Dispose()
    {
        foreach (var (z, pooled) in _cache.Values)
        {
            z.Dispose();
            pooled?.Dispose();
        }
        _cache.Clear();
    }
}
