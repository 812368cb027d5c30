namespace LoraCraft.Generation;

/// <summary>
/// Carries generation jobs to workers on other machines and their events back (the Redis
/// implementation is LoraCraft.Redis's <c>RedisJobTransport</c>). Jobs go out as plain data; what
/// comes back is the workers' events, a completion carrying the <see cref="GenerationOutput"/>.
/// </summary>
public interface IJobTransport : IDisposable
{
    /// <summary>Where jobs go, for messages (no password).</summary>
    string Describe { get; }

    /// <summary>Puts a job on the shared queue; a <see cref="UserErrorException"/> (busy) when the queue cannot be reached.</summary>
    void Enqueue(string id, GenerationJob job, JobAffinity affinity);

    /// <summary>Takes a job back off the queue before any worker has it; false when one has.</summary>
    bool Withdraw(string id);

    /// <summary>Passes a user's control (cancel, interrupt, skip) to the worker running the job.</summary>
    void Control(string id, JobControl control);

    /// <summary>
    /// Starts delivering what workers send: each job's events (<see cref="JobStarted"/> again when
    /// another worker took over a job whose worker died) and at the end <see cref="JobCompleted"/>
    /// (with its <see cref="GenerationOutput"/>), <see cref="JobFailed"/> or <see cref="JobCancelled"/>.
    /// Called from one thread, in order.
    /// </summary>
    void Start(Action<RemoteEvent> received);
}

/// <summary>An event of a job as a worker sent it.</summary>
public sealed record RemoteEvent(string Worker, JobEvent Event);
