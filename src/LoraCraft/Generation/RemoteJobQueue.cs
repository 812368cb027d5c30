namespace LoraCraft.Generation;

/// <summary>
/// A job queue whose generations run on workers elsewhere (<see cref="IJobTransport"/>, e.g.
/// Redis Streams) while every API sees the same <see cref="Job"/>s as with <see cref="JobQueue"/>:
/// states, events with previews, results, cancel, interrupt and skip. Each job ends exactly once
/// here, whatever the workers do: a job whose worker died and that another worker ran again
/// completes once, its images are announced once. Work that only runs in this process (a coverage
/// check, a ComfyUI graph) goes to a local <see cref="JobQueue"/>. The limit counts the jobs this
/// front end has waiting.
/// </summary>
public sealed class RemoteJobQueue : IJobQueue
{
    readonly object _lock = new();
    readonly IJobTransport _transport;
    readonly JobQueue _local;
    readonly Dictionary<string, Remote> _jobs = new(StringComparer.Ordinal);
    readonly LinkedList<Job> _finished = new();

    sealed class Remote(Job job, Func<GenerationOutput, object?> finish)
    {
        public Job Job { get; } = job;
        public Func<GenerationOutput, object?> Finish { get; } = finish;
        public string? Worker { get; set; }
        public HashSet<int> Images { get; } = new();
    }

    public RemoteJobQueue(IJobTransport transport, JobQueueOptions? options = null)
    {
        Options = options ?? new JobQueueOptions();
        _transport = transport;
        _local = new JobQueue(Options);
        _local.Events += (j, e) => Events?.Invoke(j, e);
        transport.Start(Receive);
    }

    public JobQueueOptions Options { get; }
    /// <summary>Where the generations go (no password).</summary>
    public string Describe => _transport.Describe;
    public event Action<Job, JobEvent>? Events;

    public Job Submit(string kind, object? request, Func<JobContext, object?> work, string? owner = null, string? id = null, bool front = false)
    {
        CheckRoom();
        return _local.Submit(kind, request, work, owner, id, front);
    }

    public Job SubmitGeneration(GenerationJob job, Func<GenerationJob, JobContext, GenerationOutput> run, Func<GenerationOutput, object?> finish,
        object? request = null, string? owner = null, string? id = null)
    {
        var queued = new Job(id ?? Guid.NewGuid().ToString("N"), "generate", request ?? job, _ => throw new InvalidOperationException("runs on a worker"), owner);
        queued.Context.Forward = control => Forward(queued.Id, control);
        queued.Published += (j, e) => Events?.Invoke(j, e);
        int position;
        lock (_lock)
        {
            CheckRoom();
            if (_jobs.ContainsKey(queued.Id) || _local.Get(queued.Id) is not null)
                throw new UserErrorException(ErrorKind.Conflict, $"a job with id {queued.Id} exists already");
            _jobs[queued.Id] = new Remote(queued, finish);
            position = PendingCount() - 1;
        }
        queued.Publish(new JobQueued(queued.Id, position));
        try
        {
            _transport.Enqueue(queued.Id, job, JobAffinity.Of(job, job.Model));
        }
        catch
        {
            lock (_lock) _jobs.Remove(queued.Id);
            throw;
        }
        return queued;
    }

    void CheckRoom()
    {
        lock (_lock)
            if (PendingCount() >= Options.Limit)
                throw new UserErrorException(ErrorKind.Busy, $"the queue is full ({Options.Limit} jobs waiting); try again later");
    }

    int PendingCount() => _local.Pending.Count + _jobs.Values.Count(r => r.Job.State == JobState.Pending);

    void Forward(string id, JobControl control)
    {
        try { _transport.Control(id, control); }
        catch (Exception e) when (JobQueue.UserFacing(e) is not null) { } // the queue is down: the control is lost, the job goes on
    }

    public Job? Get(string id)
    {
        lock (_lock) return _jobs.TryGetValue(id, out var r) ? r.Job : _finished.FirstOrDefault(j => j.Id == id) ?? _local.Get(id);
    }

    public IReadOnlyList<Job> Pending => Mine(JobState.Pending).Concat(_local.Pending).OrderBy(j => j.CreatedAt).ToList();
    public IReadOnlyList<Job> Running => Mine(JobState.Running).Concat(_local.Running).OrderBy(j => j.StartedAt).ToList();

    public IReadOnlyList<Job> Finished
    {
        get
        {
            lock (_lock) return _finished.Concat(_local.Finished).OrderBy(j => j.FinishedAt).ToList();
        }
    }

    List<Job> Mine(JobState state)
    {
        lock (_lock) return _jobs.Values.Select(r => r.Job).Where(j => j.State == state).ToList();
    }

    public bool Cancel(string id)
    {
        Remote? r;
        lock (_lock) r = _jobs.GetValueOrDefault(id);
        if (r is null) return _local.Cancel(id);
        if (r.Job.State == JobState.Pending && Withdraw(r.Job.Id))
        {
            End(r, JobState.Cancelled, null);
            return true;
        }
        r.Job.Cts.Cancel();
        Forward(id, JobControl.Cancel);
        return true;
    }

    bool Withdraw(string id)
    {
        try { return _transport.Withdraw(id); }
        catch (Exception e) when (JobQueue.UserFacing(e) is not null) { return false; }
    }

    public int ClearPending()
    {
        int n = 0;
        foreach (var j in Mine(JobState.Pending))
            if (Cancel(j.Id)) n++;
        return n + _local.ClearPending();
    }

    public void ClearFinished(IEnumerable<string>? ids = null)
    {
        lock (_lock)
        {
            var drop = ids is null ? _finished.ToList() : _finished.Where(j => ids.Contains(j.Id)).ToList();
            foreach (var j in drop) _finished.Remove(j);
        }
        _local.ClearFinished(ids);
    }

    /// <summary>What a worker sent: applied to the job once, in order; late or repeated news of a finished job is dropped.</summary>
    void Receive(RemoteEvent message)
    {
        Remote? r;
        lock (_lock) r = _jobs.GetValueOrDefault(message.Event.JobId);
        if (r is null || r.Job.IsFinished) return;
        var job = r.Job;
        switch (message.Event)
        {
            case JobStarted started:
                if (r.Worker is null) Start(r, message.Worker, started);
                else if (r.Worker != message.Worker)
                {
                    string before = r.Worker;
                    r.Worker = message.Worker;
                    job.Tags["worker"] = message.Worker;
                    job.Publish(new JobMessage(job.Id, $"worker {before} stopped answering; worker {message.Worker} runs the job again", Warning: true));
                }
                return;
            case JobCompleted { Result: GenerationOutput output }:
                object? result;
                try { result = r.Finish(output); }
                catch (Exception e)
                {
                    var (kind, text) = JobQueue.UserFacing(e) ?? (ErrorKind.Invalid, "internal error: " + e.Message.Split('\n')[0].Trim());
                    End(r, JobState.Failed, null, kind, text);
                    return;
                }
                End(r, JobState.Completed, result);
                return;
            case JobFailed failed:
                End(r, JobState.Failed, null, failed.Kind, failed.Message);
                return;
            case JobCancelled:
                End(r, JobState.Cancelled, null);
                return;
        }
        // a worker that lost its job to another sends no more of it
        if (r.Worker is not null && r.Worker != message.Worker) return;
        if (r.Worker is null) Start(r, message.Worker, new JobStarted(job.Id));
        if (message.Event is JobImage image && !r.Images.Add(image.Index)) return;
        job.Publish(message.Event);
    }

    static void Start(Remote r, string worker, JobStarted started)
    {
        r.Worker = worker;
        r.Job.Tags["worker"] = worker;
        r.Job.State = JobState.Running;
        r.Job.StartedAt = DateTimeOffset.UtcNow;
        r.Job.Publish(started);
    }

    void End(Remote r, JobState state, object? result, ErrorKind? kind = null, string? error = null)
    {
        lock (_lock)
        {
            if (!_jobs.Remove(r.Job.Id)) return; // ended already (a cancel and a worker's news can cross)
            _finished.AddLast(r.Job);
            while (_finished.Count > Options.History) _finished.RemoveFirst();
        }
        r.Job.Finish(state, result, kind, error);
    }

    public void Dispose()
    {
        // jobs still waiting are taken back so no worker spends time on what nobody will read
        foreach (var j in Mine(JobState.Pending)) Cancel(j.Id);
        _transport.Dispose();
        _local.Dispose();
        foreach (var r in _jobs.Values.ToList()) End(r, JobState.Cancelled, null);
    }
}
