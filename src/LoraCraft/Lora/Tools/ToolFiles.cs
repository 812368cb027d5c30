using LoraCraft.IO;

namespace LoraCraft.Lora.Tools;

/// <summary>Checks the LoRA tools share: where they may write, and output dtypes by name.</summary>
public static class ToolFiles
{
    /// <summary>
    /// Refuses an output that is not a .safetensors file, is one of the inputs, or exists (unless
    /// <paramref name="force"/>). Files are written to a temporary file and renamed, so a refused
    /// or failed run never leaves a half-written output.
    /// </summary>
    public static void CheckOutput(string output, bool force, params string[] inputs)
    {
        if (!output.EndsWith(".safetensors", StringComparison.OrdinalIgnoreCase))
            throw new UserErrorException($"the output must be a .safetensors file, got '{output}'");
        var full = Path.GetFullPath(output);
        if (inputs.Any(i => string.Equals(Path.GetFullPath(i), full, StringComparison.Ordinal)))
            throw new UserErrorException($"the output {output} is one of the inputs; write to another file");
        if (File.Exists(full) && !force)
            throw new UserErrorException($"{output} exists (force overwrites it)");
        if (Path.GetDirectoryName(full) is { } dir && !Directory.Exists(dir))
            throw new UserErrorException($"the folder of {output} does not exist");
    }

    /// <summary>`fp16`, `bf16`, `fp32` (null: keep each tensor's stored type).</summary>
    public static SafeDType? ParseDType(string? name) => name switch
    {
        null => null,
        "fp16" or "float16" => SafeDType.F16,
        "bf16" or "bfloat16" => SafeDType.BF16,
        "fp32" or "float32" or "float" => SafeDType.F32,
        _ => throw new UserErrorException($"dtype must be fp16, bf16 or fp32, got '{name}'"),
    };

    public static bool IsFloat(SafeDType t) => t is SafeDType.F16 or SafeDType.BF16 or SafeDType.F32 or SafeDType.F64;
}
