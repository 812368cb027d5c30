using LoraCraft.Models;

namespace LoraCraft.Training;

/// <summary>The run's arithmetic (kohya's): batches, optimizer steps per epoch, total steps, epochs, warmup.</summary>
public sealed record TrainingPlan(int BatchesPerEpoch, int StepsPerEpoch, int TotalSteps, int Epochs, int WarmupSteps);

/// <summary>
/// Everything that can be checked before the model is loaded: the settings, the images and
/// captions (via <see cref="TrainingDataset.Scan"/>), the sample prompts and the resume state.
/// Messages name settings by their plain names (the CLI adds its flag spelling).
/// </summary>
public static class TrainingSetup
{
    public static void Validate(TrainingOptions o)
    {
        if (string.IsNullOrWhiteSpace(o.ModelPath)) throw new UserErrorException("no model given");
        if (!File.Exists(o.ModelPath) && !Directory.Exists(o.ModelPath)) throw new FileNotFoundException($"model not found: {o.ModelPath}", o.ModelPath);
        if (o.DatasetConfig is null && o.TrainDataDir is null) throw new UserErrorException("no training data: give a training folder or a dataset config");
        if (string.IsNullOrWhiteSpace(o.OutputName) || o.OutputName.IndexOfAny(Path.GetInvalidFileNameChars()) >= 0)
            throw new UserErrorException($"the output name '{o.OutputName}' is not a valid file name");
        Positive("learning rate", o.LearningRate, allowZero: false);
        if (o.UNetLearningRate is { } u) Positive("UNet learning rate", u, allowZero: true);
        if (o.TextEncoderLearningRate is { } t) Positive("text encoder learning rate", t, allowZero: true);
        if (o.MaxTrainSteps < 1) throw new UserErrorException($"max train steps must be 1 or more, got {o.MaxTrainSteps}");
        if (o.MaxTrainEpochs is < 1) throw new UserErrorException($"max train epochs must be 1 or more, got {o.MaxTrainEpochs}");
        if (o.GradientAccumulationSteps < 1) throw new UserErrorException($"gradient accumulation steps must be 1 or more, got {o.GradientAccumulationSteps}");
        Positive("max grad norm", o.MaxGradNorm, allowZero: true);
        Positive("noise offset", o.NoiseOffset, allowZero: true);
        Positive("prior loss weight", o.PriorLossWeight, allowZero: true);
        if (o.Loss.MinSnrGamma is { } g) Positive("min SNR gamma", g, allowZero: false);
        if (o.LrWarmupSteps < 0 || double.IsNaN(o.LrWarmupSteps)) throw new UserErrorException($"warmup steps must be 0 or more, got {o.LrWarmupSteps}");
        if (o.MixedPrecision is not ("no" or "bf16"))
            throw new UserErrorException($"mixed precision must be 'no' or 'bf16', got '{o.MixedPrecision}'" + (o.MixedPrecision == "fp16" ? " (fp16 overflows in SD's VAE and UNet; bf16 has fp32's range)" : ""));
        if (o.SavePrecision is not ("float" or "fp16" or "bf16")) throw new UserErrorException($"save precision must be float, fp16 or bf16, got '{o.SavePrecision}'");
        if (!CaptionEncoder.MaxTokenLengths.Contains(o.MaxTokenLength)) throw new UserErrorException($"max token length must be 75, 150 or 225, got {o.MaxTokenLength}");
        if (o.ClipSkip < 1) throw new UserErrorException($"clip skip must be 1 or more, got {o.ClipSkip}");
        foreach (var (name, v) in new[] { ("save every N epochs", o.SaveEveryNEpochs), ("save every N steps", o.SaveEveryNSteps), ("save last N epochs", o.SaveLastNEpochs),
                                          ("sample every N steps", o.SampleEveryNSteps), ("sample every N epochs", o.SampleEveryNEpochs) })
            if (v is < 1) throw new UserErrorException($"{name} must be 1 or more, got {v}");
        if (o.ChartEverySteps < 1) throw new UserErrorException($"the chart interval must be 1 or more steps, got {o.ChartEverySteps}");
        if (o.Loss.HuberSchedule is not ("snr" or "exponential" or "constant"))
            throw new UserErrorException($"the Huber schedule must be snr, exponential or constant, got '{o.Loss.HuberSchedule}'");
        if ((o.SampleEveryNSteps is not null || o.SampleEveryNEpochs is not null || o.SampleAtFirst) && o.SamplePrompts is null)
            throw new UserErrorException("sampling is asked for but no sample prompt file is given");
        SamplePrompts.ResolveSampler(o.SampleSampler);
        new LearningRateSchedule(o.LrScheduler, 0, 1).Validate();
        if (o.LrScheduler == "constant" && o.LrWarmupSteps > 0) new LearningRateSchedule(o.LrScheduler, 1, 2).Validate();
        bool trainUNet = o.Network.TrainUNet && (o.UNetLearningRate ?? o.LearningRate) > 0;
        bool trainText = o.Network.TrainTextEncoder && (o.TextEncoderLearningRate ?? o.LearningRate) > 0;
        if (!trainUNet && !trainText) throw new UserErrorException("nothing to train: the UNet and the text encoder are both left out (or have learning rate 0)");
    }

    static void Positive(string name, double v, bool allowZero)
    {
        if (double.IsNaN(v) || double.IsInfinity(v) || v < 0 || (!allowZero && v == 0))
            throw new UserErrorException($"{name} must be a {(allowZero ? "non-negative" : "positive")} number, got {v}");
    }

    /// <summary>The datasets the options describe: a dataset config, or the training (and regularization) folders.</summary>
    public static List<DatasetSpec> Datasets(TrainingOptions o, Action<string>? note = null)
    {
        var subsetDefaults = new SubsetSpec
        {
            ImageDir = "",
            CaptionExtension = o.CaptionExtension,
            FlipAug = o.FlipAug,
            Caption = new CaptionOptions
            {
                Shuffle = o.ShuffleCaption, KeepTokens = o.KeepTokens, KeepTokensSeparator = o.KeepTokensSeparator,
                DropoutRate = o.CaptionDropoutRate, TagDropoutRate = o.CaptionTagDropoutRate,
            },
        };
        var datasetDefaults = new DatasetSpec
        {
            Width = o.Width, Height = o.Height, BatchSize = o.BatchSize, EnableBucket = o.EnableBucket,
            MinBucketReso = o.MinBucketReso, MaxBucketReso = o.MaxBucketReso, BucketResoSteps = o.BucketResoSteps, BucketNoUpscale = o.BucketNoUpscale,
            Subsets = [],
        };
        if (o.DatasetConfig is { } config)
        {
            if (o.TrainDataDir is not null || o.RegDataDir is not null)
                note?.Invoke("note: the dataset config is used; the training/regularization folders given as well are ignored (as kohya does)");
            return DatasetConfig.Load(config, datasetDefaults, subsetDefaults, note);
        }
        var subsets = DatasetFolders.Subsets(o.TrainDataDir!, isReg: false, o.Repeats, subsetDefaults);
        if (o.RegDataDir is { } reg) subsets.AddRange(DatasetFolders.Subsets(reg, isReg: true, o.Repeats, subsetDefaults));
        return [datasetDefaults with { Subsets = subsets }];
    }

    public static TrainingPlan Plan(TrainingOptions o, TrainingDataset data)
    {
        int batches = data.BatchesPerEpoch;
        int stepsPerEpoch = (batches + o.GradientAccumulationSteps - 1) / o.GradientAccumulationSteps;
        int total = o.MaxTrainEpochs is { } e ? e * stepsPerEpoch : o.MaxTrainSteps;
        int epochs = (total + stepsPerEpoch - 1) / stepsPerEpoch;
        int warmup = o.LrWarmupSteps is > 0 and < 1 ? (int)(o.LrWarmupSteps * total) : (int)o.LrWarmupSteps;
        return new TrainingPlan(batches, stepsPerEpoch, total, epochs, warmup);
    }

    /// <summary>A hash of the settings a resume must share with the run it continues.</summary>
    public static string Fingerprint(TrainingOptions o, TrainingDataset data, TrainingPlan plan)
    {
        var text = string.Join("|",
            o.Network, o.Optimizer, o.OptimizerSettings, o.LrScheduler, plan.TotalSteps, plan.WarmupSteps, o.LearningRate, o.UNetLearningRate, o.TextEncoderLearningRate,
            o.GradientAccumulationSteps, o.MixedPrecision, o.NoiseOffset, o.Loss, o.PriorLossWeight, o.ClipSkip, o.MaxTokenLength,
            string.Join(";", data.Images.Select(i => $"{Path.GetFileName(i.Path)}:{i.Repeats}:{i.Bucket.Width}x{i.Bucket.Height}")),
            string.Join(";", data.Specs.Select(s => s.BatchSize)));
        return Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(System.Text.Encoding.UTF8.GetBytes(text)))[..16];
    }

    public static TorchSharp.torch.ScalarType SaveDType(string precision) => precision switch
    {
        "fp16" => TorchSharp.torch.ScalarType.Float16,
        "bf16" => TorchSharp.torch.ScalarType.BFloat16,
        _ => TorchSharp.torch.ScalarType.Float32,
    };

    /// <summary>kohya's file names: NAME-000002.safetensors, NAME-step00000100.safetensors, NAME.safetensors; states add -state.</summary>
    public static string EpochName(string name, int epoch) => FormattableString.Invariant($"{name}-{epoch:D6}");
    public static string StepName(string name, int step) => FormattableString.Invariant($"{name}-step{step:D8}");

    internal static Prediction PredictionOf(TrainingOptions o, StableDiffusionModel model) => o.Prediction ?? model.Prediction;
}
