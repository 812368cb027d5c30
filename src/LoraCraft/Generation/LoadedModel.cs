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
        var hold = Hold();
        try
        {
            hold.Apply(set);
            return hold;
        }
        catch
        {
            hold.Dispose();
            throw;
        }
    }

    /// <summary>Holds the model for one job; <see cref="ModelHold.Apply"/> changes its LoRAs while held (per-step schedules).</summary>
    public ModelHold Hold()
    {
        Monitor.Enter(_use);
        return new ModelHold(this);
    }

    public sealed class ModelHold : IDisposable
    {
        readonly LoadedModel _owner;
        int _done;

        internal ModelHold(LoadedModel owner) => _owner = owner;

        /// <summary>Makes <paramref name="set"/> the model's LoRAs; returns how many weights or branches changed.</summary>
        public int Apply(IReadOnlyList<LoraApplication> set)
        {
            ObjectDisposedException.ThrowIf(_done != 0, this);
            int changed = _owner._patcher.Apply(set);
            _owner.Applied = set;
            return changed;
        }

        public void Dispose()
        {
            if (Interlocked.Exchange(ref _done, 1) == 0) Monitor.Exit(_owner._use);
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
