using LoraCraft.Models;
using LoraCraft.Text;
using TorchSharp;
using static TorchSharp.torch;

namespace LoraCraft.Training;

/// <summary>
/// Captions -> UNet conditioning as kohya's training scripts compute it, with gradients when the
/// text encoder is trained. `--max_token_length` 150/225: the padded ids are cut into 75-token
/// chunks, each with its own start/end token, encoded as separate rows and joined back (start
/// state, every chunk's inner states, last state). SD1/SD2: the layer `clip skip` from the end,
/// then the final norm; SDXL: both encoders' penultimate states and encoder 2's pooled output of
/// the first chunk.
/// </summary>
public static class CaptionEncoder
{
    public static readonly int[] MaxTokenLengths = [75, 150, 225];

    public static (Tensor Context, Tensor? Pooled) Encode(StableDiffusionModel model, IReadOnlyList<string> captions, int clipSkip, int maxTokenLength)
    {
        if (!MaxTokenLengths.Contains(maxTokenLength))
            throw new UserErrorException($"the max token length must be 75, 150 or 225, got {maxTokenLength}");
        using var scope = NewDisposeScope();
        if (model.Family != ModelFamily.Sdxl)
        {
            var slot = model.TextEncoders[0];
            int layers = slot.Model.Config.Layers;
            if (clipSkip < 1 || clipSkip > layers) throw new UserErrorException($"clip skip must be in 1..{layers}, got {clipSkip}");
            var ids = Ids(slot, captions, maxTokenLength);
            using var output = slot.Model.Forward(ids, stopAfterLayers: layers - (clipSkip - 1));
            var states = Join(output.LastHiddenState, captions.Count, maxTokenLength);
            return (states.MoveToOuterDisposeScope(), null);
        }
        var enc1 = model.TextEncoders[0];
        var enc2 = model.TextEncoders[1];
        var ids1 = Ids(enc1, captions, maxTokenLength);
        var ids2 = Ids(enc2, captions, maxTokenLength);
        using var out1 = enc1.Model.Forward(ids1);
        using var out2 = enc2.Model.Forward(ids2);
        var h1 = Join(out1.HiddenStates[^2], captions.Count, maxTokenLength);
        var h2 = Join(out2.HiddenStates[^2], captions.Count, maxTokenLength);
        var context = torch.cat([h1, h2], -1);
        int chunks = maxTokenLength / 75;
        var pooled = out2.TextEmbeds!.view(captions.Count, chunks, -1)[.., 0];
        return (context.MoveToOuterDisposeScope(), pooled.MoveToOuterDisposeScope());
    }

    /// <summary>Ids [B * chunks, 77] (kohya's `get_input_ids`).</summary>
    internal static Tensor Ids(TextEncoderSlot slot, IReadOnlyList<string> captions, int maxTokenLength)
    {
        var tok = slot.Tokenizer;
        int rowLength = maxTokenLength + 2, chunks = maxTokenLength / 75;
        var all = new List<long>();
        foreach (var caption in captions)
        {
            var row = tok.EncodeForModel(caption, rowLength, slot.PadId);
            if (chunks == 1) { all.AddRange(row.Select(i => (long)i)); continue; }
            for (int c = 0; c < chunks; c++)
            {
                var chunk = new int[77];
                chunk[0] = row[0];
                Array.Copy(row, 1 + c * 75, chunk, 1, 75);
                chunk[76] = row[^1];
                if (slot.PadId != tok.EndId)
                {
                    // SD2/SDXL: a chunk cut inside the text ends with the end token; an empty one starts with it
                    if (chunk[75] != tok.EndId && chunk[75] != slot.PadId) chunk[76] = tok.EndId;
                    if (chunk[1] == slot.PadId) chunk[1] = tok.EndId;
                }
                all.AddRange(chunk.Select(i => (long)i));
            }
        }
        return torch.tensor(all.ToArray(), [captions.Count * chunks, 77]);
    }

    /// <summary>States [B * chunks, 77, D] -> [B, 2 + 75 * chunks, D] (kohya's `get_hidden_states`).</summary>
    static Tensor Join(Tensor states, int batch, int maxTokenLength)
    {
        int chunks = maxTokenLength / 75;
        if (chunks == 1) return states.alias();
        var rows = states.view(batch, chunks * 77, -1);
        var parts = new List<Tensor> { rows[.., 0..1] };
        for (int c = 0; c < chunks; c++) parts.Add(rows[.., (1 + c * 77)..(76 + c * 77)]);
        parts.Add(rows[.., ^1..]);
        return torch.cat(parts.ToArray(), 1);
    }
}
