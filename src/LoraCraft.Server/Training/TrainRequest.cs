using LoraCraft.Generation;
using LoraCraft.Training;

namespace LoraCraft.Server.Training;

/// <summary>
/// POST /api/v1/train: a LoRA training run in plain JSON (snake_case; kohya's settings under short
/// names; anything left out keeps <see cref="TrainingOptions"/>' default). Data comes only from
/// dataset folders of the server's training-data root, by name; the LoRA goes into the LoRA folder
/// as OUTPUT_NAME.safetensors.
/// </summary>
public sealed record TrainRequest
{
    /// <summary>Checkpoint name (null: the current one).</summary>
    public string? Model { get; init; }
    /// <summary>A folder of the training-data root: `N_class` subfolders (kohya) or images directly in it.</summary>
    public string Dataset { get; init; } = "";
    public string? RegDataset { get; init; }
    /// <summary>Repeats of images lying directly in the dataset folder (default 1).</summary>
    public int? Repeats { get; init; }
    public string OutputName { get; init; } = "";
    /// <summary>Replace a LoRA of the same name.</summary>
    public bool? Force { get; init; }

    /// <summary>max_train_steps (1600).</summary>
    public int? Steps { get; init; }
    /// <summary>max_train_epochs: overrides steps.</summary>
    public int? Epochs { get; init; }
    /// <summary>network_dim (4).</summary>
    public int? Rank { get; init; }
    /// <summary>network_alpha (1).</summary>
    public double? Alpha { get; init; }
    public int? ConvRank { get; init; }
    public double? ConvAlpha { get; init; }
    public double? NetworkDropout { get; init; }
    public bool? TrainUnetOnly { get; init; }
    public bool? TrainTextEncoderOnly { get; init; }
    /// <summary>1e-4.</summary>
    public double? LearningRate { get; init; }
    public double? UnetLr { get; init; }
    public double? TextEncoderLr { get; init; }
    /// <summary>adamw (default) or adamw8bit.</summary>
    public string? Optimizer { get; init; }
    public string? LrScheduler { get; init; }
    public double? LrWarmupSteps { get; init; }
    /// <summary>Square training size (512); width/height override it.</summary>
    public int? Resolution { get; init; }
    public int? Width { get; init; }
    public int? Height { get; init; }
    public int? BatchSize { get; init; }
    public int? GradientAccumulationSteps { get; init; }
    public bool? EnableBucket { get; init; }
    public int? MinBucketReso { get; init; }
    public int? MaxBucketReso { get; init; }
    public bool? BucketNoUpscale { get; init; }
    public string? CaptionExtension { get; init; }
    public bool? ShuffleCaption { get; init; }
    public int? KeepTokens { get; init; }
    public double? CaptionDropoutRate { get; init; }
    public bool? FlipAug { get; init; }
    public bool? CacheLatents { get; init; }
    /// <summary>"no" (float32) or "bf16".</summary>
    public string? MixedPrecision { get; init; }
    public bool? GradientCheckpointing { get; init; }
    public double? NoiseOffset { get; init; }
    public double? MinSnrGamma { get; init; }
    public double? PriorLossWeight { get; init; }
    public int? ClipSkip { get; init; }
    public double? MaxGradNorm { get; init; }
    public long? Seed { get; init; }
    public int? SaveEveryNEpochs { get; init; }
    public int? SaveEveryNSteps { get; init; }
    /// <summary>float (default), fp16 or bf16.</summary>
    public string? SavePrecision { get; init; }
    public string? Comment { get; init; }
    /// <summary>kohya prompt-file text: one prompt a line, with --n --w --h --d --s --l.</summary>
    public string? SamplePrompts { get; init; }
    public int? SampleEveryNSteps { get; init; }
    public int? SampleEveryNEpochs { get; init; }
    public string? SampleSampler { get; init; }
    /// <summary>Redraw the loss chart every N steps (10).</summary>
    public int? ChartEvery { get; init; }

    /// <summary>
    /// The options of the run. Paths come only from the server (model file, dataset folders, the
    /// run folder); <paramref name="promptsFile"/> is where the sample prompts will be written.
    /// </summary>
    public TrainingOptions ToOptions(CheckpointEntry model, string dataset, string? regDataset, string runDir, string outputName, string? promptsFile, string device)
    {
        var d = new TrainingOptions { ModelPath = model.Path, OutputDir = runDir };
        int width = Width ?? Resolution ?? d.Width, height = Height ?? Resolution ?? d.Height;
        var network = new LoraNetworkOptions();
        if (TrainUnetOnly == true && TrainTextEncoderOnly == true)
            throw new UserErrorException("train_unet_only and train_text_encoder_only leave nothing to train: give one of them") { Field = "train_unet_only" };
        return d with
        {
            ConfigDir = model.ConfigDir,
            Device = device,
            TrainDataDir = dataset,
            RegDataDir = regDataset,
            Repeats = Repeats ?? 1,
            Width = width, Height = height,
            BatchSize = BatchSize ?? d.BatchSize,
            EnableBucket = EnableBucket ?? d.EnableBucket,
            MinBucketReso = MinBucketReso ?? d.MinBucketReso,
            MaxBucketReso = MaxBucketReso ?? d.MaxBucketReso,
            BucketNoUpscale = BucketNoUpscale ?? d.BucketNoUpscale,
            CaptionExtension = string.IsNullOrEmpty(CaptionExtension) ? null : CaptionExtension.StartsWith('.') ? CaptionExtension : "." + CaptionExtension,
            ShuffleCaption = ShuffleCaption ?? d.ShuffleCaption,
            KeepTokens = KeepTokens ?? d.KeepTokens,
            CaptionDropoutRate = CaptionDropoutRate ?? d.CaptionDropoutRate,
            FlipAug = FlipAug ?? d.FlipAug,
            CacheLatents = CacheLatents ?? d.CacheLatents,
            OutputName = outputName,
            SavePrecision = SavePrecision ?? d.SavePrecision,
            SaveEveryNEpochs = SaveEveryNEpochs,
            SaveEveryNSteps = SaveEveryNSteps,
            TrainingComment = Comment,
            Network = network with
            {
                Dim = Rank ?? network.Dim,
                Alpha = Alpha ?? network.Alpha,
                ConvDim = ConvRank,
                ConvAlpha = ConvAlpha ?? network.ConvAlpha,
                Dropout = NetworkDropout ?? network.Dropout,
                TrainUNet = TrainTextEncoderOnly != true,
                TrainTextEncoder = TrainUnetOnly != true,
            },
            LearningRate = LearningRate ?? d.LearningRate,
            UNetLearningRate = UnetLr,
            TextEncoderLearningRate = TextEncoderLr,
            Optimizer = Optimizer?.ToLowerInvariant() switch
            {
                null or "adamw" => OptimizerKind.AdamW,
                "adamw8bit" or "adamw_8bit" => OptimizerKind.AdamW8bit,
                var o => throw new UserErrorException($"optimizer must be adamw or adamw8bit, got '{o}'") { Field = "optimizer" },
            },
            LrScheduler = LrScheduler ?? d.LrScheduler,
            LrWarmupSteps = LrWarmupSteps ?? d.LrWarmupSteps,
            MaxTrainSteps = Steps ?? d.MaxTrainSteps,
            MaxTrainEpochs = Epochs,
            GradientAccumulationSteps = GradientAccumulationSteps ?? d.GradientAccumulationSteps,
            MaxGradNorm = MaxGradNorm ?? d.MaxGradNorm,
            Seed = Seed,
            MixedPrecision = MixedPrecision ?? d.MixedPrecision,
            GradientCheckpointing = GradientCheckpointing ?? d.GradientCheckpointing,
            NoiseOffset = NoiseOffset ?? d.NoiseOffset,
            Loss = d.Loss with { MinSnrGamma = MinSnrGamma },
            PriorLossWeight = PriorLossWeight ?? d.PriorLossWeight,
            ClipSkip = ClipSkip ?? d.ClipSkip,
            SamplePrompts = promptsFile,
            SampleEveryNSteps = SampleEveryNSteps,
            SampleEveryNEpochs = SampleEveryNEpochs,
            SampleSampler = SampleSampler ?? d.SampleSampler,
            ChartEverySteps = ChartEvery ?? d.ChartEverySteps,
        };
    }
}
