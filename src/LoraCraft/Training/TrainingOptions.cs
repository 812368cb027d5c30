using LoraCraft.Models;

namespace LoraCraft.Training;

/// <summary>
/// Everything a LoRA training run needs, as plain data (kohya `train_network.py` settings under
/// .NET names; defaults are kohya's except where noted). The CLI, the server's `/api/v1/train`
/// and the web UI fill this record and hand it to <see cref="LoraTrainer.Run"/>.
/// </summary>
public sealed record TrainingOptions
{
    // model
    public required string ModelPath { get; init; }
    public string? ConfigDir { get; init; }
    public string? TokenizerDir { get; init; }
    /// <summary>Override of the model's prediction (kohya `--v_parameterization`).</summary>
    public Prediction? Prediction { get; init; }
    /// <summary>"cpu" or "cuda".</summary>
    public string Device { get; init; } = "cpu";

    // data: either folders (kohya layout or a flat folder with Repeats) or a dataset config
    public string? TrainDataDir { get; init; }
    public string? RegDataDir { get; init; }
    public string? DatasetConfig { get; init; }
    /// <summary>Repeats of images lying directly in the training folder (our addition to kohya's layout).</summary>
    public int? Repeats { get; init; }
    public int Width { get; init; } = 512;
    public int Height { get; init; } = 512;
    public int BatchSize { get; init; } = 1;
    public bool EnableBucket { get; init; }
    public int MinBucketReso { get; init; } = 256;
    public int MaxBucketReso { get; init; } = 1024;
    public int BucketResoSteps { get; init; } = 64;
    public bool BucketNoUpscale { get; init; }
    /// <summary>Null: `.caption`, else `.txt` (kohya's default is `.caption` only).</summary>
    public string? CaptionExtension { get; init; }
    public bool ShuffleCaption { get; init; }
    public int KeepTokens { get; init; }
    public string? KeepTokensSeparator { get; init; }
    public double CaptionDropoutRate { get; init; }
    public double CaptionTagDropoutRate { get; init; }
    public bool FlipAug { get; init; }
    public bool CacheLatents { get; init; }
    public bool CacheLatentsToDisk { get; init; }

    // output
    public required string OutputDir { get; init; }
    public string OutputName { get; init; } = "last";
    /// <summary>"float" (kohya's default: the trained float32), "fp16" or "bf16".</summary>
    public string SavePrecision { get; init; } = "float";
    public int? SaveEveryNEpochs { get; init; }
    public int? SaveEveryNSteps { get; init; }
    /// <summary>Keep only the newest N epoch files (kohya `--save_last_n_epochs`).</summary>
    public int? SaveLastNEpochs { get; init; }
    public bool SaveState { get; init; }
    /// <summary>A state folder written with <see cref="SaveState"/> (or by a cancelled run) to continue from.</summary>
    public string? Resume { get; init; }
    public string? TrainingComment { get; init; }
    /// <summary>Only the minimum ss_* keys (kohya `--no_metadata`).</summary>
    public bool NoMetadata { get; init; }

    // network
    public LoraNetworkOptions Network { get; init; } = new();

    // optimisation
    /// <summary>Our default is 1e-4, what LoRA guides use (kohya's argument default 2e-6 is for full fine-tuning).</summary>
    public double LearningRate { get; init; } = 1e-4;
    public double? UNetLearningRate { get; init; }
    public double? TextEncoderLearningRate { get; init; }
    public OptimizerKind Optimizer { get; init; } = OptimizerKind.AdamW;
    public AdamWSettings OptimizerSettings { get; init; } = new();
    public string LrScheduler { get; init; } = "constant";
    /// <summary>Steps, or below 1 a fraction of the total steps (kohya accepts both).</summary>
    public double LrWarmupSteps { get; init; }
    public int LrSchedulerNumCycles { get; init; } = 1;
    public double LrSchedulerPower { get; init; } = 1;
    public int MaxTrainSteps { get; init; } = 1600;
    /// <summary>When set, overrides <see cref="MaxTrainSteps"/> (kohya).</summary>
    public int? MaxTrainEpochs { get; init; }
    public int GradientAccumulationSteps { get; init; } = 1;
    /// <summary>0 turns clipping off.</summary>
    public double MaxGradNorm { get; init; } = 1;
    /// <summary>Null: a random seed, reported and recorded in the metadata.</summary>
    public long? Seed { get; init; }
    /// <summary>"no" (float32) or "bf16" (model in bf16; LoRA weights and optimizer state stay float32).</summary>
    public string MixedPrecision { get; init; } = "no";
    public bool GradientCheckpointing { get; init; }

    // diffusion
    public double NoiseOffset { get; init; }
    public TrainingLossOptions Loss { get; init; } = new();
    public double PriorLossWeight { get; init; } = 1;
    public int ClipSkip { get; init; } = 1;
    public int MaxTokenLength { get; init; } = 75;

    // samples
    public string? SamplePrompts { get; init; }
    public int? SampleEveryNSteps { get; init; }
    public int? SampleEveryNEpochs { get; init; }
    public bool SampleAtFirst { get; init; }
    public string SampleSampler { get; init; } = "ddim";

    /// <summary>How often (in steps) the loss chart is redrawn; it is also drawn at each save and at the end.</summary>
    public int ChartEverySteps { get; init; } = 10;
}
