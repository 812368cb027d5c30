using System.Text.RegularExpressions;
using LoraCraft.Models.UNet;

namespace LoraCraft.Models.Loading;

/// <summary>
/// Our parameter names follow the original LDM/SGM single-file layout; diffusers folders (and
/// LoRA files written against diffusers module names) use another. These functions give the
/// diffusers name of each of our names, from the network's configuration alone.
/// </summary>
public static partial class DiffusersNames
{
    /// <summary>UNet: `input_blocks.4.1.proj_in.weight` -> `down_blocks.1.attentions.0.proj_in.weight`.</summary>
    public static string? UNet(string ldm, UNetConfig config)
    {
        int per = config.ResBlocksPerLevel;
        Match m;
        if ((m = Rx("^time_embed\\.(0|2)\\.(.+)$").Match(ldm)).Success)
            return $"time_embedding.linear_{(m.Groups[1].Value == "0" ? 1 : 2)}.{m.Groups[2].Value}";
        if ((m = Rx("^label_emb\\.0\\.(0|2)\\.(.+)$").Match(ldm)).Success)
            return $"add_embedding.linear_{(m.Groups[1].Value == "0" ? 1 : 2)}.{m.Groups[2].Value}";
        if ((m = Rx("^input_blocks\\.0\\.0\\.(.+)$").Match(ldm)).Success) return "conv_in." + m.Groups[1].Value;
        if ((m = Rx("^out\\.0\\.(.+)$").Match(ldm)).Success) return "conv_norm_out." + m.Groups[1].Value;
        if ((m = Rx("^out\\.2\\.(.+)$").Match(ldm)).Success) return "conv_out." + m.Groups[1].Value;
        if ((m = Rx("^input_blocks\\.(\\d+)\\.(\\d+)\\.(.+)$").Match(ldm)).Success)
        {
            int k = int.Parse(m.Groups[1].Value) - 1, part = int.Parse(m.Groups[2].Value);
            int level = k / (per + 1), j = k % (per + 1);
            string rest = m.Groups[3].Value;
            if (j == per) return rest.StartsWith("op.", StringComparison.Ordinal) ? $"down_blocks.{level}.downsamplers.0.conv.{rest[3..]}" : null;
            return part == 0 ? $"down_blocks.{level}.resnets.{j}.{Resnet(rest)}" : $"down_blocks.{level}.attentions.{j}.{rest}";
        }
        if ((m = Rx("^middle_block\\.(\\d)\\.(.+)$").Match(ldm)).Success)
        {
            string rest = m.Groups[2].Value;
            return m.Groups[1].Value switch
            {
                "0" => "mid_block.resnets.0." + Resnet(rest),
                "1" => "mid_block.attentions.0." + rest,
                _ => "mid_block.resnets.1." + Resnet(rest),
            };
        }
        if ((m = Rx("^output_blocks\\.(\\d+)\\.(\\d+)\\.(.+)$").Match(ldm)).Success)
        {
            int k = int.Parse(m.Groups[1].Value), part = int.Parse(m.Groups[2].Value);
            int upLevel = k / (per + 1), j = k % (per + 1);
            string rest = m.Groups[3].Value;
            if (part == 0) return $"up_blocks.{upLevel}.resnets.{j}.{Resnet(rest)}";
            if (rest.StartsWith("conv.", StringComparison.Ordinal)) return $"up_blocks.{upLevel}.upsamplers.0.{rest}";
            return $"up_blocks.{upLevel}.attentions.{j}.{rest}";
        }
        return null;
    }

    static string Resnet(string rest)
    {
        foreach (var (from, to) in ResnetParts)
            if (rest.StartsWith(from, StringComparison.Ordinal)) return to + rest[from.Length..];
        return rest;
    }

    static readonly (string, string)[] ResnetParts =
    [
        ("in_layers.0.", "norm1."), ("in_layers.2.", "conv1."), ("emb_layers.1.", "time_emb_proj."),
        ("out_layers.0.", "norm2."), ("out_layers.3.", "conv2."), ("skip_connection.", "conv_shortcut."),
    ];

    /// <summary>VAE: `decoder.up.3.block.0.conv1.weight` -> `decoder.up_blocks.0.resnets.0.conv1.weight`.</summary>
    public static WeightRecipe? Vae(string ldm, int levels)
    {
        Match m;
        if ((m = Rx("^(encoder|decoder)\\.mid\\.attn_1\\.(norm|q|k|v|proj_out)\\.(.+)$").Match(ldm)).Success)
        {
            string part = m.Groups[2].Value switch
            {
                "norm" => "group_norm", "q" => "to_q", "k" => "to_k", "v" => "to_v", _ => "to_out.0",
            };
            var transform = part == "group_norm" ? WeightTransform.None : WeightTransform.LinearToConv1x1;
            return new($"{m.Groups[1].Value}.mid_block.attentions.0.{part}.{m.Groups[3].Value}", transform);
        }
        string? name = null;
        if ((m = Rx("^(encoder|decoder)\\.mid\\.block_(1|2)\\.(.+)$").Match(ldm)).Success)
            name = $"{m.Groups[1].Value}.mid_block.resnets.{int.Parse(m.Groups[2].Value) - 1}.{VaeResnet(m.Groups[3].Value)}";
        else if ((m = Rx("^encoder\\.down\\.(\\d+)\\.block\\.(\\d+)\\.(.+)$").Match(ldm)).Success)
            name = $"encoder.down_blocks.{m.Groups[1].Value}.resnets.{m.Groups[2].Value}.{VaeResnet(m.Groups[3].Value)}";
        else if ((m = Rx("^encoder\\.down\\.(\\d+)\\.downsample\\.(.+)$").Match(ldm)).Success)
            name = $"encoder.down_blocks.{m.Groups[1].Value}.downsamplers.0.{m.Groups[2].Value}";
        else if ((m = Rx("^decoder\\.up\\.(\\d+)\\.block\\.(\\d+)\\.(.+)$").Match(ldm)).Success)
            name = $"decoder.up_blocks.{levels - 1 - int.Parse(m.Groups[1].Value)}.resnets.{m.Groups[2].Value}.{VaeResnet(m.Groups[3].Value)}";
        else if ((m = Rx("^decoder\\.up\\.(\\d+)\\.upsample\\.(.+)$").Match(ldm)).Success)
            name = $"decoder.up_blocks.{levels - 1 - int.Parse(m.Groups[1].Value)}.upsamplers.0.{m.Groups[2].Value}";
        else if ((m = Rx("^(encoder|decoder)\\.norm_out\\.(.+)$").Match(ldm)).Success)
            name = $"{m.Groups[1].Value}.conv_norm_out.{m.Groups[2].Value}";
        else name = ldm; // conv_in, conv_out, quant_conv, post_quant_conv keep their names
        return new(name);
    }

    static string VaeResnet(string rest) =>
        rest.StartsWith("nin_shortcut.", StringComparison.Ordinal) ? "conv_shortcut." + rest["nin_shortcut.".Length..] : rest;

    /// <summary>
    /// OpenCLIP text tower (`model.` prefix stripped) for one of our HF CLIP names: fused q/k/v
    /// thirds, renamed norms and MLP, and the projection matrix transposed.
    /// </summary>
    public static WeightRecipe? OpenClip(string hf)
    {
        Match m;
        if (hf == "embeddings.token_embedding.weight") return new("token_embedding.weight");
        if (hf == "embeddings.position_embedding.weight") return new("positional_embedding");
        if (hf.StartsWith("final_layer_norm.", StringComparison.Ordinal)) return new("ln_final." + hf["final_layer_norm.".Length..]);
        if (hf == "text_projection.weight") return new("text_projection", WeightTransform.Transpose);
        if ((m = Rx("^encoder\\.layers\\.(\\d+)\\.(.+)$").Match(hf)).Success)
        {
            string p = $"transformer.resblocks.{m.Groups[1].Value}.";
            string rest = m.Groups[2].Value;
            if ((m = Rx("^self_attn\\.(q|k|v)_proj\\.(weight|bias)$").Match(rest)).Success)
            {
                var third = m.Groups[1].Value switch { "q" => WeightTransform.ThirdQ, "k" => WeightTransform.ThirdK, _ => WeightTransform.ThirdV };
                return new(p + "attn.in_proj_" + m.Groups[2].Value, third);
            }
            foreach (var (from, to) in OpenClipParts)
                if (rest.StartsWith(from, StringComparison.Ordinal)) return new(p + to + rest[from.Length..]);
        }
        return null;
    }

    static readonly (string, string)[] OpenClipParts =
    [
        ("self_attn.out_proj.", "attn.out_proj."), ("layer_norm1.", "ln_1."), ("layer_norm2.", "ln_2."),
        ("mlp.fc1.", "mlp.c_fc."), ("mlp.fc2.", "mlp.c_proj."),
    ];

    static Regex Rx(string pattern) => Cache.GetOrAdd(pattern, p => new Regex(p, RegexOptions.CultureInvariant));
    static readonly System.Collections.Concurrent.ConcurrentDictionary<string, Regex> Cache = new();
}
