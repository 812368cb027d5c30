namespace LoraCraft.Lora;

/// <summary>A LoRA file held for one job; disposing gives it back to the cache.</summary>
public sealed class LoraFileLease : IDisposable
{
    readonly LoraFileCache _owner;
    int _released;

    internal LoraFileLease(LoraFileCache owner, LoraFile file)
    {
        _owner = owner;
        File = file;
    }

    public LoraFile File { get; }

    public void Dispose()
    {
        if (Interlocked.Exchange(ref _released, 1) == 0) _owner.Release(File);
    }
}

/// <summary>
/// Loaded LoRA tensors kept between jobs (A1111's networks_in_memory), at most
/// <paramref name="capacity"/> files, least recently used out; a file is read again when its size
/// or modification time changed, and never unloaded while a job holds it.
/// </summary>
public sealed class LoraFileCache(int capacity = 16) : IDisposable
{
    sealed class Entry(LoraFile file, long size, DateTime modified)
    {
        public LoraFile File { get; } = file;
        public long Size { get; } = size;
        public DateTime Modified { get; } = modified;
        public int Leases;
        public long LastUse;
        public bool Stale;
    }

    readonly object _lock = new();
    readonly Dictionary<string, Entry> _entries = new(StringComparer.Ordinal);
    readonly List<Entry> _stale = new();
    long _clock;

    public int Capacity { get; } = Math.Max(1, capacity);

    public int Count
    {
        get
        {
            lock (_lock) return _entries.Count;
        }
    }

    public LoraFileLease Acquire(string path)
    {
        var full = Path.GetFullPath(path);
        var info = new FileInfo(full);
        if (!info.Exists) throw new FileNotFoundException($"LoRA not found: {full}", full);
        lock (_lock)
        {
            if (_entries.TryGetValue(full, out var e))
            {
                if (e.Size == info.Length && e.Modified == info.LastWriteTimeUtc)
                {
                    e.Leases++;
                    e.LastUse = ++_clock;
                    return new LoraFileLease(this, e.File);
                }
                _entries.Remove(full);
                Retire(e);
            }
        }
        var file = LoraFile.Load(full);
        lock (_lock)
        {
            var entry = new Entry(file, info.Length, info.LastWriteTimeUtc) { Leases = 1, LastUse = ++_clock };
            if (_entries.Remove(full, out var raced)) Retire(raced);
            _entries[full] = entry;
            Trim();
            return new LoraFileLease(this, file);
        }
    }

    internal void Release(LoraFile file)
    {
        lock (_lock)
        {
            var e = _entries.Values.FirstOrDefault(x => ReferenceEquals(x.File, file)) ?? _stale.FirstOrDefault(x => ReferenceEquals(x.File, file));
            if (e is null) return;
            e.Leases--;
            if (e.Stale && e.Leases == 0)
            {
                _stale.Remove(e);
                e.File.Dispose();
            }
            Trim();
        }
    }

    /// <summary>An entry replaced or evicted: disposed now, or when its last job lets go.</summary>
    void Retire(Entry e)
    {
        if (e.Leases == 0) e.File.Dispose();
        else
        {
            e.Stale = true;
            _stale.Add(e);
        }
    }

    void Trim()
    {
        while (_entries.Count > Capacity)
        {
            var idle = _entries.Where(p => p.Value.Leases == 0).OrderBy(p => p.Value.LastUse).FirstOrDefault();
            if (idle.Value is null) return;
            _entries.Remove(idle.Key);
            idle.Value.File.Dispose();
        }
    }

    public void Dispose()
    {
        lock (_lock)
        {
            foreach (var e in _entries.Values) e.File.Dispose();
            foreach (var e in _stale) e.File.Dispose();
            _entries.Clear();
            _stale.Clear();
        }
    }
}
