using TorchSharp;

namespace LoraCraft.IO;

/// <summary>Element types of the safetensors format, named as in its header.</summary>
public enum SafeDType { F64, F32, F16, BF16, I64, I32, I16, I8, U8, BOOL, F8_E4M3, F8_E5M2 }

public static class SafeDTypes
{
    /// <summary>Bytes per element.</summary>
    public static int Size(SafeDType d) => d switch
    {
        SafeDType.F64 or SafeDType.I64 => 8,
        SafeDType.F32 or SafeDType.I32 => 4,
        SafeDType.F16 or SafeDType.BF16 or SafeDType.I16 => 2,
        SafeDType.I8 or SafeDType.U8 or SafeDType.BOOL or SafeDType.F8_E4M3 or SafeDType.F8_E5M2 => 1,
        _ => throw new ArgumentOutOfRangeException(nameof(d), d, null),
    };

    /// <summary>The header's name of <paramref name="d"/> ("F16", "BF16", "F8_E4M3", ...).</summary>
    public static string Name(SafeDType d) => d switch
    {
        >= SafeDType.F64 and <= SafeDType.F8_E5M2 => d.ToString(),
        _ => throw new ArgumentOutOfRangeException(nameof(d), d, null),
    };

    /// <summary>Parses a header dtype name, case-sensitively as the format requires.</summary>
    public static SafeDType Parse(string s) =>
        TryParse(s, out var d) ? d : throw new FormatException($"unknown safetensors dtype '{s}' (known: {string.Join(", ", Enum.GetNames<SafeDType>())})");

    // Not Enum.TryParse: it would also accept "1", "f16" or "F16, BF16". A table, not a loop over
    // Enum.ToString: headers are parsed by the thousand when a LoRA folder is listed.
    static readonly Dictionary<string, SafeDType> ByName = Enum.GetValues<SafeDType>().ToDictionary(v => v.ToString(), StringComparer.Ordinal);

    internal static bool TryParse(string s, out SafeDType d) => ByName.TryGetValue(s, out d);

    public static SafeDType? FromTorch(torch.ScalarType t) => t switch
    {
        torch.ScalarType.Float64 => SafeDType.F64,
        torch.ScalarType.Float32 => SafeDType.F32,
        torch.ScalarType.Float16 => SafeDType.F16,
        torch.ScalarType.BFloat16 => SafeDType.BF16,
        torch.ScalarType.Int64 => SafeDType.I64,
        torch.ScalarType.Int32 => SafeDType.I32,
        torch.ScalarType.Int16 => SafeDType.I16,
        torch.ScalarType.Int8 => SafeDType.I8,
        torch.ScalarType.Byte => SafeDType.U8,
        torch.ScalarType.Bool => SafeDType.BOOL,
        _ => null,
    };

    /// <summary>The torch type storing <paramref name="d"/> as is; null for the float8 types, which TorchSharp 0.107 lacks.</summary>
    public static torch.ScalarType? ToTorch(SafeDType d) => d switch
    {
        SafeDType.F64 => torch.ScalarType.Float64,
        SafeDType.F32 => torch.ScalarType.Float32,
        SafeDType.F16 => torch.ScalarType.Float16,
        SafeDType.BF16 => torch.ScalarType.BFloat16,
        SafeDType.I64 => torch.ScalarType.Int64,
        SafeDType.I32 => torch.ScalarType.Int32,
        SafeDType.I16 => torch.ScalarType.Int16,
        SafeDType.I8 => torch.ScalarType.Int8,
        SafeDType.U8 => torch.ScalarType.Byte,
        SafeDType.BOOL => torch.ScalarType.Bool,
        _ => null,
    };
}

/// <summary>
/// Decodes the two float8 formats through 256-entry tables. E4M3 is the "fn" variant torch and
/// safetensors use: no infinities, NaN only at S.1111.111. E5M2 is the top byte of an IEEE half.
/// </summary>
internal static class Float8
{
    static readonly float[] E4M3 = Table(DecodeE4M3);
    static readonly float[] E5M2 = Table(b => (float)BitConverter.UInt16BitsToHalf((ushort)(b << 8)));

    static float[] Table(Func<byte, float> decode) => Enumerable.Range(0, 256).Select(b => decode((byte)b)).ToArray();

    static float DecodeE4M3(byte b)
    {
        int exponent = (b >> 3) & 0xF, mantissa = b & 0x7;
        float sign = (b & 0x80) != 0 ? -1f : 1f;
        if (exponent == 0xF && mantissa == 0x7) return float.NaN;
        return exponent == 0
            ? sign * mantissa / 8f * MathF.Pow(2, -6)
            : sign * (1 + mantissa / 8f) * MathF.Pow(2, exponent - 7);
    }

    public static void Decode(SafeDType type, ReadOnlySpan<byte> source, Span<float> destination)
    {
        var table = type switch
        {
            SafeDType.F8_E4M3 => E4M3,
            SafeDType.F8_E5M2 => E5M2,
            _ => throw new ArgumentOutOfRangeException(nameof(type), type, "not a float8 type"),
        };
        for (int i = 0; i < source.Length; i++) destination[i] = table[source[i]];
    }
}
