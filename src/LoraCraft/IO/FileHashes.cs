using System.Collections.Concurrent;
using System.Security.Cryptography;
using System.Text.Json;
using LoraCraft.Runtime;

namespace LoraCraft.IO;

/// <summary>
/// The hashes A1111 writes into PNG parameters, cached by (path, size, modification time) in
/// ~/.cache/loracraft/hashes.json so a multi-GB checkpoint is read once, not per generation:
/// `Model hash` = first 10 hex digits of the file's sha256; a LoRA's hash = sha256 of the bytes
/// after the safetensors header (A1111's "addnet" hash), first 12 hex digits.
/// </summary>
public sealed class FileHashes
{
    public static FileHashes Default { get; } = new(Path.Combine(Paths.CacheRoot, "hashes.json"));

    readonly string _cachePath;
    readonly object _lock = new();
    ConcurrentDictionary<string, string>? _cache;
    int _batches;
    bool _dirty;

    public FileHashes(string cachePath) => _cachePath = cachePath;

    /// <summary>
    /// Until the returned scope is disposed, new hashes are kept in memory only; the cache file is
    /// then written once (rewriting it per file made listing a new LoRA folder quadratic).
    /// Scopes nest and may overlap across threads: the last one to end writes.
    /// </summary>
    public IDisposable Batch()
    {
        lock (_lock) _batches++;
        return new BatchScope(this);
    }

    sealed class BatchScope(FileHashes owner) : IDisposable
    {
        int _ended;

        public void Dispose()
        {
            if (Interlocked.Exchange(ref _ended, 1) == 1) return;
            lock (owner._lock)
            {
                if (--owner._batches == 0 && owner._dirty) owner.Save();
            }
        }
    }

    /// <summary>sha256 of the whole file (hex, lower case).</summary>
    public string Sha256(string path) => Cached(path, "sha256", () => HashRange(path, 0));

    /// <summary>sha256 of a safetensors file's data section (after the 8-byte length and the header).</summary>
    public string SafetensorsDataSha256(string path) =>
        Cached(path, "addnet", () => HashRange(path, SafetensorsHeader.Read(path).DataOffset));

    /// <summary>The same, for a header already read (no second parse).</summary>
    public string SafetensorsDataSha256(SafetensorsHeader header) =>
        Cached(header.Path, "addnet", () => HashRange(header.Path, header.DataOffset));

    public string ModelHash(string path) => Sha256(path)[..10];

    /// <summary>The file's sha256 if it was computed before (a listing must not hash gigabytes); else null.</summary>
    public string? KnownSha256(string path)
    {
        var info = new FileInfo(path);
        return info.Exists && Load().TryGetValue($"sha256|{info.FullName}|{info.Length}|{info.LastWriteTimeUtc.Ticks}", out var h) ? h : null;
    }
    public string LoraHash(string path) => SafetensorsDataSha256(path)[..12];
    public string LoraHash(SafetensorsHeader header) => SafetensorsDataSha256(header)[..12];

    static string HashRange(string path, long offset)
    {
        using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 20, FileOptions.SequentialScan);
        stream.Seek(offset, SeekOrigin.Begin);
        return Convert.ToHexStringLower(SHA256.HashData(stream));
    }

    string Cached(string path, string kind, Func<string> compute)
    {
        var info = new FileInfo(path);
        if (!info.Exists) throw new FileNotFoundException($"file not found: {path}", path);
        string key = $"{kind}|{info.FullName}|{info.Length}|{info.LastWriteTimeUtc.Ticks}";
        var cache = Load();
        if (cache.TryGetValue(key, out var hash)) return hash;
        hash = compute();
        cache[key] = hash;
        lock (_lock)
        {
            _dirty = true;
            if (_batches == 0) Save();
        }
        return hash;
    }

    ConcurrentDictionary<string, string> Load()
    {
        lock (_lock)
        {
            if (_cache is not null) return _cache;
            try
            {
                var map = File.Exists(_cachePath)
                    ? JsonSerializer.Deserialize<Dictionary<string, string>>(File.ReadAllBytes(_cachePath)) ?? new()
                    : new();
                _cache = new ConcurrentDictionary<string, string>(map);
            }
            catch (Exception e) when (e is JsonException or IOException or UnauthorizedAccessException)
            {
                _cache = new(); // a damaged cache only costs recomputation
            }
            return _cache;
        }
    }

    /// <summary>Writes the cache file; callers hold the lock.</summary>
    void Save()
    {
        _dirty = false;
        try
        {
            Directory.CreateDirectory(Path.GetDirectoryName(_cachePath)!);
            var tmp = _cachePath + "." + Environment.ProcessId + ".tmp";
            File.WriteAllBytes(tmp, JsonSerializer.SerializeToUtf8Bytes(new SortedDictionary<string, string>(_cache!)));
            File.Move(tmp, _cachePath, overwrite: true);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            // read-only cache folder: hashes are still correct, just not remembered
        }
    }
}
