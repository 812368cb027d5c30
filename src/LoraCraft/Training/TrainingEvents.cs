namespace LoraCraft.Training;

/// <summary>What a training run reports as it goes (plain data, for the CLI's bar, the server's events and the UI).</summary>
public abstract record TrainingEvent;

/// <summary>A phase begins ("scanning images", "loading model", "caching latents", "training").</summary>
public sealed record TrainingPhase(string Name, string Detail) : TrainingEvent;

/// <summary>Something worth telling the user (caption files found, warnings); one line.</summary>
public sealed record TrainingNote(string Text) : TrainingEvent;

/// <summary>The run's shape once known (after the scan, before the model loads).</summary>
public sealed record TrainingPlanned(int TotalSteps, int Epochs, int BatchesPerEpoch, long TrainImages, long RegImages, int Modules, long Parameters, long Seed) : TrainingEvent;

/// <summary>Progress of a preparation phase (latent caching): done of total.</summary>
public sealed record TrainingPreparing(string Phase, int Done, int Total) : TrainingEvent;

/// <summary>One optimizer step done (1-based). AverageLoss is kohya's moving average over the last epoch's steps.</summary>
public sealed record TrainingStep(int Step, int TotalSteps, int Epoch, int Epochs, double Loss, double AverageLoss, double LearningRate, double SecondsPerStep, double EtaSeconds) : TrainingEvent;

/// <summary>Sample images written (kohya names, under OUTPUT/sample).</summary>
public sealed record TrainingSamples(int Step, IReadOnlyList<string> Paths) : TrainingEvent;

/// <summary>The loss chart was redrawn.</summary>
public sealed record TrainingChart(string ChartPath, string CsvPath) : TrainingEvent;

/// <summary>A LoRA file was written (an intermediate or the final one).</summary>
public sealed record TrainingSaved(string Path, int Step, int Epoch, bool Final) : TrainingEvent;

/// <summary>A resumable state folder was written.</summary>
public sealed record TrainingStateSaved(string Directory, int Step) : TrainingEvent;

/// <summary>How a run ended.</summary>
public sealed record TrainingResult
{
    /// <summary>The final LoRA; null when the run stopped early (cancelled).</summary>
    public string? LoraPath { get; init; }
    /// <summary>The last state folder written (resume from it).</summary>
    public string? StateDir { get; init; }
    public int Steps { get; init; }
    public bool Cancelled { get; init; }
    public double FinalAverageLoss { get; init; }
    public long Seed { get; init; }
    public IReadOnlyList<string> Saved { get; init; } = [];
}

/// <summary>The loss became NaN or infinite: training stopped, nothing after the last good save was written.</summary>
public sealed class TrainingDivergedException(string message) : UserErrorException(message);
