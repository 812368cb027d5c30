using System.Globalization;
using System.Security.Cryptography;
using LoraCraft.IO;
using LoraCraft.Models;
using static TorchSharp.torch;

namespace LoraCraft.Training;

/// <summary>
/// The metadata kohya's `train_network.py` writes into a LoRA (every value a string, Python's
/// spelling: True/False/None, 0.0001, 1e-05): the `ss_*` keys of the run, network, data and
/// base model, the additional-networks hashes (`sshs_*`) and the SAI model spec (`modelspec.*`),
/// so A1111's LoRA tab, Civitai and `lora info` read them.
/// </summary>
public sealed class TrainingMetadata
{
    /// <summary>kohya's `SS_METADATA_MINIMUM_KEYS`, all that `--no_metadata` keeps.</summary>
    public static readonly string[] MinimumKeys = ["ss_v2", "ss_base_model_version", "ss_network_module", "ss_network_dim", "ss_network_alpha", "ss_network_args"];

    readonly Dictionary<string, string> _fixed;
    readonly bool _minimal;
    readonly StableDiffusionModel _model;
    readonly TrainingOptions _o;

    public long SessionId { get; }
    public long StartedAt { get; }

    public TrainingMetadata(TrainingOptions o, StableDiffusionModel model, TrainingDataset data, LoraNetwork network, Optimizer optimizer,
                            LearningRateSchedule schedule, int epochs, long seed, long sessionId, long startedAt, string version)
    {
        _o = o;
        _model = model;
        _minimal = o.NoMetadata;
        SessionId = sessionId;
        StartedAt = startedAt;
        bool v2 = model.Family == ModelFamily.Sd2;
        var first = data.Specs[0];
        var m = new Dictionary<string, string>
        {
            ["ss_session_id"] = Str(sessionId),
            ["ss_training_started_at"] = Str(startedAt),
            ["ss_output_name"] = o.OutputName,
            ["ss_learning_rate"] = Py(o.LearningRate),
            ["ss_text_encoder_lr"] = Py(o.TextEncoderLearningRate),
            ["ss_unet_lr"] = Py(o.UNetLearningRate),
            ["ss_num_train_images"] = Str(data.TrainUses),
            ["ss_num_reg_images"] = Str(data.RegUses),
            ["ss_num_batches_per_epoch"] = Str(data.BatchesPerEpoch),
            ["ss_num_epochs"] = Str(epochs),
            ["ss_gradient_checkpointing"] = Py(o.GradientCheckpointing),
            ["ss_gradient_accumulation_steps"] = Str(o.GradientAccumulationSteps),
            ["ss_max_train_steps"] = Str(schedule.TotalSteps),
            ["ss_lr_warmup_steps"] = Str(schedule.WarmupSteps),
            ["ss_lr_scheduler"] = o.LrScheduler,
            ["ss_network_module"] = "networks.lora",
            ["ss_network_dim"] = Str(o.Network.Dim),
            ["ss_network_alpha"] = Py(o.Network.Alpha),
            ["ss_network_dropout"] = o.Network.Dropout > 0 ? Py(o.Network.Dropout) : "None",
            ["ss_network_args"] = network.NetworkArgsJson(),
            ["ss_mixed_precision"] = o.MixedPrecision,
            ["ss_full_fp16"] = "False",
            ["ss_full_bf16"] = "False",
            ["ss_v2"] = Py(v2),
            ["ss_base_model_version"] = BaseModelVersion(model),
            ["ss_clip_skip"] = o.ClipSkip == 1 ? "None" : Str(o.ClipSkip),
            ["ss_max_token_length"] = o.MaxTokenLength == 75 ? "None" : Str(o.MaxTokenLength),
            ["ss_cache_latents"] = Py(o.CacheLatents || o.CacheLatentsToDisk),
            ["ss_seed"] = Str(seed),
            ["ss_lowram"] = "False",
            ["ss_noise_offset"] = o.NoiseOffset > 0 ? Py(o.NoiseOffset) : "None",
            ["ss_noise_offset_random_strength"] = "False",
            ["ss_adaptive_noise_scale"] = "None",
            ["ss_multires_noise_iterations"] = "None",
            ["ss_multires_noise_discount"] = "0.3",
            ["ss_ip_noise_gamma"] = "None",
            ["ss_ip_noise_gamma_random_strength"] = "False",
            ["ss_zero_terminal_snr"] = "False",
            ["ss_min_snr_gamma"] = Py(o.Loss.MinSnrGamma),
            ["ss_debiased_estimation"] = "False",
            ["ss_scale_weight_norms"] = "None",
            ["ss_prior_loss_weight"] = Py(o.PriorLossWeight),
            ["ss_loss_type"] = o.Loss.Type switch { LossType.L2 => "l2", LossType.L1 => "l1", LossType.Huber => "huber", _ => "smooth_l1" },
            ["ss_huber_schedule"] = o.Loss.HuberSchedule,
            ["ss_huber_c"] = Py(o.Loss.HuberC),
            ["ss_huber_scale"] = Py(o.Loss.HuberScale),
            ["ss_fp8_base"] = "False",
            ["ss_fp8_base_unet"] = "False",
            ["ss_max_grad_norm"] = Py(o.MaxGradNorm),
            ["ss_caption_dropout_rate"] = Py(o.CaptionDropoutRate),
            ["ss_caption_dropout_every_n_epochs"] = "0",
            ["ss_caption_tag_dropout_rate"] = Py(o.CaptionTagDropoutRate),
            ["ss_face_crop_aug_range"] = "None",
            ["ss_resize_interpolation"] = "None",
            ["ss_num_validation_images"] = "0",
            ["ss_validation_seed"] = "None",
            ["ss_validation_split"] = "0.0",
            ["ss_max_validation_steps"] = "None",
            ["ss_validate_every_n_epochs"] = "None",
            ["ss_validate_every_n_steps"] = "None",
            ["ss_training_comment"] = o.TrainingComment ?? "None",
            ["ss_sd_scripts_commit_hash"] = version,
            ["ss_optimizer"] = optimizer.MetadataName,
            ["ss_sd_model_name"] = Path.GetFileName(Path.TrimEndingDirectorySeparator(o.ModelPath)),
            ["ss_vae_name"] = "None",
            ["ss_vae_hash"] = "None",
            ["ss_new_vae_hash"] = "None",
            ["ss_tag_frequency"] = data.TagFrequencyJson(),
            ["ss_dataset_dirs"] = data.DatasetDirsJson(reg: false),
        };
        if (File.Exists(o.ModelPath))
        {
            m["ss_sd_model_hash"] = LegacyHash(o.ModelPath);
            m["ss_new_sd_model_hash"] = FileHashes.Default.Sha256(o.ModelPath);
        }
        if (o.DatasetConfig is null)
        {
            m["ss_batch_size_per_device"] = Str(first.BatchSize);
            m["ss_total_batch_size"] = Str(first.BatchSize * o.GradientAccumulationSteps);
            m["ss_resolution"] = $"({first.Width}, {first.Height})";
            m["ss_color_aug"] = "False";
            m["ss_flip_aug"] = Py(o.FlipAug);
            m["ss_random_crop"] = "False";
            m["ss_shuffle_caption"] = Py(o.ShuffleCaption);
            m["ss_enable_bucket"] = Py(first.EnableBucket);
            m["ss_bucket_no_upscale"] = Py(first.BucketNoUpscale);
            m["ss_min_bucket_reso"] = Str(first.MinBucketReso);
            m["ss_max_bucket_reso"] = Str(first.MaxBucketReso);
            m["ss_keep_tokens"] = Str(o.KeepTokens);
            m["ss_reg_dataset_dirs"] = data.DatasetDirsJson(reg: true);
            m["ss_bucket_info"] = data.BucketInfoJson(0);
        }
        else
        {
            var datasets = data.Specs.Select((s, i) => new Dictionary<string, object>
            {
                ["is_dreambooth"] = true,
                ["batch_size_per_device"] = s.BatchSize,
                ["num_train_images"] = data.Images.Where(x => x.Dataset == i && !x.Subset.IsReg).Sum(x => x.Repeats),
                ["num_reg_images"] = data.Images.Where(x => x.Dataset == i && x.Subset.IsReg).Sum(x => x.Repeats),
                ["resolution"] = new[] { s.Width, s.Height },
                ["enable_bucket"] = s.EnableBucket,
                ["min_bucket_reso"] = s.MinBucketReso,
                ["max_bucket_reso"] = s.MaxBucketReso,
                ["bucket_info"] = System.Text.Json.JsonDocument.Parse(data.BucketInfoJson(i)).RootElement,
                ["subsets"] = s.Subsets.Select(sub => new Dictionary<string, object>
                {
                    ["img_count"] = data.Images.Count(x => ReferenceEquals(x.Subset, sub)),
                    ["num_repeats"] = sub.Repeats,
                    ["color_aug"] = false,
                    ["flip_aug"] = sub.FlipAug,
                    ["random_crop"] = false,
                    ["shuffle_caption"] = sub.Caption.Shuffle,
                    ["keep_tokens"] = sub.Caption.KeepTokens,
                    ["image_dir"] = Path.GetFileName(sub.ImageDir),
                    ["class_tokens"] = sub.ClassTokens,
                    ["is_reg"] = sub.IsReg,
                }).ToList(),
            }).ToList();
            m["ss_datasets"] = System.Text.Json.JsonSerializer.Serialize(datasets);
        }
        _fixed = m;
    }

    /// <summary>The metadata of a file saved at <paramref name="step"/>/<paramref name="epoch"/> holding <paramref name="tensors"/>.</summary>
    public Dictionary<string, string> ForSave(int step, int epoch, IReadOnlyList<KeyValuePair<string, TorchSharp.torch.Tensor>> tensors)
    {
        var m = new Dictionary<string, string>(_fixed)
        {
            ["ss_training_finished_at"] = Str(DateTimeOffset.UtcNow.ToUnixTimeSeconds()),
            ["ss_steps"] = Str(step),
            ["ss_epoch"] = Str(epoch),
        };
        if (_minimal) m = m.Where(kv => MinimumKeys.Contains(kv.Key)).ToDictionary();
        string sha = LoraNetwork.DataSha256(tensors);
        var (w, h) = (_o.Width, _o.Height);
        m["sshs_model_hash"] = sha;
        m["modelspec.sai_model_spec"] = "1.0.1";
        m["modelspec.architecture"] = Architecture(_model) + "/lora";
        m["modelspec.implementation"] = _model.Family == ModelFamily.Sdxl ? "https://github.com/Stability-AI/generative-models" : "diffusers";
        m["modelspec.title"] = _o.OutputName;
        m["modelspec.resolution"] = $"{w}x{h}";
        m["modelspec.date"] = DateTimeOffset.FromUnixTimeSeconds(StartedAt).ToLocalTime().ToString("yyyy-MM-ddTHH:mm:ss", CultureInfo.InvariantCulture);
        m["modelspec.prediction_type"] = (_o.Prediction ?? _model.Prediction) == Prediction.V ? "v" : "epsilon";
        m["modelspec.hash_sha256"] = "0x" + sha;
        if (_o.ClipSkip != 1) m["modelspec.encoder_layer"] = Str(_o.ClipSkip);
        return m;
    }

    public static string BaseModelVersion(StableDiffusionModel model) => model.Family switch
    {
        ModelFamily.Sd1 => "sd_v1",
        ModelFamily.Sd2 => model.Prediction == Prediction.V ? "sd_v2_v" : "sd_v2",
        _ => "sdxl_base_v1-0",
    };

    static string Architecture(StableDiffusionModel model) => model.Family switch
    {
        ModelFamily.Sd1 => "stable-diffusion-v1",
        ModelFamily.Sd2 => model.Prediction == Prediction.V ? "stable-diffusion-v2-768-v" : "stable-diffusion-v2-512",
        _ => "stable-diffusion-xl-v1-base",
    };

    /// <summary>A1111's old model hash (kohya `model_hash`): sha256 of 64 KiB at 1 MiB, 8 hex digits.</summary>
    static string LegacyHash(string path)
    {
        using var f = File.OpenRead(path);
        if (f.Length < 0x100000) return "NOFILE";
        f.Seek(0x100000, SeekOrigin.Begin);
        var buffer = new byte[0x10000];
        int n = f.ReadAtLeast(buffer, buffer.Length, throwOnEndOfStream: false);
        return Convert.ToHexStringLower(SHA256.HashData(buffer.AsSpan(0, n)))[..8];
    }

    static string Str(long v) => v.ToString(CultureInfo.InvariantCulture);
    static string Py(bool b) => b ? "True" : "False";
    static string Py(double? v) => v is null ? "None" : Py(v.Value);

    /// <summary>Python's repr of a float: 1.0, 0.0001, 1e-05.</summary>
    public static string Py(double v)
    {
        string s = v.ToString("R", CultureInfo.InvariantCulture);
        if (s.Contains('E'))
        {
            var parts = s.Split('E');
            int exp = int.Parse(parts[1], CultureInfo.InvariantCulture);
            return $"{parts[0]}e{(exp < 0 ? "-" : "+")}{Math.Abs(exp):D2}";
        }
        return s.Contains('.') || s.Contains("Infinity") || s == "NaN" ? s : s + ".0";
    }
}
