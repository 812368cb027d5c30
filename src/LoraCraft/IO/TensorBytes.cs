using TorchSharp;

namespace LoraCraft.IO;

/// <summary>
/// Raw access to a contiguous CPU tensor's memory. TorchSharp exposes it only as a Span, which
/// stops at 2 GiB, so larger tensors are visited through flat views of at most one chunk each.
/// </summary>
internal static class TensorBytes
{
    public delegate void ChunkAction(Span<byte> chunk, long byteOffset);

    const long DefaultChunkBytes = 1L << 30;

    public static void Visit(torch.Tensor tensor, ChunkAction action, long chunkBytes = DefaultChunkBytes)
    {
        long elementSize = tensor.ElementSize, count = tensor.NumberOfElements;
        if (count * elementSize <= chunkBytes)
        {
            action(tensor.bytes, 0);
            return;
        }
        long perChunk = Math.Max(1, chunkBytes / elementSize);
        using var flat = tensor.view(-1);
        for (long start = 0; start < count; start += perChunk)
        {
            using var part = flat.narrow(0, start, Math.Min(perChunk, count - start));
            action(part.bytes, start * elementSize);
        }
    }
}
