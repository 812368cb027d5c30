namespace LoraCraft.Generation;

/// <summary>
/// What the APIs need of a job queue, whichever runs the work: <see cref="JobQueue"/> (worker
/// threads in this process) or <see cref="RemoteJobQueue"/> (generations on other machines through
/// an <see cref="IJobTransport"/>, e.g. Redis). The server holds one and does not care which.
/// </summary>
public interface IJobQueue : IDisposable
{
    JobQueueOptions Options { get; }

    /// <summary>Every event of every job (handlers must be quick and must not throw).</summary>
    event Action<Job, JobEvent>? Events;

    /// <summary>Work that only runs in this process (a coverage check, a ComfyUI graph, training …).</summary>
    Job Submit(string kind, object? request, Func<JobContext, object?> work, string? owner = null, string? id = null, bool front = false);

    /// <summary>
    /// A generation as plain data: <paramref name="run"/> runs it here, or the queue ships
    /// <paramref name="job"/> to a worker instead; either way <paramref name="finish"/> turns the
    /// output into the job's result in this process (saving files, for instance).
    /// </summary>
    Job SubmitGeneration(GenerationJob job, Func<GenerationJob, JobContext, GenerationOutput> run, Func<GenerationOutput, object?> finish,
        object? request = null, string? owner = null, string? id = null);

    Job? Get(string id);
    IReadOnlyList<Job> Pending { get; }
    IReadOnlyList<Job> Running { get; }
    /// <summary>Finished jobs, oldest first.</summary>
    IReadOnlyList<Job> Finished { get; }

    /// <summary>Cancels a waiting or running job; false when it is unknown or finished.</summary>
    bool Cancel(string id);
    /// <summary>Removes every waiting job (ComfyUI's queue clear); returns how many.</summary>
    int ClearPending();
    /// <summary>Forgets finished jobs (ComfyUI's history clear).</summary>
    void ClearFinished(IEnumerable<string>? ids = null);
}
