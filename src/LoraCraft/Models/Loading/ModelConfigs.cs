using System.Text.Json;
using System.Text.RegularExpressions;
using LoraCraft.IO;
using LoraCraft.Models.Clip;
using LoraCraft.Models.UNet;
using LoraCraft.Models.Vae;

namespace LoraCraft.Models.Loading;

/// <summary>
/// Network hyper-parameters, read either from diffusers `config.json` files or, for a single
/// file without a config, from the stored shapes plus the families' well-known constants
/// (SD1: 8 heads; SD2/SDXL: head width 64; CLIP text heads of width 64).
/// </summary>
public static class ModelConfigs
{
    // ---------- UNet ----------

    /// <summary>Structure from an LDM-layout UNet's shapes; heads from the given rule.</summary>
    public static UNetConfig UNetFromShapes(SafetensorsHeader h, string prefix, ModelFamily family, Func<int, int, int>? headsFor = null)
    {
        long[] Shape(string key) => h.TryGet(prefix + key, out var i) ? i.Shape
            : throw new ModelLoadException(h.Path, $"UNet weight '{prefix + key}' missing — not a complete checkpoint");
        var convIn = Shape("input_blocks.0.0.weight");
        var inputIds = new SortedSet<int>();
        var rx = new Regex("^" + Regex.Escape(prefix) + @"input_blocks\.(\d+)\.");
        foreach (var t in h.Tensors)
            if (rx.Match(t.Name) is { Success: true } m) inputIds.Add(int.Parse(m.Groups[1].Value));
        int downsamplers = inputIds.Count(i => h.Contains($"{prefix}input_blocks.{i}.0.op.weight"));
        int levels = downsamplers + 1;
        int per = (inputIds.Count - 1 - downsamplers) / levels;
        var channels = new int[levels];
        var depth = new int[levels];
        for (int level = 0; level < levels; level++)
        {
            int k = 1 + level * (per + 1);
            channels[level] = (int)Shape($"input_blocks.{k}.0.out_layers.3.weight")[0];
            depth[level] = CountBlocks(h, $"{prefix}input_blocks.{k}.1.transformer_blocks.");
        }
        int midDepth = CountBlocks(h, $"{prefix}middle_block.1.transformer_blocks.");
        var toK = h.Tensors.First(t => t.Name.StartsWith(prefix, StringComparison.Ordinal) && t.Name.EndsWith("attn2.to_k.weight", StringComparison.Ordinal));
        var projIn = h.Tensors.First(t => t.Name.StartsWith(prefix, StringComparison.Ordinal) && t.Name.EndsWith("proj_in.weight", StringComparison.Ordinal));
        int adm = h.TryGet(prefix + "label_emb.0.0.weight", out var label) ? (int)label.Shape[1] : 0;
        // Widths under one 64-wide head (test-size models) would give 0 heads: one head keeps the
        // network runnable; a config folder gives the true count.
        headsFor ??= (level, ch) => family == ModelFamily.Sd1 ? 8 : Math.Max(1, ch / 64);
        return new UNetConfig
        {
            InChannels = (int)convIn[1],
            OutChannels = (int)Shape("out.2.weight")[0],
            BlockChannels = channels,
            ResBlocksPerLevel = per,
            TransformerDepth = depth,
            MidTransformerDepth = midDepth,
            Heads = channels.Select((c, i) => headsFor(i, c)).ToArray(),
            ContextDim = (int)toK.Shape[1],
            LinearProjection = projIn.Shape.Length == 2,
            AdmInChannels = adm,
        };
    }

    static int CountBlocks(SafetensorsHeader h, string prefix)
    {
        int n = 0;
        while (h.Contains($"{prefix}{n}.norm1.weight")) n++;
        return n;
    }

    /// <summary>Full configuration from a diffusers `unet/config.json`.</summary>
    public static UNetConfig UNetFromDiffusers(string configPath)
    {
        var j = ReadJson(configPath);
        var channels = j.GetProperty("block_out_channels").EnumerateArray().Select(e => e.GetInt32()).ToArray();
        int levels = channels.Length;
        var downTypes = j.GetProperty("down_block_types").EnumerateArray().Select(e => e.GetString()!).ToArray();
        var layers = PerLevel(j, "transformer_layers_per_block", levels, 1);
        var depth = downTypes.Select((t, i) => t.StartsWith("CrossAttn", StringComparison.Ordinal) ? layers[i] : 0).ToArray();
        // diffusers' historical naming: `attention_head_dim` holds the head count unless num_attention_heads is set
        var heads = j.TryGetProperty("num_attention_heads", out var nh) && nh.ValueKind != JsonValueKind.Null
            ? PerLevel(j, "num_attention_heads", levels, 8)
            : PerLevel(j, "attention_head_dim", levels, 8);
        int adm = j.TryGetProperty("projection_class_embeddings_input_dim", out var p) && p.ValueKind == JsonValueKind.Number ? p.GetInt32() : 0;
        int addTime = j.TryGetProperty("addition_time_embed_dim", out var a) && a.ValueKind == JsonValueKind.Number ? a.GetInt32() : 0;
        return new UNetConfig
        {
            InChannels = j.GetProperty("in_channels").GetInt32(),
            OutChannels = j.GetProperty("out_channels").GetInt32(),
            BlockChannels = channels,
            ResBlocksPerLevel = j.TryGetProperty("layers_per_block", out var lpb) ? lpb.GetInt32() : 2,
            TransformerDepth = depth,
            MidTransformerDepth = layers[^1],
            Heads = heads,
            ContextDim = j.GetProperty("cross_attention_dim").GetInt32(),
            LinearProjection = j.TryGetProperty("use_linear_projection", out var lin) && lin.ValueKind == JsonValueKind.True,
            AdmInChannels = adm,
            AdditionTimeEmbedDim = addTime,
            NormGroups = j.TryGetProperty("norm_num_groups", out var g) ? g.GetInt32() : 32,
        };
    }

    /// <summary>The first structural difference between two UNet configurations (heads aside), or null.</summary>
    public static string? StructureDiffers(UNetConfig stored, UNetConfig declared)
    {
        static string L(int[] a) => "[" + string.Join(",", a) + "]";
        if (stored.InChannels != declared.InChannels) return $"{stored.InChannels} input channels stored, {declared.InChannels} declared";
        if (!stored.BlockChannels.SequenceEqual(declared.BlockChannels)) return $"block channels {L(stored.BlockChannels)} stored, {L(declared.BlockChannels)} declared";
        if (!stored.TransformerDepth.SequenceEqual(declared.TransformerDepth)) return $"transformer depths {L(stored.TransformerDepth)} stored, {L(declared.TransformerDepth)} declared";
        if (stored.MidTransformerDepth != declared.MidTransformerDepth) return $"middle transformer depth {stored.MidTransformerDepth} stored, {declared.MidTransformerDepth} declared";
        if (stored.ContextDim != declared.ContextDim) return $"context width {stored.ContextDim} stored, {declared.ContextDim} declared";
        return null;
    }

    static int[] PerLevel(JsonElement j, string name, int levels, int fallback)
    {
        if (!j.TryGetProperty(name, out var e) || e.ValueKind == JsonValueKind.Null) return Enumerable.Repeat(fallback, levels).ToArray();
        return e.ValueKind == JsonValueKind.Array
            ? e.EnumerateArray().Select(x => x.GetInt32()).ToArray()
            : Enumerable.Repeat(e.GetInt32(), levels).ToArray();
    }

    // ---------- VAE ----------

    public static VaeConfig VaeFromShapes(SafetensorsHeader h, string prefix)
    {
        var channels = new List<int>();
        while (h.TryGet($"{prefix}encoder.down.{channels.Count}.block.0.conv1.weight", out var t)) channels.Add((int)t.Shape[0]);
        if (channels.Count == 0)
            throw new ModelLoadException(h.Path, $"VAE weights missing (e.g. {prefix}encoder.down.0.block.0.conv1.weight)");
        int per = 0;
        while (h.Contains($"{prefix}encoder.down.0.block.{per}.conv1.weight")) per++;
        int latent = h.TryGet(prefix + "post_quant_conv.weight", out var pq) ? (int)pq.Shape[0] : 4;
        return new VaeConfig { BlockChannels = channels.ToArray(), ResBlocksPerLevel = per, LatentChannels = latent };
    }

    public static VaeConfig VaeFromDiffusers(string configPath)
    {
        var j = ReadJson(configPath);
        return new VaeConfig
        {
            BlockChannels = j.GetProperty("block_out_channels").EnumerateArray().Select(e => e.GetInt32()).ToArray(),
            ResBlocksPerLevel = j.TryGetProperty("layers_per_block", out var l) ? l.GetInt32() : 2,
            LatentChannels = j.TryGetProperty("latent_channels", out var c) ? c.GetInt32() : 4,
            NormGroups = j.TryGetProperty("norm_num_groups", out var g) ? g.GetInt32() : 32,
        };
    }

    // ---------- CLIP text ----------

    /// <summary>Structure from HF-named shapes (`embeddings.*`, `encoder.layers.N.*`) under a prefix.</summary>
    public static ClipTextConfig ClipFromShapes(SafetensorsHeader h, string prefix, Func<string, WeightRecipe?> names, ClipActivation activation, int eosId)
    {
        long[] Shape(string ours)
        {
            var key = prefix + (names(ours)?.SourceKey ?? ours);
            return h.TryGet(key, out var i) ? i.Shape : throw new ModelLoadException(h.Path, $"text encoder weight '{key}' missing — not a complete checkpoint");
        }
        var tokens = Shape("embeddings.token_embedding.weight");
        var positions = Shape("embeddings.position_embedding.weight");
        int layers = 0;
        while (h.Contains(prefix + (names($"encoder.layers.{layers}.layer_norm1.weight")?.SourceKey ?? ""))) layers++;
        int hidden = (int)tokens[1];
        var fc1 = Shape("encoder.layers.0.mlp.fc1.weight");
        int projection = 0;
        if (names("text_projection.weight") is { } pr && h.TryGet(prefix + pr.SourceKey, out var p))
            projection = (int)(pr.Transform == WeightTransform.Transpose ? p.Shape[1] : p.Shape[0]);
        return new ClipTextConfig
        {
            VocabSize = (int)tokens[0],
            MaxPositions = (int)positions[0],
            Hidden = hidden,
            Intermediate = (int)fc1[0],
            Layers = layers,
            Heads = Math.Max(1, hidden / 64), // at least one: see UNetFromShapes
            Activation = activation,
            ProjectionDim = projection,
            EosTokenId = eosId,
        };
    }

    /// <summary>Applies the fields a checkpoint cannot show (heads, activation, eos id, eps) from an HF config.</summary>
    public static ClipTextConfig WithHfConfig(ClipTextConfig c, string configPath)
    {
        var j = ReadJson(configPath);
        // fewer stored layers than declared means a truncated tower (SD2 files may store one more)
        if (j.TryGetProperty("num_hidden_layers", out var layers) && c.Layers < layers.GetInt32())
            throw new ModelLoadException(configPath, $"the checkpoint's text encoder has {c.Layers} layers, this config declares {layers.GetInt32()}");
        return c with
        {
            Heads = j.TryGetProperty("num_attention_heads", out var h) ? h.GetInt32() : c.Heads,
            Activation = j.TryGetProperty("hidden_act", out var a) && a.GetString() == "gelu" ? ClipActivation.Gelu : ClipActivation.QuickGelu,
            EosTokenId = j.TryGetProperty("eos_token_id", out var e) && e.ValueKind == JsonValueKind.Number ? e.GetInt32() : c.EosTokenId,
            LayerNormEps = j.TryGetProperty("layer_norm_eps", out var eps) ? eps.GetDouble() : c.LayerNormEps,
        };
    }

    public static JsonElement ReadJson(string path)
    {
        try
        {
            using var doc = JsonDocument.Parse(File.ReadAllBytes(path));
            return doc.RootElement.Clone();
        }
        catch (JsonException e)
        {
            throw new ModelLoadException(path, $"not valid JSON ({e.Message})");
        }
    }
}
