namespace LoraCraft.Server.Tools;

// The LoRA tools' requests (POST /api/v1/lora/tools/…, snake_case JSON). Inputs are names in the
// LoRA folder (`lora`, `loras[].name`) or the checkpoints folder (`model`, `base`, `tuned`);
// `output` is a plain file name written into the LoRA folder (merge-into: the checkpoints folder);
// an existing output is refused unless `force`.

/// <summary>A LoRA by name and its UNet and text-encoder strengths (te defaults to unet).</summary>
public sealed record ToolLora(string Name, double? Unet = null, double? Te = null, double? Weight = null);

/// <summary>merge-into: LoRAs baked into a checkpoint.</summary>
public sealed record MergeIntoToolRequest(string Model, IReadOnlyList<ToolLora> Loras, string Output, string? Dtype = null, bool Force = false);

/// <summary>extract: a LoRA from the difference of two checkpoints; dynamic_method sv_ratio|sv_fro|sv_cumulative with dynamic_param, the rank as the cap.</summary>
public sealed record ExtractToolRequest(string Base, string Tuned, int Rank, string Output, int? ConvRank = null, string? DynamicMethod = null,
                                        double? DynamicParam = null, double? ClampQuantile = null, double? MinDiff = null, string? Dtype = null, bool Force = false);

/// <summary>resize: a LoRA to a lower (or dynamic) rank.</summary>
public sealed record ResizeToolRequest(string Lora, string Output, int? Rank = null, int? ConvRank = null, string? DynamicMethod = null,
                                       double? DynamicParam = null, string? Dtype = null, bool Force = false);

/// <summary>merge: LoRAs (name and weight) into one; concat (exact) unless svd_rank is given.</summary>
public sealed record MergeToolRequest(IReadOnlyList<ToolLora> Loras, string Output, int? SvdRank = null, string? Dtype = null, bool Force = false);

/// <summary>convert: kohya ↔ peft names; `to` is kohya or peft; model (a checkpoint name) or family (sd1, sd2, sdxl) when the LoRA does not tell.</summary>
public sealed record ConvertToolRequest(string Lora, string To, string Output, string? Model = null, string? Family = null, bool Force = false);

/// <summary>bake-blocks: block weights (lbw= syntax, e.g. MIDD or 17 values) made permanent.</summary>
public sealed record BakeBlocksToolRequest(string Lora, string Blocks, string Output, string? Elements = null, string? Model = null,
                                           string? Family = null, bool Force = false);
