namespace LoraCraft.Generation;

/// <summary>
/// What a running job gets from whoever runs it: its id, where its events go, and the user's
/// controls. Cancel stops at the next step and returns nothing (the CLI's Ctrl-C, ComfyUI's
/// interrupt); Interrupt (A1111) stops at the next step and keeps what is done, the current image
/// as far as it got; Skip (A1111) ends the current image that way and goes on with the next.
/// </summary>
public sealed class JobContext(string id, Action<JobEvent>? sink = null, CancellationToken cancel = default)
{
    int _interrupted, _skipRequests, _skipsTaken;

    public string Id { get; } = id;
    public CancellationToken Cancel { get; } = cancel;
    public bool Interrupted => Volatile.Read(ref _interrupted) == 1;

    public void Report(JobEvent e) => sink?.Invoke(e);
    public void Note(string text) => Report(new JobMessage(Id, text, Warning: false));
    public void Warn(string text) => Report(new JobMessage(Id, text, Warning: true));

    public void Interrupt()
    {
        Interlocked.Exchange(ref _interrupted, 1);
        Forward?.Invoke(JobControl.Interrupt);
    }

    public void Skip()
    {
        Interlocked.Increment(ref _skipRequests);
        Forward?.Invoke(JobControl.Skip);
    }

    /// <summary>Where the controls also go when the work runs elsewhere (a worker on another machine).</summary>
    internal Action<JobControl>? Forward { get; set; }

    /// <summary>Whether the current image should stop now (consumes one skip request).</summary>
    public bool StopCurrentImage()
    {
        if (Interrupted) return true;
        if (Volatile.Read(ref _skipRequests) > _skipsTaken)
        {
            _skipsTaken = Volatile.Read(ref _skipRequests);
            return true;
        }
        return false;
    }
}

/// <summary>A user's control of a running job, as sent to wherever it runs.</summary>
public enum JobControl { Cancel, Interrupt, Skip }
