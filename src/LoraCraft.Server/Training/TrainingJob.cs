using LoraCraft.Generation;
using LoraCraft.Training;

namespace LoraCraft.Server.Training;

/// <summary>A finished training job's result: the LoRA by name (in the LoRA folder), the run's numbers and files as URLs.</summary>
public sealed record TrainJobResult(string Lora, string File, int Steps, long Seed, double AverageLoss, IReadOnlyList<string> Saved,
                                    string? Chart, IReadOnlyList<string> Samples);

/// <summary>
/// One training run on the job queue's worker thread: <see cref="LoraTrainer.Run"/> with the job's
/// cancel token; its events become job events (phases, notes, a <see cref="JobStep"/> per optimizer
/// step for the generic progress, and `train_*` events with loss, lr, chart, samples and saves);
/// every LoRA file it saves is copied into the LoRA folder (temp file, rename) so it is listed and
/// usable at once. The run folder (DATA-DIR/train-runs/NAME: loss CSV and chart, samples, resume
/// states) belongs to the server; a new run of the same name starts it afresh.
/// </summary>
public sealed class TrainingJob(ServerEngine engine, TrainingOptions options, string loraTarget, string? samplePrompts)
{
    const string ChartTag = "train.chart", SamplesTag = "train.samples";
    readonly List<string> _saved = new();

    public object? Run(JobContext ctx, Job job)
    {
        Prepare();
        engine.Models.UnloadIdle(); // training loads its own copy of the checkpoint
        var sink = new Sink(e => Translate(ctx, job, e));
        var result = LoraTrainer.Run(options, sink, ctx.Cancel);
        engine.Loras.Refresh();
        if (result.Cancelled)
        {
            ctx.Note($"stopped at step {result.Steps}; the LoRA files saved so far are kept");
            ctx.Cancel.ThrowIfCancellationRequested();
        }
        return new TrainJobResult(LoraCraft.Lora.LoraLibrary.NameOf(loraTarget), FolderOutputs.Relative(engine.Loras.Root, loraTarget), result.Steps, result.Seed,
            result.FinalAverageLoss, _saved, job.Tags.ContainsKey(ChartTag) ? ChartUrl(job.Id) : null, Samples(job).Select((_, i) => SampleUrl(job.Id, i)).ToList());
    }

    void Prepare()
    {
        if (Directory.Exists(options.OutputDir)) Directory.Delete(options.OutputDir, recursive: true);
        Directory.CreateDirectory(options.OutputDir);
        if (samplePrompts is not null && options.SamplePrompts is { } file) File.WriteAllText(file, samplePrompts);
    }

    public static string ChartUrl(string id) => $"/api/v1/train/{id}/chart";
    public static string SampleUrl(string id, int index) => $"/api/v1/train/{id}/samples/{index}";

    /// <summary>The loss chart PNG of a training job, once drawn.</summary>
    public static string? Chart(Job job) => job.Tags.TryGetValue(ChartTag, out var p) ? p as string : null;

    /// <summary>The sample images of a training job so far, oldest first.</summary>
    public static IReadOnlyList<string> Samples(Job job) =>
        job.Tags.TryGetValue(SamplesTag, out var s) && s is List<string> list ? Locked(list) : [];

    static IReadOnlyList<string> Locked(List<string> list)
    {
        lock (list) return list.ToList();
    }

    void Translate(JobContext ctx, Job job, TrainingEvent e)
    {
        string id = ctx.Id;
        switch (e)
        {
            case TrainingPhase p:
                ctx.Report(new JobPhase(id, "train:" + p.Name, p.Name == "load" ? Path.GetFileName(p.Detail) : p.Detail));
                break;
            case TrainingNote n:
                ctx.Note(n.Text);
                break;
            case TrainingPlanned p:
                ctx.Report(new ServerEvent(id, "train_planned", new
                {
                    id, total_steps = p.TotalSteps, epochs = p.Epochs, batches_per_epoch = p.BatchesPerEpoch, train_images = p.TrainImages,
                    reg_images = p.RegImages, modules = p.Modules, parameters = p.Parameters, seed = p.Seed,
                }));
                break;
            case TrainingPreparing p:
                ctx.Report(new ServerEvent(id, "train_preparing", new { id, phase = p.Phase, done = p.Done, total = p.Total }));
                break;
            case TrainingStep s:
                ctx.Report(new JobStep(id, s.Step, s.TotalSteps, 0, 1, s.SecondsPerStep, s.EtaSeconds));
                ctx.Report(new ServerEvent(id, "train_step", new
                {
                    id, step = s.Step, steps = s.TotalSteps, epoch = s.Epoch, epochs = s.Epochs, loss = Finite(s.Loss), average_loss = Finite(s.AverageLoss),
                    lr = s.LearningRate, seconds_per_step = s.SecondsPerStep, eta_seconds = s.EtaSeconds, fraction = s.TotalSteps == 0 ? 0 : s.Step / (double)s.TotalSteps,
                }));
                break;
            case TrainingChart c:
                job.Tags[ChartTag] = c.ChartPath;
                ctx.Report(new ServerEvent(id, "train_chart", new { id, url = ChartUrl(id) }));
                break;
            case TrainingSamples s:
                var list = (List<string>)job.Tags.GetOrAdd(SamplesTag, _ => new List<string>())!;
                int first;
                lock (list)
                {
                    first = list.Count;
                    list.AddRange(s.Paths);
                }
                ctx.Report(new ServerEvent(id, "train_samples", new { id, step = s.Step, urls = s.Paths.Select((_, i) => SampleUrl(id, first + i)).ToList() }));
                break;
            case TrainingSaved s:
                // NAME.safetensors is the final file; NAME-000002 / NAME-step… the intermediate ones, beside it
                var target = s.Final ? loraTarget : Path.Combine(Path.GetDirectoryName(loraTarget)!, Path.GetFileName(s.Path));
                FolderOutputs.CopyInto(s.Path, target);
                engine.Loras.Refresh();
                string name = LoraCraft.Lora.LoraLibrary.NameOf(target);
                _saved.Add(name);
                ctx.Report(new ServerEvent(id, "train_saved", new
                {
                    id, name, file = FolderOutputs.Relative(engine.Loras.Root, target), step = s.Step, epoch = s.Epoch, final = s.Final,
                }));
                break;
            case TrainingStateSaved st:
                ctx.Note($"resumable state written at step {st.Step}");
                break;
        }
    }

    /// <summary>JSON has no NaN: a diverged loss is sent as null (the run stops with its message).</summary>
    static double? Finite(double v) => double.IsFinite(v) ? v : null;

    /// <summary>Reports synchronously on the worker thread (Progress&lt;T&gt; would post to the thread pool).</summary>
    sealed class Sink(Action<TrainingEvent> report) : IProgress<TrainingEvent>
    {
        public void Report(TrainingEvent value) => report(value);
    }
}
