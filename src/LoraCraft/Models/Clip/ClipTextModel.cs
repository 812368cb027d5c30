using TorchSharp;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace LoraCraft.Models.Clip;

public sealed class ClipAttention : Net
{
    readonly Linear _q, _k, _v, _out;
    readonly int _heads;

    public ClipAttention(int hidden, int heads)
    {
        _heads = heads;
        _k = Child("k_proj", new Linear(hidden, hidden));
        _v = Child("v_proj", new Linear(hidden, hidden));
        _q = Child("q_proj", new Linear(hidden, hidden));
        _out = Child("out_proj", new Linear(hidden, hidden));
    }

    public Tensor Forward(Tensor x, Tensor mask)
    {
        long b = x.shape[0], n = x.shape[1], c = x.shape[2], d = c / _heads;
        using var q = _q.Forward(x).view(b, n, _heads, d).transpose(1, 2);
        using var k = _k.Forward(x).view(b, n, _heads, d).transpose(1, 2);
        using var v = _v.Forward(x).view(b, n, _heads, d).transpose(1, 2);
        using var a = F.scaled_dot_product_attention(q, k, v, attn_mask: mask);
        using var merged = a.transpose(1, 2).reshape(b, n, c);
        return _out.Forward(merged);
    }
}

public sealed class ClipMlp : Net
{
    readonly Linear _fc1, _fc2;
    readonly ClipActivation _act;

    public ClipMlp(int hidden, int intermediate, ClipActivation act)
    {
        _act = act;
        _fc1 = Child("fc1", new Linear(hidden, intermediate));
        _fc2 = Child("fc2", new Linear(intermediate, hidden));
    }

    public Tensor Forward(Tensor x)
    {
        using var h = _fc1.Forward(x);
        using var a = _act == ClipActivation.QuickGelu ? h * torch.sigmoid(h.Mul(1.702)) : F.gelu(h);
        return _fc2.Forward(a);
    }
}

public sealed class ClipEncoderLayer : Net
{
    readonly LayerNorm _norm1, _norm2;
    readonly ClipAttention _attn;
    readonly ClipMlp _mlp;

    public ClipEncoderLayer(ClipTextConfig c)
    {
        _attn = Child("self_attn", new ClipAttention(c.Hidden, c.Heads));
        _norm1 = Child("layer_norm1", new LayerNorm(c.Hidden, c.LayerNormEps));
        _mlp = Child("mlp", new ClipMlp(c.Hidden, c.Intermediate, c.Activation));
        _norm2 = Child("layer_norm2", new LayerNorm(c.Hidden, c.LayerNormEps));
    }

    public Tensor Forward(Tensor x, Tensor mask)
    {
        using var scope = NewDisposeScope();
        var h = x.Add(_attn.Forward(_norm1.Forward(x), mask));
        var y = h.Add(_mlp.Forward(_norm2.Forward(h)));
        return y.MoveToOuterDisposeScope();
    }
}

/// <summary>What a text encoder returns: every hidden state, the final-normed last one, and
/// (with a projection) the pooled embedding at the first end token.</summary>
public sealed record ClipTextOutput(Tensor[] HiddenStates, Tensor LastHiddenState, Tensor? Pooled, Tensor? TextEmbeds) : IDisposable
{
    public void Dispose()
    {
        foreach (var h in HiddenStates) h.Dispose();
        LastHiddenState.Dispose();
        Pooled?.Dispose();
        TextEmbeds?.Dispose();
    }
}

/// <summary>
/// CLIP text transformer with Hugging Face names (`embeddings.*`, `encoder.layers.N.*`,
/// `final_layer_norm`, `text_projection`): causal self-attention, pre-norm layers.
/// OpenCLIP checkpoints are renamed onto it by the loader.
/// </summary>
public sealed class ClipTextModel : Net
{
    public ClipTextConfig Config { get; }
    readonly Embedding _tokens, _positions;
    readonly NetList<ClipEncoderLayer> _layers;
    readonly LayerNorm _finalNorm;
    readonly Linear? _projection;

    public ClipTextModel(ClipTextConfig config)
    {
        Config = config;
        var emb = Child("embeddings", new EmbeddingsNet(config));
        _tokens = emb.Tokens;
        _positions = emb.Positions;
        _layers = Child("encoder", new EncoderNet()).Layers;
        for (int i = 0; i < config.Layers; i++) _layers.Add(new ClipEncoderLayer(config));
        _finalNorm = Child("final_layer_norm", new LayerNorm(config.Hidden, config.LayerNormEps));
        if (config.ProjectionDim > 0) _projection = Child("text_projection", new Linear(config.Hidden, config.ProjectionDim, bias: false));
    }

    /// <summary>The token embeddings of ids [B, T] (before positions are added), in the weights' dtype.</summary>
    public Tensor TokenEmbeddings(Tensor ids) => _tokens.Forward(ids.to(Device));

    /// <summary>
    /// Encodes token ids [B, T]. <paramref name="stopAfterLayers"/> runs only that many layers
    /// (clip skip needs no more), in which case later hidden states are absent.
    /// <paramref name="tokenEmbeddings"/> [B, T, D] replaces the looked-up token embeddings
    /// (textual inversion); the ids still locate the end token for the pooled output.
    /// </summary>
    public ClipTextOutput Forward(Tensor ids, int? stopAfterLayers = null, Tensor? tokenEmbeddings = null)
    {
        using var scope = NewDisposeScope();
        long n = ids.shape[1];
        var wdt = DType;
        var dev = Device;
        ids = ids.to(dev);
        using var positions = TensorMath.Arange(n, ScalarType.Int64, dev);
        var tokens = tokenEmbeddings is null ? _tokens.Forward(ids) : tokenEmbeddings.to(_tokens.Table.dtype, dev);
        var h = tokens.Add(_positions.Forward(positions).unsqueeze(0)).to(wdt);
        // causal mask: -inf above the diagonal (float mask is added to the attention scores)
        var mask = TensorMath.Full([n, n], float.NegativeInfinity, wdt, dev).triu(1);
        var hidden = new List<Tensor> { h };
        int layers = Math.Min(stopAfterLayers ?? Config.Layers, Config.Layers);
        for (int i = 0; i < layers; i++)
        {
            h = _layers[i].Forward(h, mask);
            hidden.Add(h);
        }
        var last = _finalNorm.Forward(h);
        Tensor? pooled = null, textEmbeds = null;
        if (layers == Config.Layers)
        {
            // first end token of each row (transformers: first position equal to eos_token_id)
            var eosPos = ids.EqualTo(Config.EosTokenId).to(ScalarType.Int32).argmax(1);
            pooled = last[TensorMath.Arange(ids.shape[0], device: dev), eosPos];
            if (_projection is not null) textEmbeds = _projection.Forward(pooled);
        }
        var output = new ClipTextOutput(
            hidden.Select(t => t.MoveToOuterDisposeScope()).ToArray(),
            last.MoveToOuterDisposeScope(),
            pooled?.MoveToOuterDisposeScope(),
            textEmbeds?.MoveToOuterDisposeScope());
        return output;
    }



    sealed class EmbeddingsNet : Net
    {
        public Embedding Tokens { get; }
        public Embedding Positions { get; }
        public EmbeddingsNet(ClipTextConfig c)
        {
            Tokens = Child("token_embedding", new Embedding(c.VocabSize, c.Hidden));
            Positions = Child("position_embedding", new Embedding(c.MaxPositions, c.Hidden));
        }
    }

    sealed class EncoderNet : Net
    {
        public NetList<ClipEncoderLayer> Layers { get; }
        public EncoderNet() => Layers = Child("layers", new NetList<ClipEncoderLayer>());
    }
}
