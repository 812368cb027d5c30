using System.Text.Json;
using System.Text.Json.Nodes;
using LoraCraft.Models.Clip;
using LoraCraft.Text;

namespace LoraCraft.Models.Random;

/// <summary>
/// The diffusers-layout config folder of a random tiny checkpoint (`model_index.json`,
/// `unet/`, `vae/`, `text_encoder[_2]/`, `scheduler/`, `tokenizer[_2]/`, configs only), with the
/// fields diffusers and transformers write, so that the single file loads with it as
/// `--config` here and in diffusers' `from_single_file(config=...)`. The scheduler predicts
/// epsilon, except for SD2, which is written as a v-prediction model like SD 2.x 768-v.
/// </summary>
public static class ConfigFolder
{
    // the diffusers release whose config format the reference fixtures follow
    const string DiffusersVersion = "0.40.0.dev0";

    /// <summary>
    /// Writes the folder next to the checkpoint, replacing an earlier config folder there (one
    /// holding model_index.json) but nothing else; it appears complete or not at all.
    /// </summary>
    public static void Write(string dir, RandomArchitecture a)
    {
        dir = Path.GetFullPath(dir);
        CheckReplaceable(dir);
        var temporary = $"{dir}.tmp-{Guid.NewGuid():N}";
        try
        {
            WriteInto(temporary, a);
            if (Directory.Exists(dir)) Directory.Delete(dir, recursive: true);
            Directory.Move(temporary, dir);
        }
        catch
        {
            if (Directory.Exists(temporary)) Directory.Delete(temporary, recursive: true);
            throw;
        }
    }

    /// <summary>Fails unless <paramref name="dir"/> is absent or an earlier config folder.</summary>
    public static void CheckReplaceable(string dir)
    {
        if (File.Exists(dir) || (Directory.Exists(dir) && !File.Exists(Path.Combine(dir, "model_index.json"))))
            throw new UserErrorException($"{Path.GetFullPath(dir)} exists and is not a config folder; move it away first");
    }

    static void WriteInto(string dir, RandomArchitecture a)
    {
        bool sdxl = a.Family == ModelFamily.Sdxl;
        var index = new JsonObject
        {
            ["_class_name"] = sdxl ? "StableDiffusionXLPipeline" : a.Inpainting ? "StableDiffusionInpaintPipeline" : "StableDiffusionPipeline",
            ["_diffusers_version"] = DiffusersVersion,
            ["unet"] = Strings("diffusers", "UNet2DConditionModel"),
            ["vae"] = Strings("diffusers", "AutoencoderKL"),
            ["scheduler"] = Strings("diffusers", "EulerDiscreteScheduler"),
            ["text_encoder"] = Strings("transformers", "CLIPTextModel"),
            ["tokenizer"] = Strings("transformers", "CLIPTokenizer"),
        };
        if (sdxl)
        {
            index["text_encoder_2"] = Strings("transformers", "CLIPTextModelWithProjection");
            index["tokenizer_2"] = Strings("transformers", "CLIPTokenizer");
        }
        Save(dir, "model_index.json", index);
        Save(Path.Combine(dir, "unet"), "config.json", UNet(a));
        Save(Path.Combine(dir, "vae"), "config.json", Vae(a));
        Save(Path.Combine(dir, "scheduler"), "scheduler_config.json", Scheduler(a.Family == ModelFamily.Sd2 ? "v_prediction" : "epsilon"));
        for (int i = 0; i < a.Text.Count; i++)
        {
            string suffix = i == 0 ? "" : "_2";
            var tower = a.Text[i];
            Save(Path.Combine(dir, "text_encoder" + suffix), "config.json", TextEncoder(tower, a.Family));
            // OpenCLIP pads with id 0 ("!"), CLIP-L with the end token
            ByteLevelTokenizer.Write(Path.Combine(dir, "tokenizer" + suffix), tower.OpenClip ? "!" : ClipTokenizer.EndToken);
        }
    }

    static JsonObject UNet(RandomArchitecture a)
    {
        var c = a.UNet;
        var depth = c.TransformerDepth;
        return new JsonObject
        {
            ["_class_name"] = "UNet2DConditionModel",
            ["_diffusers_version"] = DiffusersVersion,
            ["act_fn"] = "silu",
            ["addition_embed_type"] = c.AdmInChannels > 0 ? "text_time" : null,
            ["addition_time_embed_dim"] = c.AdmInChannels > 0 ? c.AdditionTimeEmbedDim : null,
            // diffusers' historical name: these are head counts
            ["attention_head_dim"] = Ints(c.Heads),
            ["block_out_channels"] = Ints(c.BlockChannels),
            ["center_input_sample"] = false,
            ["cross_attention_dim"] = c.ContextDim,
            ["down_block_types"] = Strings(depth.Select(d => d > 0 ? "CrossAttnDownBlock2D" : "DownBlock2D")),
            ["downsample_padding"] = 1,
            ["flip_sin_to_cos"] = true,
            ["freq_shift"] = 0,
            ["in_channels"] = c.InChannels,
            ["layers_per_block"] = c.ResBlocksPerLevel,
            ["mid_block_scale_factor"] = 1,
            ["mid_block_type"] = "UNetMidBlock2DCrossAttn",
            ["norm_eps"] = 1e-5,
            ["norm_num_groups"] = c.NormGroups,
            ["num_attention_heads"] = null,
            ["out_channels"] = c.OutChannels,
            ["projection_class_embeddings_input_dim"] = c.AdmInChannels > 0 ? c.AdmInChannels : null,
            ["sample_size"] = 8,
            // diffusers takes the middle block's depth from the last level
            ["transformer_layers_per_block"] = Ints(depth.Select((d, i) => i == depth.Length - 1 ? c.MidTransformerDepth : Math.Max(d, 1))),
            ["up_block_types"] = Strings(Enumerable.Reverse(depth).Select(d => d > 0 ? "CrossAttnUpBlock2D" : "UpBlock2D")),
            ["upcast_attention"] = false,
            ["use_linear_projection"] = c.LinearProjection,
        };
    }

    static JsonObject Vae(RandomArchitecture a)
    {
        var c = a.Vae;
        return new JsonObject
        {
            ["_class_name"] = "AutoencoderKL",
            ["_diffusers_version"] = DiffusersVersion,
            ["act_fn"] = "silu",
            ["block_out_channels"] = Ints(c.BlockChannels),
            ["down_block_types"] = Strings(c.BlockChannels.Select(_ => "DownEncoderBlock2D")),
            ["force_upcast"] = true,
            ["in_channels"] = 3,
            ["latent_channels"] = c.LatentChannels,
            ["layers_per_block"] = c.ResBlocksPerLevel,
            ["norm_num_groups"] = c.NormGroups,
            ["out_channels"] = 3,
            ["sample_size"] = 64,
            ["scaling_factor"] = a.Family.LatentScale(),
            ["up_block_types"] = Strings(c.BlockChannels.Select(_ => "UpDecoderBlock2D")),
        };
    }

    static JsonObject TextEncoder(TextTower tower, ModelFamily family)
    {
        var c = tower.Config;
        return new JsonObject
        {
            ["attention_dropout"] = 0.0,
            ["bos_token_id"] = ByteLevelTokenizer.StartId,
            ["eos_token_id"] = c.EosTokenId,
            ["hidden_act"] = c.Activation == ClipActivation.Gelu ? "gelu" : "quick_gelu",
            ["hidden_size"] = c.Hidden,
            ["initializer_factor"] = 1.0,
            ["initializer_range"] = 0.02,
            ["intermediate_size"] = c.Intermediate,
            ["layer_norm_eps"] = c.LayerNormEps,
            ["max_position_embeddings"] = c.MaxPositions,
            ["model_type"] = "clip_text_model",
            ["num_attention_heads"] = c.Heads,
            // a diffusers SD2 text encoder lacks the single file's unused last layer
            ["num_hidden_layers"] = family == ModelFamily.Sd2 ? c.Layers - 1 : c.Layers,
            ["pad_token_id"] = tower.OpenClip ? 0 : c.EosTokenId,
            ["projection_dim"] = c.ProjectionDim > 0 ? c.ProjectionDim : c.Hidden,
            ["vocab_size"] = c.VocabSize,
        };
    }

    static JsonObject Scheduler(string prediction) => new()
    {
        ["_class_name"] = "EulerDiscreteScheduler",
        ["_diffusers_version"] = DiffusersVersion,
        ["beta_end"] = 0.012,
        ["beta_schedule"] = "scaled_linear",
        ["beta_start"] = 0.00085,
        ["interpolation_type"] = "linear",
        ["num_train_timesteps"] = 1000,
        ["prediction_type"] = prediction,
        ["steps_offset"] = 1,
        ["timestep_spacing"] = "linspace",
        ["use_karras_sigmas"] = false,
    };

    static JsonArray Ints(IEnumerable<int> values) => new(values.Select(v => (JsonNode?)v).ToArray());

    static JsonArray Strings(params IEnumerable<string> values) => new(values.Select(v => (JsonNode?)v).ToArray());

    static void Save(string dir, string file, JsonObject json)
    {
        Directory.CreateDirectory(dir);
        File.WriteAllText(Path.Combine(dir, file), json.ToJsonString(new JsonSerializerOptions { WriteIndented = true }) + "\n");
    }
}
