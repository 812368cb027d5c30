using LoraCraft.Lora;
using LoraCraft.Models;

namespace LoraCraft.Generation;

/// <summary>
/// A checkpoint in memory with what only it may touch: its LoRA targets (built once), its
/// patcher (the one thing that rewrites its weights) and the plans of the LoRAs used on it. A job
/// holds <see cref="Use"/> for its whole run, so no other job re-patches the model mid-job.
/// </summary>
public sealed class LoadedModel : IDisposable
{
    readonly LoraPatcher _patcher = new();
    readonly Dictionary<string, LoraPlan> _plans = new(StringComparer.Ordinal);
    readonly object _use = new();
    LoraTargets? _targets;

    public LoadedModel(CheckpointEntry entry, StableDiffusionModel model)
    {
        Entry = entry;
        Model = model;
        Bytes = model.WeightBytes;
    }

    public CheckpointEntry Entry { get; }
    public StableDiffusionModel Model { get; }
    /// <summary>Memory the weights take (what the cache's budget counts).</summary>
    public long Bytes { get; }
    public LoraTargets Targets => _targets ??= new LoraTargets(Model);
    /// <summary>The LoRA set applied now (empty: the checkpoint's own weights).</summary>
    public IReadOnlyList<LoraApplication> Applied { get; private set; } = [];

    /// <summary>How a file maps onto this model, computed once per loaded file.</summary>
    public LoraPlan Plan(LoraFile file)
    {
        lock (_plans)
        {
            if (_plans.TryGetValue(file.Path, out var plan) && ReferenceEquals(plan.File, file)) return plan;
            return _plans[file.Path] = LoraPlan.Create(file, Targets);
        }
    }

    /// <summary>Holds the model for one job and makes <paramref name="set"/> its LoRAs (rewriting only what changed).</summary>
    public IDisposable Use(IReadOnlyList<LoraApplication> set)
    {
        Monitor.Enter(_use);
        try
        {
            _patcher.Apply(set);
            Applied = set;
            return new Release(this);
        }
        catch
        {
            Monitor.Exit(_use);
            throw;
        }
    }

    sealed class Release(LoadedModel owner) : IDisposable
    {
        int _done;
        public void Dispose()
        {
            if (Interlocked.Exchange(ref _done, 1) == 0) Monitor.Exit(owner._use);
        }
    }

    public void Dispose()
    {
        lock (_use)
        {
            _patcher.Dispose();
            Model.Dispose();
        }
    }
}
