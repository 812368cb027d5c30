namespace LoraCraft.IO;

/// <summary>One header entry. Begin and End are offsets into the data section, as in the JSON.</summary>
public sealed record SafeTensorInfo(string Name, SafeDType DType, long[] Shape, long Begin, long End)
{
    public long ByteLength => End - Begin;

    // Computed rather than stored so that a `with` copy with a new Shape stays consistent.
    public long ElementCount => Shape.Aggregate(1L, (n, d) => checked(n * d));
}
