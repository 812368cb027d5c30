using TorchSharp;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace LoraCraft.Models.UNet;

/// <summary>ResBlock: two 3x3 convolutions with the time embedding added in between.</summary>
public sealed class ResBlock : Net
{
    readonly GroupNorm _inNorm, _outNorm;
    readonly Conv2d _inConv, _outConv;
    readonly Linear _emb;
    readonly Conv2d? _skip;

    public ResBlock(int channels, int outChannels, int embDim, int groups)
    {
        var inLayers = Child("in_layers", new NetList<Net>());
        _inNorm = (GroupNorm)inLayers.Add(new GroupNorm(groups, channels, 1e-5), 0);
        _inConv = (Conv2d)inLayers.Add(new Conv2d(channels, outChannels, 3, padding: 1), 2);
        _emb = (Linear)Child("emb_layers", new NetList<Net>()).Add(new Linear(embDim, outChannels), 1);
        var outLayers = Child("out_layers", new NetList<Net>());
        _outNorm = (GroupNorm)outLayers.Add(new GroupNorm(groups, outChannels, 1e-5), 0);
        _outConv = (Conv2d)outLayers.Add(new Conv2d(outChannels, outChannels, 3, padding: 1), 3);
        if (channels != outChannels) _skip = Child("skip_connection", new Conv2d(channels, outChannels, 1));
    }

    public Tensor Forward(Tensor x, Tensor emb)
    {
        using var h1 = _inConv.Forward(F.silu(_inNorm.Forward(x)));
        using var e = _emb.Forward(F.silu(emb));
        using var h2 = h1.Add(e.unsqueeze(-1).unsqueeze(-1));
        using var h3 = _outConv.Forward(F.silu(_outNorm.Forward(h2)));
        return _skip is null ? x.Add(h3) : Autograd.AddInPlaceUnlessRecording(_skip.Forward(x), h3);
    }
}

/// <summary>Multi-head attention; self-attention when no context is given.</summary>
public sealed class CrossAttention : Net
{
    readonly Linear _q, _k, _v, _out;
    readonly int _heads;

    public CrossAttention(int queryDim, int contextDim, int heads)
    {
        _heads = heads;
        _q = Child("to_q", new Linear(queryDim, queryDim, bias: false));
        _k = Child("to_k", new Linear(contextDim, queryDim, bias: false));
        _v = Child("to_v", new Linear(contextDim, queryDim, bias: false));
        _out = (Linear)Child("to_out", new NetList<Net>()).Add(new Linear(queryDim, queryDim), 0);
    }

    public Tensor Forward(Tensor x, Tensor? context = null)
    {
        var ctx = context ?? x;
        using var q = _q.Forward(x);
        using var k = _k.Forward(ctx);
        using var v = _v.Forward(ctx);
        using var merged = Attention.Tokens(q, k, v, _heads);
        return _out.Forward(merged);
    }
}

/// <summary>Feed-forward with a GEGLU gate (ff.net.0.proj) and an output projection (ff.net.2).</summary>
public sealed class FeedForward : Net
{
    readonly Linear _proj, _outProj;

    public FeedForward(int dim, int mult = 4)
    {
        var net = Child("net", new NetList<Net>());
        var geglu = net.Add(new Geglu(dim, dim * mult), 0);
        _proj = ((Geglu)geglu).Proj;
        _outProj = (Linear)net.Add(new Linear(dim * mult, dim), 2);
    }

    public Tensor Forward(Tensor x)
    {
        using var hg = _proj.Forward(x);
        var parts = hg.chunk(2, -1);
        using var h = parts[0];
        using var gate = parts[1];
        using var g = F.gelu(gate);
        using var prod = h * g;
        return _outProj.Forward(prod);
    }

    sealed class Geglu : Net
    {
        public Linear Proj { get; }
        public Geglu(int dim, int inner) => Proj = Child("proj", new Linear(dim, inner * 2));
    }
}

/// <summary>Self-attention, cross-attention on the text, feed-forward; each pre-normed and residual.</summary>
public sealed class BasicTransformerBlock : Net
{
    readonly LayerNorm _norm1, _norm2, _norm3;
    readonly CrossAttention _attn1, _attn2;
    readonly FeedForward _ff;

    public BasicTransformerBlock(int dim, int contextDim, int heads)
    {
        _attn1 = Child("attn1", new CrossAttention(dim, dim, heads));
        _ff = Child("ff", new FeedForward(dim));
        _attn2 = Child("attn2", new CrossAttention(dim, contextDim, heads));
        _norm1 = Child("norm1", new LayerNorm(dim));
        _norm2 = Child("norm2", new LayerNorm(dim));
        _norm3 = Child("norm3", new LayerNorm(dim));
    }

    public Tensor Forward(Tensor x, Tensor context)
    {
        using (var n = _norm1.Forward(x)) using (var a = _attn1.Forward(n)) x = x.Add(a);
        using (var n = _norm2.Forward(x)) using (var a = _attn2.Forward(n, context)) x = Autograd.AddInPlaceUnlessRecording(x, a);
        using (var n = _norm3.Forward(x)) using (var f = _ff.Forward(n)) x = Autograd.AddInPlaceUnlessRecording(x, f);
        return x;
    }
}

/// <summary>SpatialTransformer: group norm, project to tokens, transformer blocks, project back, residual.</summary>
public sealed class SpatialTransformer : Net
{
    readonly GroupNorm _norm;
    readonly Net _projIn, _projOut;
    readonly NetList<BasicTransformerBlock> _blocks;
    readonly bool _linear;

    public SpatialTransformer(int channels, int contextDim, int heads, int depth, bool linearProjection, int groups)
    {
        _linear = linearProjection;
        _norm = Child("norm", new GroupNorm(groups, channels, 1e-6));
        _projIn = Child<Net>("proj_in", linearProjection ? new Linear(channels, channels) : new Conv2d(channels, channels, 1));
        _blocks = Child("transformer_blocks", new NetList<BasicTransformerBlock>());
        for (int i = 0; i < depth; i++) _blocks.Add(new BasicTransformerBlock(channels, contextDim, heads));
        _projOut = Child<Net>("proj_out", linearProjection ? new Linear(channels, channels) : new Conv2d(channels, channels, 1));
    }

    public Tensor Forward(Tensor x, Tensor context)
    {
        long b = x.shape[0], c = x.shape[1], h = x.shape[2], w = x.shape[3];
        using var normed = _norm.Forward(x);
        Tensor tokens;
        if (_linear)
        {
            using var flat = normed.permute(0, 2, 3, 1).reshape(b, h * w, c);
            tokens = ((Linear)_projIn).Forward(flat);
        }
        else
        {
            using var projected = ((Conv2d)_projIn).Forward(normed);
            tokens = projected.permute(0, 2, 3, 1).reshape(b, h * w, c);
        }
        foreach (var block in _blocks.Items)
        {
            var next = block.Forward(tokens, context);
            if (!ReferenceEquals(next, tokens)) tokens.Dispose();
            tokens = next;
        }
        Tensor result;
        if (_linear)
        {
            using var projected = ((Linear)_projOut).Forward(tokens);
            using var image = projected.reshape(b, h, w, c).permute(0, 3, 1, 2);
            result = image.Add(x);
        }
        else
        {
            using var image = tokens.reshape(b, h, w, c).permute(0, 3, 1, 2);
            using var projected = ((Conv2d)_projOut).Forward(image);
            result = projected.Add(x);
        }
        tokens.Dispose();
        return result;
    }
}

public sealed class Downsample : Net
{
    readonly Conv2d _op;
    public Downsample(int channels) => _op = Child("op", new Conv2d(channels, channels, 3, stride: 2, padding: 1));
    public Tensor Forward(Tensor x) => _op.Forward(x);
}
