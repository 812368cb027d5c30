using LoraCraft.IO;
using LoraCraft.Models.Clip;
using LoraCraft.Models.UNet;
using LoraCraft.Models.Vae;
using LoraCraft.Text;
using static TorchSharp.torch;

namespace LoraCraft.Models.Loading;

public sealed record LoadOptions
{
    /// <summary>A diffusers-style folder holding the configs (and tokenizers) of a single file.</summary>
    public string? ConfigDir { get; init; }
    public string? TokenizerDir { get; init; }
    /// <summary>Overrides the prediction type (SD2 768-v single files carry no marker of it).</summary>
    public Prediction? Prediction { get; init; }
    public ScalarType DType { get; init; } = ScalarType.Float32;
    /// <summary>CPU by default; CUDA needs the TorchSharp-cuda build (see README).</summary>
    public Device? Device { get; init; }
}

/// <summary>
/// Loads a checkpoint from a single `.safetensors` file (LDM/SGM layout) or a diffusers folder
/// (`model_index.json`), detecting the family, into our networks.
/// </summary>
public static class CheckpointLoader
{
    public static StableDiffusionModel Load(string path, LoadOptions? options = null)
    {
        options ??= new LoadOptions();
        if (Directory.Exists(path))
        {
            if (!File.Exists(Path.Combine(path, "model_index.json")))
                throw new ModelLoadException(path, "folder has no model_index.json (not a diffusers model folder)");
            return DiffusersFolder.Load(path, options);
        }
        if (!File.Exists(path)) throw new FileNotFoundException($"model not found: {path}", path);
        var ext = Path.GetExtension(path).ToLowerInvariant();
        if (ext is ".ckpt" or ".pt" or ".pth" or ".bin")
            throw new ModelLoadException(path,
                "pickle checkpoints can run arbitrary code and are not loaded; convert it to .safetensors first " +
                "(e.g. with the A1111 'checkpoint merger' or `safetensors.torch.save_file`)");
        return LoadSingleFile(path, options);
    }

    static StableDiffusionModel LoadSingleFile(string path, LoadOptions options)
    {
        var file = SafetensorsFile.Open(path);
        try
        {
            return LoadSingleFile(path, file, options);
        }
        catch
        {
            file.Dispose();
            throw;
        }
    }

    /// <summary>The model keeps <paramref name="file"/> mapped: patched weights are re-read from it.</summary>
    static StableDiffusionModel LoadSingleFile(string path, SafetensorsFile file, LoadOptions options)
    {
        var (family, inpainting) = CheckpointLayout.Detect(file.Header);
        if (family is null)
            throw new ModelLoadException(path, "not a Stable Diffusion checkpoint (no 'model.diffusion_model.input_blocks.0.0.weight'; a LoRA or VAE file?)");
        var fam = family.Value;
        var configDir = options.ConfigDir;
        string? Config(string sub) => configDir is null ? null : Path.Combine(configDir, sub, "config.json") is var p && File.Exists(p) ? p : null;

        // text encoders first: SDXL's pooled width fixes the UNet's time-id embedding width
        var encoders = new List<TextEncoderSlot>();
        var tokenizer = TokenizerLocator.Find(options.TokenizerDir, configDir, "tokenizer", path);
        switch (fam)
        {
            case ModelFamily.Sd1:
                encoders.Add(LoadClip(file, CheckpointLayout.Sd1TextPrefixOf(file.Header), HfNames, ClipActivation.QuickGelu, Config("text_encoder"), tokenizer, tokenizer.EndId, 0));
                break;
            case ModelFamily.Sd2:
                // SD2 conditions on the penultimate layer: the last one is never used, so it is not loaded
                // (diffusers folders drop it the same way).
                encoders.Add(LoadClip(file, CheckpointLayout.Sd2TextPrefix, DiffusersNames.OpenClip, ClipActivation.Gelu, Config("text_encoder"), tokenizer, 0, 1));
                break;
            case ModelFamily.Sdxl:
                var tokenizer2 = TokenizerLocator.Find(options.TokenizerDir, configDir, "tokenizer_2", path);
                encoders.Add(LoadClip(file, CheckpointLayout.SdxlText1Prefix, HfNames, ClipActivation.QuickGelu, Config("text_encoder"), tokenizer, tokenizer.EndId, 0));
                encoders.Add(LoadClip(file, CheckpointLayout.SdxlText2Prefix, DiffusersNames.OpenClip, ClipActivation.Gelu, Config("text_encoder_2"), tokenizer2, 0, 0));
                break;
        }

        var unetConfigPath = Config("unet");
        var declared = unetConfigPath is null ? null : ModelConfigs.UNetFromDiffusers(unetConfigPath);
        Func<int, int, int>? heads = declared is null ? null : (level, _) => declared.Heads[level];
        var unetConfig = ModelConfigs.UNetFromShapes(file.Header, CheckpointLayout.UNetPrefix, fam, heads);
        // the structure comes from the stored shapes; a config that disagrees means missing blocks or the wrong config
        if (declared is not null && ModelConfigs.StructureDiffers(unetConfig, declared) is { } difference)
            throw new ModelLoadException(path, $"UNet does not match {unetConfigPath}: {difference}");
        // without a config, a full-size UNet must have its family's standard structure
        if (declared is null && unetConfig.BlockChannels[0] == 320 && Standard(fam, unetConfig.InChannels) is { } standard
            && ModelConfigs.StructureDiffers(unetConfig, standard) is { } missing)
            throw new ModelLoadException(path, $"UNet is not a complete {fam.Id()} UNet: {missing}");
        if (unetConfig.AdmInChannels > 0)
        {
            int pooled = encoders[^1].Model.Config.ProjectionDim;
            unetConfig = unetConfig with { AdditionTimeEmbedDim = (unetConfig.AdmInChannels - pooled) / 6 };
        }
        var unet = new UNetModel(unetConfig);
        WeightLoader.Load(unet, WeightSource.Prefixed(file, CheckpointLayout.UNetPrefix), options.DType, "UNet", options.Device);

        var vae = new VaeModel(ModelConfigs.VaeFromShapes(file.Header, CheckpointLayout.VaePrefix));
        WeightLoader.Load(vae, WeightSource.Prefixed(file, CheckpointLayout.VaePrefix), options.DType, "VAE", options.Device);

        var prediction = options.Prediction ?? SchedulerPrediction(configDir) ?? Prediction.Epsilon;
        return new StableDiffusionModel
        {
            SourcePath = path, Family = fam, Inpainting = inpainting, Prediction = prediction,
            UNet = unet, Vae = vae, TextEncoders = encoders, Files = [file],
        };

        TextEncoderSlot LoadClip(SafetensorsFile f, string prefix, Func<string, WeightRecipe?> names, ClipActivation act,
                                 string? hfConfig, ClipTokenizer tok, int padId, int dropLayers)
        {
            var config = ModelConfigs.ClipFromShapes(f.Header, prefix, names, act, tok.EndId);
            if (hfConfig is not null) config = ModelConfigs.WithHfConfig(config, hfConfig);
            config = config with { Layers = config.Layers - dropLayers };
            var model = new ClipTextModel(config);
            WeightLoader.Load(model, new WeightSource(f, n => names(n) is { } r ? r with { SourceKey = prefix + r.SourceKey } : null), options.DType, "text encoder", options.Device);
            return new TextEncoderSlot(model, tok, padId);
        }
    }

    static WeightRecipe? HfNames(string name) => new(name);

    static UNetConfig Standard(ModelFamily family, int inChannels) => family switch
    {
        ModelFamily.Sd1 => UNetConfig.Sd15(inChannels),
        ModelFamily.Sd2 => UNetConfig.Sd2(inChannels),
        _ => UNetConfig.Sdxl(inChannels),
    };

    /// <summary>`prediction_type` of a diffusers scheduler config, if the folder has one.</summary>
    internal static Prediction? SchedulerPrediction(string? dir)
    {
        if (dir is null) return null;
        var p = Path.Combine(dir, "scheduler", "scheduler_config.json");
        if (!File.Exists(p)) return null;
        var j = ModelConfigs.ReadJson(p);
        return j.TryGetProperty("prediction_type", out var t) && t.GetString() == "v_prediction" ? Prediction.V : Prediction.Epsilon;
    }
}
