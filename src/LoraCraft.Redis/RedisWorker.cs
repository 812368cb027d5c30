using System.Diagnostics;
using System.Text.Json;
using LoraCraft.Generation;
using StackExchange.Redis;

namespace LoraCraft.Redis;

/// <summary>How a worker takes jobs.</summary>
public sealed record RedisWorkerOptions
{
    /// <summary>The consumer name in the group (unique per worker): host and process id by default.</summary>
    public string Name { get; init; } = $"{Environment.MachineName}-{Environment.ProcessId}";
    /// <summary>A job whose worker sent no heartbeat for this long is taken over by another worker.</summary>
    public TimeSpan ClaimTimeout { get; init; } = TimeSpan.FromSeconds(30);
    /// <summary>
    /// Affinity's bound: a job waiting longer is taken by the next free worker whatever it has
    /// loaded. <see cref="TimeSpan.Zero"/> turns affinity off (oldest first).
    /// </summary>
    public TimeSpan MaxWait { get; init; } = TimeSpan.FromSeconds(60);
    /// <summary>How often an idle worker looks for jobs.</summary>
    public TimeSpan Poll { get; init; } = TimeSpan.FromMilliseconds(100);
    /// <summary>A job taken over this many times (its workers died running it) fails instead of being tried again.</summary>
    public int MaxDeliveries { get; init; } = 3;
    /// <summary>How long results and completions stay in Redis for the front end to read.</summary>
    public TimeSpan ResultTtl { get; init; } = TimeSpan.FromDays(1);
    /// <summary>Events kept in the events stream (approximately; older ones are trimmed).</summary>
    public int EventsKept { get; init; } = 10_000;
}

/// <summary>What a worker did, for its log and the affinity figures.</summary>
public sealed record RedisWorkerStats(int Jobs, int ModelSwitches, int LoraSwitches, int Reclaimed, int Failed);

/// <summary>
/// A worker: takes jobs from the Redis streams (affinity first: the checkpoint it has loaded, then
/// the same LoRA set, but never past <see cref="RedisWorkerOptions.MaxWait"/>), runs them with its
/// <see cref="GenerationService"/> on the calling thread, and sends the events back. While a job
/// runs it keeps the job's pending entry fresh (a heartbeat) and reads cancel / interrupt / skip;
/// a job whose worker died is taken over after <see cref="RedisWorkerOptions.ClaimTimeout"/>. A job
/// that fails (a checkpoint it cannot load) fails alone; the worker goes on.
/// </summary>
public sealed class RedisWorker : IDisposable
{
    readonly IConnectionMultiplexer _redis;
    readonly RedisKeys _keys;
    readonly GenerationService _service;
    readonly Action<string>? _log;
    JobAffinity? _current;
    int _jobs, _modelSwitches, _loraSwitches, _reclaimed, _failed;

    public RedisWorker(RedisQueueAddress address, GenerationService service, RedisWorkerOptions? options = null, Action<string>? log = null)
        : this(address.Connect(), address, service, options, log) { }

    public RedisWorker(IConnectionMultiplexer redis, RedisQueueAddress address, GenerationService service, RedisWorkerOptions? options = null, Action<string>? log = null)
    {
        _redis = redis;
        _keys = new RedisKeys(address.Prefix);
        _service = service;
        _log = log;
        Options = options ?? new RedisWorkerOptions();
    }

    public RedisWorkerOptions Options { get; }
    public RedisWorkerStats Stats => new(_jobs, _modelSwitches, _loraSwitches, _reclaimed, _failed);
    IDatabase Db => _redis.GetDatabase();

    sealed record Taken(string Stream, string Entry, string Id, string JobJson, JobAffinity Affinity, int Deliveries);

    /// <summary>Takes and runs jobs until <paramref name="stop"/> (a running job is finished first) or <paramref name="maxJobs"/>.</summary>
    public void Run(CancellationToken stop, int maxJobs = int.MaxValue)
    {
        _log?.Invoke($"worker {Options.Name} takes jobs from the queue");
        int done = 0;
        while (!stop.IsCancellationRequested && done < maxJobs)
        {
            Taken? taken;
            try
            {
                Announce(null);
                taken = Next();
            }
            catch (Exception e) when (e is RedisException or TimeoutException)
            {
                _log?.Invoke($"worker {Options.Name}: the queue is not reachable ({e.Message.Split('\n')[0].Trim()}); trying again");
                stop.WaitHandle.WaitOne(TimeSpan.FromSeconds(1));
                continue;
            }
            if (taken is null)
            {
                stop.WaitHandle.WaitOne(Options.Poll);
                continue;
            }
            Execute(taken);
            done++;
        }
    }

    Taken? Next()
    {
        var streams = Db.SetMembers(_keys.Queues).Select(v => v.ToString()).Order(StringComparer.Ordinal).Select(k => (RedisKey)k).ToArray();
        if (streams.Length == 0) return null;
        var claimed = Db.ScriptEvaluate(RedisScripts.Reclaim, streams,
            [RedisKeys.Group, Options.Name, (long)Options.ClaimTimeout.TotalMilliseconds]);
        if (!claimed.IsNull)
        {
            var t = Parse(claimed);
            _reclaimed++;
            _log?.Invoke($"worker {Options.Name} takes over job {t.Id} (its worker stopped answering; delivery {t.Deliveries})");
            return t;
        }
        bool affinity = Options.MaxWait > TimeSpan.Zero;
        var taken = Db.ScriptEvaluate(RedisScripts.Take, streams,
        [
            RedisKeys.Group, Options.Name,
            affinity && _current is { } c ? _keys.Stream(c) : "", affinity && _current is { } m ? _keys.ModelPrefix(m.Model) : "",
            (long)Math.Max(0, Options.MaxWait.TotalMilliseconds),
        ]);
        return taken.IsNull ? null : Parse(taken);
    }

    static Taken Parse(RedisResult r)
    {
        var parts = (RedisResult[])r!;
        var fields = (RedisResult[])parts[2]!;
        var values = new Dictionary<string, string>(StringComparer.Ordinal);
        for (int i = 0; i + 1 < fields.Length; i += 2) values[fields[i].ToString()!] = fields[i + 1].ToString()!;
        return new Taken(parts[0].ToString()!, parts[1].ToString()!, values.GetValueOrDefault("id") ?? "", values.GetValueOrDefault("job") ?? "",
            new JobAffinity(values.GetValueOrDefault("model") ?? "", values.GetValueOrDefault("loras") ?? ""), (int)(long)parts[3]);
    }

    void Execute(Taken t)
    {
        var db = Db;
        if (db.KeyExists(_keys.Done(t.Id)))
        {
            Finish(t, "ignored", "", null); // finished already (by a worker thought dead): only acknowledged
            return;
        }
        if (t.Deliveries > Options.MaxDeliveries)
        {
            Report(t, new JobFailed(t.Id, ErrorKind.Invalid, $"the job was taken over {t.Deliveries - 1} times (its workers stopped while running it); not tried again"));
            return;
        }
        var control = db.HashGetAll(_keys.Control(t.Id)).ToDictionary(e => e.Name.ToString(), e => (long)e.Value);
        if (control.GetValueOrDefault("cancel") > 0)
        {
            Report(t, new JobCancelled(t.Id));
            return;
        }

        if (_current is { } before)
        {
            if (before.Model != t.Affinity.Model) _modelSwitches++;
            else if (before.LoraSet != t.Affinity.LoraSet) _loraSwitches++;
        }
        _current = t.Affinity;
        Announce(t);
        var clock = Stopwatch.StartNew();
        using var cts = new CancellationTokenSource();
        bool lost = false;
        var ctx = new JobContext(t.Id, e =>
        {
            if (!Volatile.Read(ref lost)) Send(t.Id, e, CommandFlags.FireAndForget);
        }, cts.Token);
        Send(t.Id, new JobStarted(t.Id), CommandFlags.None);
        long interrupts = 0, skips = 0;
        var lastBeat = Stopwatch.StartNew();
        int busy = 0;
        using var watch = new Timer(_ =>
        {
            if (Interlocked.Exchange(ref busy, 1) == 1) return;
            try
            {
                var c = Db.HashGetAll(_keys.Control(t.Id)).ToDictionary(e => e.Name.ToString(), e => (long)e.Value);
                if (c.GetValueOrDefault("cancel") > 0) cts.Cancel();
                for (; interrupts < c.GetValueOrDefault("interrupt"); interrupts++) ctx.Interrupt();
                for (; skips < c.GetValueOrDefault("skip"); skips++) ctx.Skip();
                if (lastBeat.Elapsed >= Options.ClaimTimeout / 3)
                {
                    lastBeat.Restart();
                    if ((long)Db.ScriptEvaluate(RedisScripts.Heartbeat, [t.Stream], [RedisKeys.Group, Options.Name, t.Entry]) == 0)
                    {
                        // another worker took the job over (this one was thought dead): stop, it reports
                        Volatile.Write(ref lost, true);
                        cts.Cancel();
                    }
                }
            }
            catch (Exception e) when (e is RedisException or TimeoutException) { } // Redis restarting: next tick
            finally { Volatile.Write(ref busy, 0); }
        }, null, TimeSpan.FromMilliseconds(150), TimeSpan.FromMilliseconds(150));

        JobEvent end;
        GenerationOutput? output = null;
        try
        {
            var job = JobWire.ReadJob(t.JobJson);
            output = _service.Run(job, ctx);
            end = new JobCompleted(t.Id, null);
        }
        catch (OperationCanceledException)
        {
            end = new JobCancelled(t.Id);
        }
        catch (Exception e)
        {
            var (kind, text) = JobQueue.UserFacing(e) ?? (ErrorKind.Invalid, e is JsonException ? "a job this worker cannot read: " + e.Message : "internal error: " + e.Message.Split('\n')[0].Trim());
            end = new JobFailed(t.Id, kind, $"worker {Options.Name}: {text}");
            _current = null; // whatever was loaded, it is not what the job needed
        }
        watch.Dispose();
        while (Volatile.Read(ref busy) == 1) Thread.Sleep(5);
        if (Volatile.Read(ref lost))
        {
            _log?.Invoke($"worker {Options.Name}: job {t.Id} was taken over by another worker; dropped");
            return;
        }
        if (end is JobFailed f)
        {
            _failed++;
            _log?.Invoke($"worker {Options.Name}: job {t.Id} failed: {f.Message}");
        }
        else _log?.Invoke($"worker {Options.Name}: job {t.Id} ({t.Affinity}) {JobWire.Name(end)} in {clock.Elapsed.TotalSeconds:F1} s");
        _jobs++;
        Report(t, end, output);
        Announce(null);
    }

    void Send(string id, JobEvent e, CommandFlags flags)
    {
        try
        {
            Db.StreamAdd(_keys.Events,
            [
                new NameValueEntry("id", id), new NameValueEntry("worker", Options.Name),
                new NameValueEntry("type", JobWire.Name(e)), new NameValueEntry("data", JobWire.Write(e)),
            ], maxLength: Options.EventsKept, useApproximateMaxLength: true, flags: flags);
        }
        catch (Exception x) when (x is RedisException or TimeoutException) { } // a progress event lost while Redis restarts
    }

    /// <summary>The job's one end, retried until Redis takes it (a restart in between loses nothing).</summary>
    void Report(Taken t, JobEvent end, GenerationOutput? output = null)
    {
        string type = end is JobCompleted ? "completed" : JobWire.Name(end);
        Finish(t, type, end is JobCompleted ? "" : JobWire.Write(end), output is null ? null : JobWire.Write(output));
    }

    void Finish(Taken t, string type, string data, string? output)
    {
        for (int attempt = 0; ; attempt++)
        {
            try
            {
                Db.ScriptEvaluate(RedisScripts.Finish,
                    [_keys.Done(t.Id), _keys.Result(t.Id), _keys.Events, t.Stream, _keys.Where],
                    [RedisKeys.Group, t.Entry, t.Id, Options.Name, type, data, (long)Options.ResultTtl.TotalSeconds, Options.EventsKept, output ?? ""]);
                return;
            }
            catch (Exception e) when ((e is RedisException or TimeoutException) && attempt < 600)
            {
                Thread.Sleep(500);
            }
        }
    }

    /// <summary>What this worker has loaded and runs, for listings (P:workers).</summary>
    void Announce(Taken? running)
    {
        var info = JsonSerializer.Serialize(new
        {
            seen = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds(), model = _current?.Model, loras = _current?.LoraSet, job = running?.Id,
            jobs = _jobs, model_switches = _modelSwitches, lora_switches = _loraSwitches,
        });
        Db.HashSet(_keys.Workers, Options.Name, info, flags: CommandFlags.FireAndForget);
    }

    public void Dispose()
    {
        try { Db.HashDelete(_keys.Workers, Options.Name); }
        catch (Exception e) when (e is RedisException or TimeoutException) { }
        _redis.Dispose();
    }
}
