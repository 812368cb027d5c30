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
/// Prompt -> conditioning per family: SD1 the last layer after the final norm (clip skip N: the
/// N-th layer from the end, then the final norm); SD2 the same on an encoder whose last layer
/// was dropped at load (its penultimate layer); SDXL the penultimate states of both encoders,
/// without final norm, concatenated, plus encoder 2's projected pooled output.
/// </summary>
public static class TextConditioner
{
    public const int MaxTokens = 77;

    public static Conditioning Encode(StableDiffusionModel model, string prompt, int clipSkip = 1)
    {
        if (clipSkip < 1) throw new UserErrorException($"clip skip must be 1 or more, got {clipSkip}");
        // no torch.no_grad() here: callers decide (generation runs under it, training may not)
        using var scope = NewDisposeScope();
        if (model.Family != ModelFamily.Sdxl)
        {
            var slot = model.TextEncoders[0];
            int layers = slot.Model.Config.Layers;
            if (clipSkip > layers) throw new UserErrorException($"clip skip {clipSkip} exceeds the text encoder's {layers} layers");
            using var ids = Ids(slot, prompt);
            using var output = slot.Model.Forward(ids, stopAfterLayers: layers - (clipSkip - 1));
            var context = output.LastHiddenState.to(ScalarType.Float32, CPU);
            return new Conditioning(context.MoveToOuterDisposeScope(), null);
        }

        var enc1 = model.TextEncoders[0];
        var enc2 = model.TextEncoders[1];
        using var ids1 = Ids(enc1, prompt);
        using var ids2 = Ids(enc2, prompt);
        using var out1 = enc1.Model.Forward(ids1);
        using var out2 = enc2.Model.Forward(ids2);
        int back = Math.Max(2, clipSkip);
        var ctx = torch.cat([out1.HiddenStates[^back].to(ScalarType.Float32, CPU), out2.HiddenStates[^back].to(ScalarType.Float32, CPU)], -1);
        var pooled = out2.TextEmbeds!.to(ScalarType.Float32, CPU);
        return new Conditioning(ctx.MoveToOuterDisposeScope(), pooled.MoveToOuterDisposeScope());
    }

    static Tensor Ids(TextEncoderSlot slot, string prompt)
    {
        var ids = slot.Tokenizer.EncodeForModel(prompt, MaxTokens, slot.PadId);
        return torch.tensor(ids.Select(i => (long)i).ToArray(), ScalarType.Int64).unsqueeze(0);
    }
}
