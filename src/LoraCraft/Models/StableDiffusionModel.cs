using LoraCraft.Models.Clip;
using LoraCraft.Models.UNet;
using LoraCraft.Models.Vae;
using LoraCraft.Text;
using static TorchSharp.torch;

namespace LoraCraft.Models;

/// <summary>One text encoder with the tokenizer and pad id it is used with.</summary>
public sealed record TextEncoderSlot(ClipTextModel Model, ClipTokenizer Tokenizer, int PadId);

/// <summary>
/// A loaded checkpoint: UNet, VAE and one (SD1/SD2) or two (SDXL) text encoders, in one compute
/// dtype, plus what the pipeline needs to know about the family.
/// </summary>
public sealed class StableDiffusionModel : IDisposable
{
    public required string SourcePath { get; init; }
    public required ModelFamily Family { get; init; }
    public required bool Inpainting { get; init; }
    public required Prediction Prediction { get; init; }
    public required UNetModel UNet { get; init; }
    public required VaeModel Vae { get; init; }
    public required IReadOnlyList<TextEncoderSlot> TextEncoders { get; init; }
    /// <summary>The mapped checkpoint files, kept open so patched weights can be re-read exactly.</summary>
    public IReadOnlyList<IDisposable> Files { get; init; } = [];
    public double LatentScale => Family.LatentScale();
    public ScalarType DType => UNet.DType;

    /// <summary>UNet, VAE and text encoders.</summary>
    public IEnumerable<Net> Nets => [UNet, Vae, .. TextEncoders.Select(t => t.Model)];

    /// <summary>Bytes the loaded weights take.</summary>
    public long WeightBytes => Nets.SelectMany(n => n.Weights()).Sum(w => w.Weight.Value is { } t ? t.numel() * t.ElementSize : 0);

    public void Dispose()
    {
        foreach (var net in Nets)
            foreach (var (_, w) in net.Weights())
            {
                w.Value?.Dispose();
                w.Value = null;
                w.Reload = null;
                w.ReloadStored = null;
            }
        foreach (var f in Files) f.Dispose();
    }
}
