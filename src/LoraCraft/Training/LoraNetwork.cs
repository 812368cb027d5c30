using System.Globalization;
using LoraCraft.IO;
using LoraCraft.Lora;
using LoraCraft.Models;
using LoraCraft.Models.Clip;
using LoraCraft.Models.UNet;
using TorchSharp;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace LoraCraft.Training;

/// <summary>kohya's `networks.lora` settings (`--network_dim`, `--network_alpha`, conv_dim/conv_alpha, dropouts).</summary>
public sealed record LoraNetworkOptions
{
    public int Dim { get; init; } = 4;
    public double Alpha { get; init; } = 1;
    /// <summary>Rank of the 3x3 convolutions of ResNet blocks and resamplers (LoCon); null leaves them out.</summary>
    public int? ConvDim { get; init; }
    public double ConvAlpha { get; init; } = 1;
    /// <summary>Neuron dropout on the down projection's output (`--network_dropout`).</summary>
    public double Dropout { get; init; }
    /// <summary>Drops whole ranks and rescales by 1/(1-p) (`rank_dropout` network argument).</summary>
    public double RankDropout { get; init; }
    /// <summary>Skips a whole module at random (`module_dropout` network argument).</summary>
    public double ModuleDropout { get; init; }
    public bool TrainUNet { get; init; } = true;
    public bool TrainTextEncoder { get; init; } = true;
}

/// <summary>
/// One trained low-rank branch on a frozen Linear or Conv2d, kohya's LoRAModule:
/// y = layer(x) + up(down(x)) * multiplier * alpha / rank. down has the layer's kernel, stride and
/// padding, up is 1x1. Factors are float32 parameters; in a bf16 model they are cast per call so
/// the branch runs in the model's dtype and gradients arrive in float32.
/// </summary>
public sealed class TrainableLora : ILayerAdapter
{
    readonly LoraNetwork _network;

    internal TrainableLora(LoraNetwork network, string key, LoraComponent component, AdaptableLayer layer, int rank, double alpha, Generator init)
    {
        _network = network;
        Key = key;
        Component = component;
        Layer = layer;
        Rank = rank;
        // kohya: alpha 0 or absent means alpha = rank
        Alpha = alpha == 0 ? rank : alpha;
        long[] w = layer.WeightSlot.Shape;
        long fanIn = w[1..].Aggregate(1L, (a, b) => a * b);
        long[] downShape = [rank, .. w[1..]];
        long[] upShape = w.Length == 4 ? [w[0], rank, 1, 1] : [w[0], rank];
        // kaiming_uniform_(a = sqrt 5): U(-b, b) with b = gain * sqrt(3 / fan_in) = 1 / sqrt(fan_in)
        double bound = 1 / Math.Sqrt(fanIn);
        using (torch.no_grad())
        {
            Down = torch.rand(downShape, generator: init).Mul(2 * bound).Sub(bound).DetachFromDisposeScope();
            Up = torch.zeros(upShape).DetachFromDisposeScope();
        }
        Down.requires_grad_(true);
        Up.requires_grad_(true);
    }

    /// <summary>kohya's module name, e.g. lora_unet_down_blocks_0_attentions_0_proj_in.</summary>
    public string Key { get; }
    public LoraComponent Component { get; }
    public AdaptableLayer Layer { get; }
    public int Rank { get; }
    public double Alpha { get; }
    public double Scale => Alpha / Rank;
    public Tensor Down { get; private set; }
    public Tensor Up { get; private set; }
    public bool IsConv => Layer is Conv2d;

    public Tensor Apply(AdaptableLayer layer, Tensor input, Tensor output)
    {
        if (!_network.Enabled) return output;
        bool training = _network.Training;
        var random = _network.Random;
        using var scope = NewDisposeScope();
        if (training && _network.Options.ModuleDropout > 0 && random is not null
            && torch.rand(1, generator: random).item<float>() < _network.Options.ModuleDropout)
            return output;
        var dtype = input.dtype;
        Tensor lx;
        if (Layer is Conv2d conv)
        {
            // bf16 convolutions run channels-last like the base layer's weight: libtorch's bf16 weight
            // gradient for a plain-layout kernel on mixed-layout inputs came out NaN
            var down = Down.to(dtype);
            if (Models.Loading.Layout.PrefersChannelsLast(dtype)) { down = Models.Loading.Layout.ChannelsLast(down); input = Models.Loading.Layout.ChannelsLast(input); }
            lx = F.conv2d(input, down, strides: [conv.Stride, conv.Stride], padding: [conv.Padding, conv.Padding]);
        }
        else
            lx = F.linear(input, Down.to(dtype));
        double scale = Scale * _network.Multiplier;
        if (training && random is not null)
        {
            double p = _network.Options.Dropout;
            if (p > 0)
            {
                var keep = torch.rand(lx.shape, generator: random).GreaterOrEqual(p).to(dtype, lx.device);
                lx = (lx * keep).Mul(1 / (1 - p));
            }
            double rp = _network.Options.RankDropout;
            if (rp > 0)
            {
                var mask = torch.rand([lx.shape[0], Rank], generator: random).Greater(rp).to(dtype, lx.device);
                mask = lx.dim() == 3 ? mask.unsqueeze(1) : lx.dim() == 4 ? mask.unsqueeze(-1).unsqueeze(-1) : mask;
                lx = lx * mask;
                scale /= 1 - rp;
            }
        }
        var up = Up.to(dtype);
        if (Layer is Conv2d && Models.Loading.Layout.PrefersChannelsLast(dtype)) up = Models.Loading.Layout.ChannelsLast(up);
        var ly = Layer is Conv2d ? F.conv2d(lx, up) : F.linear(lx, up);
        return output.Add(ly.Mul(scale)).MoveToOuterDisposeScope();
    }

    /// <summary>Replaces the factors' values (resume); shapes must match.</summary>
    internal void Load(Tensor down, Tensor up)
    {
        using var noGrad = torch.no_grad();
        Down.copy_(down);
        Up.copy_(up);
    }

    internal void Dispose()
    {
        Down.Dispose();
        Up.Dispose();
    }
}

/// <summary>
/// kohya's `networks.lora` LoRANetwork on a loaded model: which layers get a trainable branch
/// (text encoder attention and MLP linears; every linear and 1x1 conv inside the UNet's
/// transformers; with a conv rank also ResNet blocks and resamplers), attached through the
/// layers' adapter slot so the base weights stay frozen and are never copied, and saved under
/// the kohya key names A1111 and ComfyUI read.
/// </summary>
public sealed class LoraNetwork : IDisposable
{
    readonly List<TrainableLora> _modules = new();

    public LoraNetworkOptions Options { get; }
    public ModelFamily Family { get; }
    public IReadOnlyList<TrainableLora> Modules => _modules;
    /// <summary>Dropout is active only while training (off while sampling).</summary>
    public bool Training { get; set; } = true;
    /// <summary>False detaches the branches' effect without removing them (not used while training).</summary>
    public bool Enabled { get; set; } = true;
    public double Multiplier { get; set; } = 1;
    /// <summary>The generator dropout draws from; the trainer sets one per step.</summary>
    public Generator? Random { get; set; }

    LoraNetwork(LoraNetworkOptions options, ModelFamily family)
    {
        Options = options;
        Family = family;
    }

    /// <summary>Builds the branches (kohya's init, from <paramref name="seed"/>) and attaches them to the model's layers.</summary>
    public static LoraNetwork Attach(StableDiffusionModel model, LoraNetworkOptions options, ulong seed)
    {
        if (options.Dim < 1) throw new UserErrorException($"the network dim (rank) must be 1 or more, got {options.Dim}");
        if (options.ConvDim is < 1) throw new UserErrorException($"the conv dim must be 1 or more, got {options.ConvDim}");
        foreach (var (name, p) in new[] { ("network dropout", options.Dropout), ("rank dropout", options.RankDropout), ("module dropout", options.ModuleDropout) })
            if (p is < 0 or >= 1 || double.IsNaN(p)) throw new UserErrorException($"{name} must be in [0, 1), got {p}");
        if (!options.TrainUNet && !options.TrainTextEncoder) throw new UserErrorException("nothing to train: both the UNet and the text encoder are left out");

        var network = new LoraNetwork(options, model.Family);
        var keys = new Dictionary<Weight, (string KohyaKey, LoraComponent Component)>(ReferenceEqualityComparer.Instance);
        foreach (var l in new LoraTargets(model).Layers) keys[l.Target.Weight] = (l.KohyaKey, l.Target.Component);
        using var init = new Generator(seed);
        var chosen = new List<(AdaptableLayer Layer, bool Conv3x3)>();
        if (options.TrainTextEncoder)
            foreach (var slot in model.TextEncoders)
                chosen.AddRange(TextEncoderLayers(slot.Model));
        if (options.TrainUNet) chosen.AddRange(UNetLayers(model.UNet, options.ConvDim is not null));
        foreach (var (layer, conv3x3) in chosen)
        {
            if (!keys.TryGetValue(layer.WeightSlot, out var key))
                throw new InvalidOperationException("a LoRA target has no kohya name");
            int rank = conv3x3 ? options.ConvDim!.Value : options.Dim;
            double alpha = conv3x3 ? options.ConvAlpha : options.Alpha;
            var module = new TrainableLora(network, key.KohyaKey, key.Component, layer, rank, alpha, init);
            network._modules.Add(module);
            (layer.Adapters ??= new()).Add(module);
        }
        return network;
    }

    /// <summary>Linears of every CLIP attention and MLP (kohya: CLIPAttention, CLIPMLP).</summary>
    static IEnumerable<(AdaptableLayer, bool)> TextEncoderLayers(ClipTextModel model) =>
        model.Modules().Where(m => m.Net is ClipAttention or ClipMlp)
            .SelectMany(m => m.Net.Modules().Select(c => c.Net).OfType<Linear>())
            .Select(l => ((AdaptableLayer)l, false));

    /// <summary>
    /// Every Linear and 1x1 Conv2d in the transformers (kohya: Transformer2DModel); with a conv rank
    /// also ResNet blocks, down- and upsamplers, whose 3x3 convolutions take the conv rank.
    /// </summary>
    static IEnumerable<(AdaptableLayer, bool)> UNetLayers(UNetModel unet, bool withConv)
    {
        var seen = new HashSet<AdaptableLayer>(ReferenceEqualityComparer.Instance);
        foreach (var (_, net) in unet.Modules())
        {
            bool target = net is SpatialTransformer || withConv && net is ResBlock or Downsample or Upsample;
            if (!target) continue;
            foreach (var (_, child) in net.Modules())
            {
                if (child is not AdaptableLayer layer || !seen.Add(layer)) continue;
                bool is1x1 = layer is Linear || layer.WeightSlot.Shape is [_, _, 1, 1];
                if (is1x1) yield return (layer, false);
                else if (withConv) yield return (layer, true);
            }
        }
    }

    /// <summary>Trainable tensors of one component group, in module order.</summary>
    public IEnumerable<Tensor> Parameters(bool textEncoder) =>
        _modules.Where(m => (m.Component != LoraComponent.UNet) == textEncoder).SelectMany(m => new[] { m.Down, m.Up });

    public long ParameterCount => _modules.Sum(m => m.Down.numel() + m.Up.numel());

    /// <summary>
    /// The kohya file's tensors, sorted by name as safetensors writers order them:
    /// `KEY.alpha` (scalar), `KEY.lora_down.weight`, `KEY.lora_up.weight`.
    /// </summary>
    public List<KeyValuePair<string, Tensor>> StateDict(ScalarType dtype)
    {
        var list = new List<KeyValuePair<string, Tensor>>();
        using var noGrad = torch.no_grad();
        foreach (var m in _modules)
        {
            list.Add(new(m.Key + ".alpha", torch.tensor((float)m.Alpha).to(dtype)));
            list.Add(new(m.Key + ".lora_down.weight", m.Down.detach().to(dtype).contiguous()));
            list.Add(new(m.Key + ".lora_up.weight", m.Up.detach().to(dtype).contiguous()));
        }
        list.Sort((a, b) => string.CompareOrdinal(a.Key, b.Key));
        return list;
    }

    /// <summary>Writes the LoRA (temp file, then rename) with the given metadata.</summary>
    public void Save(string path, ScalarType dtype, IReadOnlyDictionary<string, string> metadata)
    {
        var tensors = StateDict(dtype);
        try { SafetensorsWriter.Write(path, tensors, metadata); }
        finally { foreach (var t in tensors) t.Value.Dispose(); }
    }

    /// <summary>
    /// sha256 of the tensors' bytes in file order — what kohya calls the model hash
    /// (`sshs_model_hash`, A1111's "addnet" hash of the data section; `modelspec.hash_sha256`).
    /// </summary>
    public static string DataSha256(IEnumerable<KeyValuePair<string, Tensor>> tensors)
    {
        using var sha = System.Security.Cryptography.IncrementalHash.CreateHash(System.Security.Cryptography.HashAlgorithmName.SHA256);
        foreach (var (_, t) in tensors)
        {
            using var c = t.contiguous();
            TensorBytes.Visit(c, (chunk, _) => sha.AppendData(chunk));
        }
        return Convert.ToHexStringLower(sha.GetHashAndReset());
    }

    /// <summary>Loads factors saved by <see cref="StateDict"/> (resume); every module must be present.</summary>
    public void LoadFactors(IReadOnlyDictionary<string, Tensor> tensors)
    {
        foreach (var m in _modules)
        {
            if (!tensors.TryGetValue(m.Key + ".lora_down.weight", out var down) || !tensors.TryGetValue(m.Key + ".lora_up.weight", out var up))
                throw new UserErrorException($"the saved state has no factors for {m.Key}: it was made with other network settings");
            if (!down.shape.SequenceEqual(m.Down.shape) || !up.shape.SequenceEqual(m.Up.shape))
                throw new UserErrorException($"the saved state's {m.Key} has rank {down.shape[0]}, this run {m.Rank}: it was made with other network settings");
            m.Load(down, up);
        }
    }

    /// <summary>kohya's `ss_network_args` JSON: conv and dropout arguments, values as strings.</summary>
    public string NetworkArgsJson()
    {
        var inv = CultureInfo.InvariantCulture;
        var args = new Dictionary<string, string>();
        if (Options.ConvDim is { } cd)
        {
            args["conv_dim"] = cd.ToString(inv);
            args["conv_alpha"] = Options.ConvAlpha.ToString("R", inv);
        }
        if (Options.RankDropout > 0) args["rank_dropout"] = Options.RankDropout.ToString("R", inv);
        if (Options.ModuleDropout > 0) args["module_dropout"] = Options.ModuleDropout.ToString("R", inv);
        return System.Text.Json.JsonSerializer.Serialize(args);
    }

    /// <summary>Detaches every branch from its layer and frees the factors.</summary>
    public void Dispose()
    {
        foreach (var m in _modules)
        {
            m.Layer.Adapters?.Remove(m);
            if (m.Layer.Adapters is { Count: 0 }) m.Layer.Adapters = null;
            m.Dispose();
        }
        _modules.Clear();
    }
}
