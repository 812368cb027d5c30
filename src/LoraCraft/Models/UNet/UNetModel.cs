using TorchSharp;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace LoraCraft.Models.UNet;

/// <summary>
/// The LDM/SGM UNet ("openaimodel"), with parameter names as in single-file checkpoints under
/// `model.diffusion_model.`: input_blocks / middle_block / output_blocks, each a numbered list of
/// layers (ResBlock, SpatialTransformer, Downsample or Upsample).
/// </summary>
public sealed class UNetModel : Net
{
    public UNetConfig Config { get; }
    /// <summary>Set for training with gradient checkpointing: each numbered layer is rerun in backward.</summary>
    public GradientCheckpointing? Checkpointing { get; set; }
    readonly Linear _time1, _time2;
    readonly Linear? _label1, _label2;
    readonly NetList<NetList<Net>> _input, _output;
    readonly NetList<Net> _middle;
    readonly GroupNorm _outNorm;
    readonly Conv2d _outConv;

    public UNetModel(UNetConfig config)
    {
        Config = config;
        int mc = config.BlockChannels[0], ted = config.TimeEmbedDim, g = config.NormGroups;
        var timeEmbed = Child("time_embed", new NetList<Net>());
        _time1 = (Linear)timeEmbed.Add(new Linear(mc, ted), 0);
        _time2 = (Linear)timeEmbed.Add(new Linear(ted, ted), 2);
        if (config.AdmInChannels > 0)
        {
            var label = Child("label_emb", new NetList<NetList<Net>>()).Add(new NetList<Net>());
            _label1 = (Linear)label.Add(new Linear(config.AdmInChannels, ted), 0);
            _label2 = (Linear)label.Add(new Linear(ted, ted), 2);
        }

        _input = Child("input_blocks", new NetList<NetList<Net>>());
        _input.Add(new NetList<Net>()).Add(new Conv2d(config.InChannels, mc, 3, padding: 1));
        var skipChannels = new List<int> { mc };
        int ch = mc;
        int levels = config.BlockChannels.Length;
        for (int level = 0; level < levels; level++)
        {
            int outCh = config.BlockChannels[level];
            for (int i = 0; i < config.ResBlocksPerLevel; i++)
            {
                var layer = _input.Add(new NetList<Net>());
                layer.Add(new ResBlock(ch, outCh, ted, g));
                ch = outCh;
                if (config.TransformerDepth[level] > 0)
                    layer.Add(Transformer(ch, level, config.TransformerDepth[level]));
                skipChannels.Add(ch);
            }
            if (level != levels - 1)
            {
                _input.Add(new NetList<Net>()).Add(new Downsample(ch));
                skipChannels.Add(ch);
            }
        }

        _middle = Child("middle_block", new NetList<Net>());
        _middle.Add(new ResBlock(ch, ch, ted, g));
        _middle.Add(Transformer(ch, levels - 1, config.MidTransformerDepth));
        _middle.Add(new ResBlock(ch, ch, ted, g));

        _output = Child("output_blocks", new NetList<NetList<Net>>());
        for (int level = levels - 1; level >= 0; level--)
        {
            int outCh = config.BlockChannels[level];
            for (int i = 0; i <= config.ResBlocksPerLevel; i++)
            {
                int skip = skipChannels[^1];
                skipChannels.RemoveAt(skipChannels.Count - 1);
                var layer = _output.Add(new NetList<Net>());
                layer.Add(new ResBlock(ch + skip, outCh, ted, g));
                ch = outCh;
                if (config.TransformerDepth[level] > 0)
                    layer.Add(Transformer(ch, level, config.TransformerDepth[level]));
                if (level != 0 && i == config.ResBlocksPerLevel)
                    layer.Add(new Upsample(ch));
            }
        }

        var outList = Child("out", new NetList<Net>());
        _outNorm = (GroupNorm)outList.Add(new GroupNorm(g, ch, 1e-5), 0);
        _outConv = (Conv2d)outList.Add(new Conv2d(ch, config.OutChannels, 3, padding: 1), 2);
    }

    SpatialTransformer Transformer(int channels, int level, int depth) =>
        new(channels, Config.ContextDim, Config.Heads[level], depth, Config.LinearProjection, Config.NormGroups);

    /// <summary>
    /// Predicts noise (or v) for latent x [B,C,H,W] at float timesteps [B] given the text context
    /// [B,T,D]. SDXL also takes `y` [B, AdmInChannels] (see <see cref="SdxlVector"/>).
    /// </summary>
    public Tensor Forward(Tensor x, Tensor timesteps, Tensor context, Tensor? y = null)
    {
        using var outer = NewDisposeScope();
        var wdt = DType;
        var dev = Device;
        var tEmb = TimestepEmbedding(timesteps, Config.BlockChannels[0]).to(wdt, dev);
        var emb = _time2.Forward(F.silu(_time1.Forward(tEmb)));
        if (_label1 is not null)
        {
            if (y is null) throw new ArgumentException("this UNet needs the SDXL `y` vector (pooled text + time ids)");
            emb = emb.Add(_label2!.Forward(F.silu(_label1.Forward(y.to(wdt, dev)))));
        }
        context = context.to(wdt, dev);
        var h = x.to(wdt, dev);
        if (Loading.Layout.PrefersChannelsLast(wdt)) h = Loading.Layout.ChannelsLast(h);
        var skips = new List<Tensor>();
        foreach (var layer in _input.Items)
        {
            h = RunLayer(layer, h, emb, context);
            skips.Add(h);
        }
        h = RunLayer(_middle, h, emb, context);
        foreach (var layer in _output.Items)
        {
            var skip = skips[^1];
            skips.RemoveAt(skips.Count - 1);
            var cat = torch.cat([h, skip], 1);
            h.Dispose();
            skip.Dispose();
            // an upsampler meets the next skip at its size (odd latent sides round up on the way down)
            long[]? upSize = skips.Count > 0 ? [skips[^1].shape[2], skips[^1].shape[3]] : null;
            h = RunLayer(layer, cat, emb, context, upSize);
            cat.Dispose();
        }
        var result = _outConv.Forward(F.silu(_outNorm.Forward(h))).to(x.dtype, x.device).contiguous();
        return result.MoveToOuterDisposeScope();
    }

    /// <summary>Runs one numbered layer list (checkpointed when set and training).</summary>
    Tensor RunLayer(NetList<Net> layer, Tensor h, Tensor emb, Tensor context, long[]? upsampleSize = null) =>
        Checkpointing is { } c && Autograd.Recording
            ? c.Run(t => RunLayerDirect(layer, t[0], t[1], t[2], upsampleSize), h, emb, context)
            : RunLayerDirect(layer, h, emb, context, upsampleSize);

    /// <summary>Runs one numbered layer list; intermediates die with the inner scope.</summary>
    static Tensor RunLayerDirect(NetList<Net> layer, Tensor h, Tensor emb, Tensor context, long[]? upsampleSize)
    {
        using var scope = NewDisposeScope();
        foreach (var part in layer.Items)
        {
            h = part switch
            {
                ResBlock r => r.Forward(h, emb),
                SpatialTransformer t => t.Forward(h, context),
                Downsample d => d.Forward(h),
                Upsample u => u.Forward(h, upsampleSize),
                Conv2d c => c.Forward(h),
                _ => throw new InvalidOperationException(part.GetType().Name),
            };
        }
        return h.MoveToOuterDisposeScope();
    }

    /// <summary>Sinusoidal embedding, cos half first (LDM's `timestep_embedding`), in float32.</summary>
    public static Tensor TimestepEmbedding(Tensor timesteps, int dim, double maxPeriod = 10000)
    {
        int half = dim / 2;
        using var scope = NewDisposeScope();
        var freqs = exp(TensorMath.Arange(half, ScalarType.Float32).Mul(-Math.Log(maxPeriod)).Div(half)); // LDM's exact order of operations
        var args = timesteps.to(ScalarType.Float32).unsqueeze(1) * freqs.unsqueeze(0);
        var emb = cat([cos(args), sin(args)], 1);
        if (dim % 2 == 1) emb = cat([emb, zeros(emb.shape[0], 1)], 1);
        return emb.MoveToOuterDisposeScope();
    }

    /// <summary>
    /// SDXL's `y`: pooled text embedding [B, P] followed by the sinusoidal embedding of each
    /// size/crop id [B, 6] (original h, w, crop top, left, target h, w).
    /// </summary>
    public Tensor SdxlVector(Tensor pooled, Tensor timeIds)
    {
        using var scope = NewDisposeScope();
        long b = timeIds.shape[0], n = timeIds.shape[1];
        var e = TimestepEmbedding(timeIds.flatten(), Config.AdditionTimeEmbedDim).reshape(b, n * Config.AdditionTimeEmbedDim);
        return cat([pooled.to(ScalarType.Float32), e], 1).MoveToOuterDisposeScope();
    }
}
