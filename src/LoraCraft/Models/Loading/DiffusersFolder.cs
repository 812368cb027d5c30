using LoraCraft.IO;
using LoraCraft.Models.Clip;
using LoraCraft.Models.UNet;
using LoraCraft.Models.Vae;
using LoraCraft.Text;

namespace LoraCraft.Models.Loading;

/// <summary>Loads a diffusers model folder (`model_index.json`, `unet/`, `vae/`, `text_encoder[_2]/`, `tokenizer[_2]/`).</summary>
static class DiffusersFolder
{
    public static StableDiffusionModel Load(string dir, LoadOptions options)
    {
        var files = new List<IDisposable>();
        try
        {
            return Load(dir, options, files);
        }
        catch
        {
            foreach (var f in files) f.Dispose();
            throw;
        }
    }

    /// <summary>Every opened file goes into <paramref name="files"/>: the model keeps them mapped.</summary>
    static StableDiffusionModel Load(string dir, LoadOptions options, List<IDisposable> files)
    {
        var unetConfig = ModelConfigs.UNetFromDiffusers(Required(dir, "unet", "config.json"));
        bool sdxl = Directory.Exists(Path.Combine(dir, "text_encoder_2"));
        var te1Config = ModelConfigs.ReadJson(Required(dir, "text_encoder", "config.json"));
        bool openClip = te1Config.TryGetProperty("hidden_act", out var act) && act.GetString() == "gelu";
        var family = sdxl ? ModelFamily.Sdxl : openClip || unetConfig.LinearProjection ? ModelFamily.Sd2 : ModelFamily.Sd1;

        var encoders = new List<TextEncoderSlot>();
        var tok1 = options.TokenizerDir is { } td ? ClipTokenizer.FromDirectory(td) : ClipTokenizer.FromDirectory(Path.Combine(dir, "tokenizer"));
        encoders.Add(LoadClip(dir, "text_encoder", tok1, family == ModelFamily.Sd2 ? 0 : tok1.EndId, options, files));
        if (sdxl)
        {
            var tok2Dir = Path.Combine(dir, "tokenizer_2");
            var tok2 = Directory.Exists(tok2Dir) ? ClipTokenizer.FromDirectory(tok2Dir) : tok1;
            encoders.Add(LoadClip(dir, "text_encoder_2", tok2, 0, options, files));
        }

        var unet = new UNetModel(unetConfig);
        var unetFile = Open(Weights(dir, "unet"), files);
        WeightLoader.Load(unet, new WeightSource(unetFile, n => DiffusersNames.UNet(n, unetConfig) is { } k ? new WeightRecipe(k) : null), options.DType, "UNet", options.Device);

        var vaeConfig = ModelConfigs.VaeFromDiffusers(Required(dir, "vae", "config.json"));
        var vae = new VaeModel(vaeConfig);
        var vaeFile = Open(Weights(dir, "vae"), files);
        WeightLoader.Load(vae, new WeightSource(vaeFile, n => DiffusersNames.Vae(n, vaeConfig.BlockChannels.Length)), options.DType, "VAE", options.Device);

        return new StableDiffusionModel
        {
            SourcePath = dir,
            Family = family,
            Inpainting = unetConfig.InChannels == 9,
            Prediction = options.Prediction ?? CheckpointLoader.SchedulerPrediction(dir) ?? Prediction.Epsilon,
            UNet = unet, Vae = vae, TextEncoders = encoders, Files = files,
        };
    }

    static SafetensorsFile Open(string path, List<IDisposable> files)
    {
        var f = SafetensorsFile.Open(path);
        files.Add(f);
        return f;
    }

    static TextEncoderSlot LoadClip(string dir, string sub, ClipTokenizer tokenizer, int padId, LoadOptions options, List<IDisposable> files)
    {
        var f = Open(Weights(dir, sub), files);
        static WeightRecipe? Names(string n) => new(n == "text_projection.weight" ? n : "text_model." + n);
        var config = ModelConfigs.ClipFromShapes(f.Header, "", Names, ClipActivation.QuickGelu, tokenizer.EndId);
        config = ModelConfigs.WithHfConfig(config, Required(dir, sub, "config.json"));
        var model = new ClipTextModel(config);
        WeightLoader.Load(model, new WeightSource(f, Names), options.DType, "text encoder", options.Device);
        return new TextEncoderSlot(model, tokenizer, padId);
    }

    static string Required(string dir, string sub, string file)
    {
        var p = Path.Combine(dir, sub, file);
        return File.Exists(p) ? p : throw new ModelLoadException(dir, $"missing {sub}/{file}");
    }

    /// <summary>The component's safetensors weights (plain name first, then an fp16 variant).</summary>
    static string Weights(string dir, string sub)
    {
        string[] names = sub.StartsWith("text_encoder", StringComparison.Ordinal)
            ? ["model.safetensors", "model.fp16.safetensors"]
            : ["diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.fp16.safetensors"];
        foreach (var n in names)
        {
            var p = Path.Combine(dir, sub, n);
            if (File.Exists(p)) return p;
        }
        if (Directory.Exists(Path.Combine(dir, sub)) && Directory.EnumerateFiles(Path.Combine(dir, sub), "*.bin").Any())
            throw new ModelLoadException(dir, $"{sub}/ holds only pickle (.bin) weights, which are not loaded; convert them to safetensors");
        throw new ModelLoadException(dir, $"missing {sub}/{names[0]}");
    }
}
