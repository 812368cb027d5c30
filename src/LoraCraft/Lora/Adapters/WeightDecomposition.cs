using static TorchSharp.torch;

namespace LoraCraft.Lora.Adapters;

/// <summary>
/// DoRA's weight decomposition: the merged weight rescaled so that each column (or row) has the
/// magnitude stored in `dora_scale`. Two conventions exist in files: per input column
/// (kohya, the DoRA paper; magnitude shaped [1, in, ...]) and per output row (LyCORIS
/// `wd_on_out`, peft's `lora_magnitude_vector`; [out, 1, ...]). The shape says which, as in A1111:
/// [out, 1, ...] is per output row even for square weights; a plain vector is per output row only
/// when its length is the output width and not the input width. The norm is taken of the merged
/// weight W + ΔW in both cases, without an epsilon (A1111).
/// </summary>
public static class WeightDecomposition
{
    public static Tensor Apply(Tensor merged, Tensor magnitude)
    {
        using var scope = NewDisposeScope();
        if (merged.dim() < 2) return merged.clone().MoveToOuterDisposeScope(); // norms: nothing to decompose
        long outDim = merged.shape[0];
        long inDim = merged.dim() >= 2 ? merged.shape[1] : -1;
        var m = magnitude.to(ScalarType.Float32, merged.device);
        var ones = Enumerable.Repeat(1L, (int)merged.dim() - 1).ToArray();
        Tensor norm;
        if (PerOutput(m, outDim, inDim))
            norm = merged.reshape(outDim, -1).norm(1, keepdim: true).reshape([outDim, .. ones]);
        else
            norm = merged.transpose(0, 1).reshape(inDim, -1).norm(1, keepdim: true).reshape([inDim, .. ones]).transpose(0, 1);
        return (merged * (m.reshape(norm.shape) / norm)).MoveToOuterDisposeScope();
    }

    /// <summary>Whether <paramref name="magnitude"/> holds one value per output row.</summary>
    public static bool PerOutput(Tensor magnitude, long outDim, long inDim) => magnitude.dim() >= 2
        ? magnitude.shape[0] == outDim && magnitude.shape.Skip(1).All(d => d == 1)
        : magnitude.shape[0] == outDim && magnitude.shape[0] != inDim;
}
