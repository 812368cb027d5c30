using LoraCraft.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace LoraCraft.Text;

/// <summary>What a prompt becomes for the UNet: the context sequence and, for SDXL, the pooled embedding.</summary>
public sealed record Conditioning(Tensor Context, Tensor? Pooled) : IDisposable
{
    public void Dispose()
    {
        Context.Dispose();
        Pooled?.Dispose();
    }
}

/// <summary>
/// A plain prompt -> conditioning, as diffusers/transformers encode it: no prompt syntax, cut to
/// 75 tokens, one 77-token chunk per text encoder (<see cref="ChunkEncoder"/> holds the family
/// rules). Generations use <see cref="PromptConditioning"/> (A1111's or ComfyUI's language);
/// for a plain prompt of up to 75 tokens both give exactly this.
/// </summary>
public static class TextConditioner
{
    public const int MaxTokens = 77;

    public static Conditioning Encode(StableDiffusionModel model, string prompt, int clipSkip = 1)
    {
        using var encoder = new ChunkEncoder(model, clipSkip);
        using var scope = NewDisposeScope();
        var parts = new List<Tensor>();
        Tensor? pooled = null;
        for (int s = 0; s < encoder.Slots; s++)
        {
            var slot = encoder.Slot(s);
            var (z, p) = encoder.Encode(s, slot.Tokenizer.EncodeForModel(prompt, MaxTokens, slot.PadId), []);
            parts.Add(z);
            pooled ??= p;
        }
        var context = parts.Count == 1 ? parts[0].clone() : torch.cat(parts, -1);
        return new Conditioning(context.DetachFromDisposeScope(), pooled?.clone().DetachFromDisposeScope());
    }
}
