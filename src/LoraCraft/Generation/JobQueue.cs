using System.Collections.Concurrent;
using System.Threading.Channels;

namespace LoraCraft.Generation;

public enum JobState { Pending, Running, Completed, Failed, Cancelled }

/// <summary>
/// One unit of work in the queue (a generation, a training run …): its state, its events so far
/// (late observers get them replayed), and its result. Everything here is plain data, safe to read
/// from any thread; the work itself only ever runs on a worker thread.
/// </summary>
public sealed class Job
{
    readonly object _lock = new();
    readonly List<JobEvent> _events = new();
    readonly List<Channel<JobEvent>> _subscribers = new();
    readonly TaskCompletionSource<object?> _done = new(TaskCreationOptions.RunContinuationsAsynchronously);
    internal readonly CancellationTokenSource Cts = new();

    internal Job(string id, string kind, object? request, Func<JobContext, object?> work, string? owner)
    {
        Id = id;
        Kind = kind;
        Request = request;
        Work = work;
        Owner = owner;
        Context = new JobContext(id, Publish, Cts.Token);
    }

    public string Id { get; }
    /// <summary>"generate", "train", "download" …</summary>
    public string Kind { get; }
    /// <summary>What was asked (the API's own request object, for listings and history).</summary>
    public object? Request { get; }
    /// <summary>Who submitted it (a ComfyUI client id, a user): events for a client go only to it.</summary>
    public string? Owner { get; }
    internal Func<JobContext, object?> Work { get; }
    public JobContext Context { get; }
    /// <summary>Anything an API layer wants to keep with the job (ComfyUI's prompt number, outputs …).</summary>
    public ConcurrentDictionary<string, object?> Tags { get; } = new();

    public DateTimeOffset CreatedAt { get; } = DateTimeOffset.UtcNow;
    public DateTimeOffset? StartedAt { get; internal set; }
    public DateTimeOffset? FinishedAt { get; internal set; }
    public JobState State { get; internal set; } = JobState.Pending;
    public object? Result { get; private set; }
    public ErrorKind? ErrorKind { get; private set; }
    public string? Error { get; private set; }
    /// <summary>The latest step event (A1111's /progress reads it).</summary>
    public JobStep? LastStep { get; private set; }
    /// <summary>The latest preview image (PNG), if the job asked for previews.</summary>
    public byte[]? LastPreview { get; private set; }
    public Task<object?> Completion => _done.Task;
    public bool IsFinished => State is JobState.Completed or JobState.Failed or JobState.Cancelled;

    /// <summary>Events so far (step events but the last are kept too, without their previews).</summary>
    public IReadOnlyList<JobEvent> Events
    {
        get
        {
            lock (_lock) return _events.ToList();
        }
    }

    /// <summary>
    /// Every event from now on, after a replay of those so far; the reader ends with the job.
    /// Slow readers never hold up the worker: each has its own unbounded channel.
    /// </summary>
    public ChannelReader<JobEvent> Subscribe()
    {
        var channel = Channel.CreateUnbounded<JobEvent>(new UnboundedChannelOptions { SingleReader = true });
        lock (_lock)
        {
            foreach (var e in _events) channel.Writer.TryWrite(e);
            if (IsFinished) channel.Writer.TryComplete();
            else _subscribers.Add(channel);
        }
        return channel.Reader;
    }

    internal void Publish(JobEvent e)
    {
        lock (_lock)
        {
            if (e is JobStep step)
            {
                LastStep = step;
                if (step.Preview is not null) LastPreview = step.Preview;
                // keep the history small: previews only on the newest step
                if (_events.Count > 0 && _events[^1] is JobStep { Preview: not null } previous) _events[^1] = previous with { Preview = null };
            }
            _events.Add(e);
            foreach (var s in _subscribers) s.Writer.TryWrite(e);
        }
        Published?.Invoke(this, e);
    }

    internal event Action<Job, JobEvent>? Published;

    internal void Finish(JobState state, object? result, ErrorKind? kind = null, string? error = null)
    {
        Result = result;
        ErrorKind = kind;
        Error = error;
        FinishedAt = DateTimeOffset.UtcNow;
        State = state;
        Publish(state switch
        {
            JobState.Completed => new JobCompleted(Id, result),
            JobState.Cancelled => new JobCancelled(Id),
            _ => new JobFailed(Id, kind, error ?? "failed"),
        });
        lock (_lock)
        {
            foreach (var s in _subscribers) s.Writer.TryComplete();
            _subscribers.Clear();
        }
        _done.TrySetResult(result);
    }
}

/// <summary>How many jobs may wait, and how many worker threads (one per device) run them.</summary>
public sealed record JobQueueOptions
{
    /// <summary>Jobs waiting beyond the running ones; one more is refused as busy (HTTP 503).</summary>
    public int Limit { get; init; } = 64;
    /// <summary>Worker threads; each runs its jobs one after another (torch state is per thread).</summary>
    public int Workers { get; init; } = 1;
    /// <summary>Finished jobs kept for status and history.</summary>
    public int History { get; init; } = 500;
}

/// <summary>
/// The job queue: FIFO, bounded, one dedicated worker thread per device running torch work
/// synchronously (TorchSharp's dispose scopes and libtorch's grad mode are per thread), so HTTP
/// threads only enqueue and observe. Cancel removes a waiting job or stops a running one at its
/// next step; interrupt and skip are A1111's (see <see cref="JobContext"/>).
/// </summary>
public sealed class JobQueue : IJobQueue
{
    readonly object _lock = new();
    readonly LinkedList<Job> _pending = new();
    readonly List<Job> _running = new();
    readonly LinkedList<Job> _finished = new();
    readonly Dictionary<string, Job> _byId = new(StringComparer.Ordinal);
    readonly List<Thread> _workers = new();
    readonly SemaphoreSlim _available = new(0);
    readonly CancellationTokenSource _stop = new();

    public JobQueue(JobQueueOptions? options = null)
    {
        Options = options ?? new JobQueueOptions();
        for (int i = 0; i < Math.Max(1, Options.Workers); i++)
        {
            var t = new Thread(WorkerLoop) { IsBackground = true, Name = $"loracraft-worker-{i}" };
            _workers.Add(t);
            t.Start();
        }
    }

    public JobQueueOptions Options { get; }

    /// <summary>Every event of every job, on the worker's thread (handlers must be quick and must not throw).</summary>
    public event Action<Job, JobEvent>? Events;

    /// <summary>Queues <paramref name="work"/>; refused as busy when <see cref="JobQueueOptions.Limit"/> jobs already wait.</summary>
    public Job Submit(string kind, object? request, Func<JobContext, object?> work, string? owner = null, string? id = null, bool front = false)
    {
        var job = new Job(id ?? Guid.NewGuid().ToString("N"), kind, request, work, owner);
        job.Published += (j, e) => Events?.Invoke(j, e);
        int position;
        lock (_lock)
        {
            if (_pending.Count >= Options.Limit)
                throw new UserErrorException(ErrorKind.Busy, $"the queue is full ({Options.Limit} jobs waiting); try again later");
            if (_byId.ContainsKey(job.Id)) throw new UserErrorException(ErrorKind.Conflict, $"a job with id {job.Id} exists already");
            if (front) _pending.AddFirst(job);
            else _pending.AddLast(job);
            _byId[job.Id] = job;
            position = front ? 0 : _pending.Count - 1;
        }
        job.Publish(new JobQueued(job.Id, position));
        _available.Release();
        return job;
    }

    public Job SubmitGeneration(GenerationJob job, Func<GenerationJob, JobContext, GenerationOutput> run, Func<GenerationOutput, object?> finish,
        object? request = null, string? owner = null, string? id = null) =>
        Submit("generate", request ?? job, ctx => finish(run(job, ctx)), owner, id);

    public Job? Get(string id)
    {
        lock (_lock) return _byId.GetValueOrDefault(id);
    }

    public IReadOnlyList<Job> Pending
    {
        get
        {
            lock (_lock) return _pending.ToList();
        }
    }

    public IReadOnlyList<Job> Running
    {
        get
        {
            lock (_lock) return _running.ToList();
        }
    }

    /// <summary>Finished jobs, oldest first.</summary>
    public IReadOnlyList<Job> Finished
    {
        get
        {
            lock (_lock) return _finished.ToList();
        }
    }

    /// <summary>Cancels a waiting or running job; false when it is unknown or finished.</summary>
    public bool Cancel(string id)
    {
        Job? job;
        lock (_lock)
        {
            if (!_byId.TryGetValue(id, out job) || job.IsFinished) return false;
            if (job.State == JobState.Pending)
            {
                _pending.Remove(job);
                Retire(job);
                job.Finish(JobState.Cancelled, null);
                return true;
            }
        }
        job.Cts.Cancel();
        return true;
    }

    /// <summary>Removes every waiting job (ComfyUI's queue clear); returns how many.</summary>
    public int ClearPending()
    {
        List<Job> removed;
        lock (_lock)
        {
            removed = _pending.ToList();
            _pending.Clear();
            foreach (var j in removed) Retire(j);
        }
        foreach (var j in removed) j.Finish(JobState.Cancelled, null);
        return removed.Count;
    }

    /// <summary>Forgets finished jobs (ComfyUI's history clear).</summary>
    public void ClearFinished(IEnumerable<string>? ids = null)
    {
        lock (_lock)
        {
            var drop = ids is null ? _finished.ToList() : _finished.Where(j => ids.Contains(j.Id)).ToList();
            foreach (var j in drop)
            {
                _finished.Remove(j);
                _byId.Remove(j.Id);
            }
        }
    }

    void Retire(Job job)
    {
        _finished.AddLast(job);
        while (_finished.Count > Options.History)
        {
            _byId.Remove(_finished.First!.Value.Id);
            _finished.RemoveFirst();
        }
    }

    void WorkerLoop()
    {
        while (!_stop.IsCancellationRequested)
        {
            try { _available.Wait(_stop.Token); }
            catch (OperationCanceledException) { return; }
            Job? job;
            lock (_lock)
            {
                job = _pending.First?.Value;
                if (job is null) continue;
                _pending.RemoveFirst();
                _running.Add(job);
                job.State = JobState.Running;
                job.StartedAt = DateTimeOffset.UtcNow;
            }
            job.Publish(new JobStarted(job.Id));
            Execute(job);
        }
    }

    void Execute(Job job)
    {
        (JobState State, object? Result, ErrorKind? Kind, string? Error) end;
        try
        {
            var result = job.Work(job.Context);
            job.Cts.Token.ThrowIfCancellationRequested();
            end = (JobState.Completed, result, null, null);
        }
        catch (OperationCanceledException)
        {
            end = (JobState.Cancelled, null, null, null);
        }
        catch (Exception e) when (UserFacing(e) is var (kind, message))
        {
            end = (JobState.Failed, null, kind, message);
        }
        catch (Exception e)
        {
            // a bug, not the user's: its first line (libtorch appends its whole C++ stack)
            end = (JobState.Failed, null, null, "internal error: " + e.Message.Split('\n')[0].Trim());
        }
        // out of the running list before anyone hears it finished
        lock (_lock)
        {
            _running.Remove(job);
            Retire(job);
        }
        job.Finish(end.State, end.Result, end.Kind, end.Error);
    }

    /// <summary>The kind and one-line message of a mistake a user can fix; null for a bug.</summary>
    public static (ErrorKind Kind, string Message)? UserFacing(Exception e) => e switch
    {
        UserErrorException u => (u.Kind, u.Message),
        FileNotFoundException f => (ErrorKind.NotFound, f.Message),
        DirectoryNotFoundException d => (ErrorKind.NotFound, d.Message),
        _ => null,
    };

    public void Dispose()
    {
        _stop.Cancel();
        foreach (var t in _workers) t.Join(TimeSpan.FromSeconds(30));
        lock (_lock)
        {
            foreach (var j in _pending) j.Finish(JobState.Cancelled, null);
            _pending.Clear();
        }
    }
}
