using LoraCraft.Models;
using LoraCraft.Models.Loading;
using static TorchSharp.torch;

namespace LoraCraft.Generation;

/// <summary>How the cache loads models and how many it keeps.</summary>
public sealed record ModelCacheOptions
{
    /// <summary>Models kept in memory at once (default one, as A1111 does).</summary>
    public int MaxModels { get; init; } = 1;
    /// <summary>Optional cap on the weights' bytes of all kept models; null: no cap beyond <see cref="MaxModels"/>.</summary>
    public long? BudgetBytes { get; init; }
    public ScalarType DType { get; init; } = ScalarType.Float32;
    public Device? Device { get; init; }
}

/// <summary>What identifies a loaded model: the files and how they were loaded.</summary>
public sealed record ModelKey(string Path, string? ConfigDir, string? TokenizerDir, Prediction? Prediction);

/// <summary>A model handed to one job; disposing it gives it back (it is never unloaded while leased).</summary>
public sealed class ModelLease : IDisposable
{
    readonly ModelCache _owner;
    int _released;

    internal ModelLease(ModelCache owner, LoadedModel model)
    {
        _owner = owner;
        Model = model;
    }

    public LoadedModel Model { get; }

    public void Dispose()
    {
        if (Interlocked.Exchange(ref _released, 1) == 0) _owner.Release(Model);
    }
}

/// <summary>
/// Checkpoints loaded on first use and kept within a budget (by default one model), least recently
/// used first out; a model with leases is never unloaded. Loading happens on the calling thread,
/// which for the server is the device's worker.
/// </summary>
public sealed class ModelCache(ModelCacheOptions options) : IDisposable
{
    sealed class Slot(ModelKey key, LoadedModel model)
    {
        public ModelKey Key { get; } = key;
        public LoadedModel Model { get; } = model;
        public int Leases;
        public long LastUse;
    }

    readonly object _lock = new();
    readonly List<Slot> _slots = new();
    long _clock;

    public ModelCacheOptions Options { get; } = options;

    /// <summary>The models in memory now, most recently used first.</summary>
    public IReadOnlyList<LoadedModel> Loaded
    {
        get
        {
            lock (_lock) return _slots.OrderByDescending(s => s.LastUse).Select(s => s.Model).ToList();
        }
    }

    /// <summary>The model for <paramref name="entry"/>, loading it (and unloading others to stay in budget) when needed.</summary>
    public ModelLease Acquire(CheckpointEntry entry, string? tokenizerDir = null, Prediction? prediction = null, Action<string>? onLoad = null)
    {
        var key = new ModelKey(entry.Path, entry.ConfigDir, tokenizerDir, prediction);
        lock (_lock)
        {
            if (_slots.FirstOrDefault(s => s.Key == key) is { } hit)
            {
                hit.Leases++;
                hit.LastUse = ++_clock;
                return new ModelLease(this, hit.Model);
            }
            // make room first: a full-size SDXL beside another model can exhaust memory
            EvictLocked(Options.MaxModels - 1, Options.BudgetBytes);
        }
        onLoad?.Invoke(entry.Name);
        var model = CheckpointLoader.Load(entry.Path, new LoadOptions
        {
            ConfigDir = entry.ConfigDir, TokenizerDir = tokenizerDir, Prediction = prediction, DType = Options.DType, Device = Options.Device,
        });
        var loaded = new LoadedModel(entry, model);
        lock (_lock)
        {
            var slot = new Slot(key, loaded) { Leases = 1, LastUse = ++_clock };
            _slots.Add(slot);
            EvictLocked(Options.MaxModels, Options.BudgetBytes);
            return new ModelLease(this, loaded);
        }
    }

    internal void Release(LoadedModel model)
    {
        lock (_lock)
        {
            var slot = _slots.First(s => ReferenceEquals(s.Model, model));
            slot.Leases--;
            EvictLocked(Options.MaxModels, Options.BudgetBytes);
        }
    }

    /// <summary>Unloads every model not in use (A1111's unload-checkpoint, ComfyUI's /free).</summary>
    public int UnloadIdle()
    {
        lock (_lock) return EvictLocked(0, 0);
    }

    int EvictLocked(int keep, long? budget)
    {
        int evicted = 0;
        while (true)
        {
            var idle = _slots.Where(s => s.Leases == 0).OrderBy(s => s.LastUse).ToList();
            bool over = _slots.Count > Math.Max(keep, 0) || budget is { } b && _slots.Sum(s => s.Model.Bytes) > b;
            if (!over || idle.Count == 0) return evicted;
            _slots.Remove(idle[0]);
            idle[0].Model.Dispose();
            Runtime.Compute.ReleaseFreedMemory();
            evicted++;
        }
    }

    public void Dispose()
    {
        lock (_lock)
        {
            foreach (var s in _slots) s.Model.Dispose();
            _slots.Clear();
        }
    }
}
