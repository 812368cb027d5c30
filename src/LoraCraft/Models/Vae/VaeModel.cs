using TorchSharp;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace LoraCraft.Models.Vae;

/// <summary>AutoencoderKL hyper-parameters; `BlockChannels` per level from the highest resolution.</summary>
public sealed record VaeConfig
{
    public required int[] BlockChannels { get; init; }
    public int ResBlocksPerLevel { get; init; } = 2;
    public int LatentChannels { get; init; } = 4;
    public int NormGroups { get; init; } = 32;
    public static VaeConfig Standard => new() { BlockChannels = [128, 256, 512, 512] };
}

public sealed class VaeResnetBlock : Net
{
    readonly GroupNorm _norm1, _norm2;
    readonly Conv2d _conv1, _conv2;
    readonly Conv2d? _shortcut;

    public VaeResnetBlock(int inCh, int outCh, int groups)
    {
        _norm1 = Child("norm1", new GroupNorm(groups, inCh, 1e-6));
        _conv1 = Child("conv1", new Conv2d(inCh, outCh, 3, padding: 1));
        _norm2 = Child("norm2", new GroupNorm(groups, outCh, 1e-6));
        _conv2 = Child("conv2", new Conv2d(outCh, outCh, 3, padding: 1));
        if (inCh != outCh) _shortcut = Child("nin_shortcut", new Conv2d(inCh, outCh, 1));
    }

    /// <summary>Frees each intermediate as soon as it is used: at 512 px a tensor here is 64-128 MB.</summary>
    public Tensor Forward(Tensor x)
    {
        Tensor h;
        using (var n = _norm1.Forward(x)) h = _conv1.Forward(Activations.SiluInPlace(n));
        using (var n = _norm2.Forward(h))
        {
            h.Dispose();
            h = _conv2.Forward(Activations.SiluInPlace(n));
        }
        if (_shortcut is null) return Autograd.AddInPlaceUnlessRecording(h, x);
        using var skip = _shortcut.Forward(x);
        return Autograd.AddInPlaceUnlessRecording(h, skip);
    }
}

/// <summary>Single-head self-attention over pixels; q/k/v/proj are 1x1 convolutions in LDM files.</summary>
public sealed class VaeAttentionBlock : Net
{
    readonly GroupNorm _norm;
    readonly Conv2d _q, _k, _v, _proj;

    public VaeAttentionBlock(int ch, int groups)
    {
        _norm = Child("norm", new GroupNorm(groups, ch, 1e-6));
        _q = Child("q", new Conv2d(ch, ch, 1));
        _k = Child("k", new Conv2d(ch, ch, 1));
        _v = Child("v", new Conv2d(ch, ch, 1));
        _proj = Child("proj_out", new Conv2d(ch, ch, 1));
    }

    public Tensor Forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        var n = _norm.Forward(x);
        var image = Attention.Pixels(_q.Forward(n), _k.Forward(n), _v.Forward(n));
        return x.Add(_proj.Forward(image)).MoveToOuterDisposeScope();
    }
}

/// <summary>LDM's Downsample: pad right and bottom by one, then a stride-2 3x3 convolution.</summary>
public sealed class VaeDownsample : Net
{
    readonly Conv2d _conv;
    public VaeDownsample(int ch) => _conv = Child("conv", new Conv2d(ch, ch, 3, stride: 2));
    public Tensor Forward(Tensor x)
    {
        using var padded = F.pad(x, [0, 1, 0, 1]);
        return _conv.Forward(padded);
    }
}

/// <summary>The middle of encoder and decoder: resnet, attention, resnet.</summary>
public sealed class VaeMid : Net
{
    readonly VaeResnetBlock _block1, _block2;
    readonly VaeAttentionBlock _attn;
    public VaeMid(int ch, int groups)
    {
        _block1 = Child("block_1", new VaeResnetBlock(ch, ch, groups));
        _attn = Child("attn_1", new VaeAttentionBlock(ch, groups));
        _block2 = Child("block_2", new VaeResnetBlock(ch, ch, groups));
    }
    public Tensor Forward(Tensor x)
    {
        using var a = _block1.Forward(x);
        using var b = _attn.Forward(a);
        return _block2.Forward(b);
    }
}

/// <summary>One resolution level: resnet blocks, then an optional resampler.</summary>
public sealed class VaeLevel : Net
{
    readonly NetList<VaeResnetBlock> _blocks;
    readonly Net? _resample;
    public VaeLevel(IEnumerable<VaeResnetBlock> blocks, string? resampleName, Net? resample)
    {
        _blocks = Child("block", new NetList<VaeResnetBlock>());
        foreach (var b in blocks) _blocks.Add(b);
        if (resample is not null) _resample = Child(resampleName!, resample);
    }
    /// <summary>Runs the blocks, freeing each block's input (except the caller's) as soon as it is consumed.</summary>
    public Tensor Forward(Tensor x)
    {
        var h = x;
        foreach (var b in _blocks.Items) h = Step(h, b.Forward(h), x);
        h = _resample switch { VaeDownsample d => Step(h, d.Forward(h), x), Upsample u => Step(h, u.Forward(h), x), _ => h };
        return ReferenceEquals(h, x) ? h.alias() : h;
    }

    static Tensor Step(Tensor previous, Tensor next, Tensor callerOwned)
    {
        if (!ReferenceEquals(previous, callerOwned)) previous.Dispose();
        return next;
    }
}

public sealed class VaeEncoder : Net
{
    readonly Conv2d _convIn, _convOut;
    readonly NetList<VaeLevel> _down;
    readonly VaeMid _mid;
    readonly GroupNorm _normOut;

    public VaeEncoder(VaeConfig c)
    {
        int g = c.NormGroups, levels = c.BlockChannels.Length;
        _convIn = Child("conv_in", new Conv2d(3, c.BlockChannels[0], 3, padding: 1));
        _down = Child("down", new NetList<VaeLevel>());
        int ch = c.BlockChannels[0];
        for (int i = 0; i < levels; i++)
        {
            int outCh = c.BlockChannels[i];
            var blocks = new List<VaeResnetBlock>();
            for (int j = 0; j < c.ResBlocksPerLevel; j++) { blocks.Add(new VaeResnetBlock(ch, outCh, g)); ch = outCh; }
            _down.Add(new VaeLevel(blocks, "downsample", i != levels - 1 ? new VaeDownsample(ch) : null));
        }
        _mid = Child("mid", new VaeMid(ch, g));
        _normOut = Child("norm_out", new GroupNorm(g, ch, 1e-6));
        _convOut = Child("conv_out", new Conv2d(ch, 2 * c.LatentChannels, 3, padding: 1));
    }

    public Tensor Forward(Tensor x)
    {
        var h = _convIn.Forward(x);
        foreach (var level in _down.Items) h = Replace(h, level.Forward(h));
        h = Replace(h, _mid.Forward(h));
        using (h)
        using (var n = _normOut.Forward(h))
            return _convOut.Forward(Activations.SiluInPlace(n));
    }

    internal static Tensor Replace(Tensor old, Tensor next)
    {
        old.Dispose();
        return next;
    }
}

public sealed class VaeDecoder : Net
{
    readonly Conv2d _convIn, _convOut;
    readonly NetList<VaeLevel> _up;
    readonly VaeMid _mid;
    readonly GroupNorm _normOut;

    public VaeDecoder(VaeConfig c)
    {
        int g = c.NormGroups, levels = c.BlockChannels.Length;
        int ch = c.BlockChannels[^1];
        _convIn = Child("conv_in", new Conv2d(c.LatentChannels, ch, 3, padding: 1));
        _mid = Child("mid", new VaeMid(ch, g));
        // LDM numbers decoder levels by resolution (up.0 is the highest) but runs them from the lowest.
        var levelsByIndex = new VaeLevel[levels];
        for (int i = levels - 1; i >= 0; i--)
        {
            int outCh = c.BlockChannels[i];
            var blocks = new List<VaeResnetBlock>();
            for (int j = 0; j <= c.ResBlocksPerLevel; j++) { blocks.Add(new VaeResnetBlock(ch, outCh, g)); ch = outCh; }
            levelsByIndex[i] = new VaeLevel(blocks, "upsample", i != 0 ? new Upsample(ch) : null);
        }
        _up = Child("up", new NetList<VaeLevel>());
        foreach (var l in levelsByIndex) _up.Add(l);
        _normOut = Child("norm_out", new GroupNorm(g, ch, 1e-6));
        _convOut = Child("conv_out", new Conv2d(ch, 3, 3, padding: 1));
    }

    public Tensor Forward(Tensor z)
    {
        var h = _convIn.Forward(z);
        h = VaeEncoder.Replace(h, _mid.Forward(h));
        for (int i = _up.Count - 1; i >= 0; i--) h = VaeEncoder.Replace(h, _up[i].Forward(h));
        using (h)
        using (var n = _normOut.Forward(h))
            return _convOut.Forward(Activations.SiluInPlace(n));
    }
}

/// <summary>AutoencoderKL with LDM names (`encoder.*`, `decoder.*`, `quant_conv`, `post_quant_conv`).</summary>
public sealed class VaeModel : Net
{
    public VaeConfig Config { get; }
    readonly VaeEncoder _encoder;
    readonly VaeDecoder _decoder;
    readonly Conv2d _quant, _postQuant;

    public VaeModel(VaeConfig config)
    {
        Config = config;
        _encoder = Child("encoder", new VaeEncoder(config));
        _decoder = Child("decoder", new VaeDecoder(config));
        _quant = Child("quant_conv", new Conv2d(2 * config.LatentChannels, 2 * config.LatentChannels, 1));
        _postQuant = Child("post_quant_conv", new Conv2d(config.LatentChannels, config.LatentChannels, 1));
    }

    /// <summary>Image in [-1, 1] [B,3,H,W] -> (mean, logvar) of the latent distribution, unscaled.</summary>
    public (Tensor Mean, Tensor LogVar) Encode(Tensor image)
    {
        using var scope = NewDisposeScope();
        var moments = _quant.Forward(_encoder.Forward(image.to(DType, Device))).to(ScalarType.Float32, image.device).contiguous();
        var parts = moments.chunk(2, 1);
        var logvar = parts[1].Clamp(-30.0, 20.0);
        return (parts[0].MoveToOuterDisposeScope(), logvar.MoveToOuterDisposeScope());
    }

    /// <summary>Unscaled latent [B,C,h,w] -> image in about [-1, 1] [B,3,8h,8w], float32.</summary>
    public Tensor Decode(Tensor latent)
    {
        using var scope = NewDisposeScope();
        var z = _postQuant.Forward(latent.to(DType, Device));
        return _decoder.Forward(z).to(ScalarType.Float32, latent.device).contiguous().MoveToOuterDisposeScope();
    }
}
