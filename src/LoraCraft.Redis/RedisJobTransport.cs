using LoraCraft.Generation;
using StackExchange.Redis;

namespace LoraCraft.Redis;

/// <summary>
/// The front end's side of the Redis queue (<see cref="IJobTransport"/>): jobs go on a stream per
/// checkpoint and LoRA set (consumer group <see cref="RedisKeys.Group"/>), and one thread reads the
/// events stream, in order, from where it started; after a Redis restart it goes on from the last
/// event it read, so nothing that Redis kept is missed.
/// </summary>
public sealed class RedisJobTransport : IJobTransport
{
    readonly IConnectionMultiplexer _redis;
    readonly RedisKeys _keys;
    readonly CancellationTokenSource _stop = new();
    Thread? _reader;

    public RedisJobTransport(RedisQueueAddress address) : this(address.Connect(), address) { }

    public RedisJobTransport(IConnectionMultiplexer redis, RedisQueueAddress address)
    {
        _redis = redis;
        _keys = new RedisKeys(address.Prefix);
        Describe = address.ToString();
    }

    public string Describe { get; }
    /// <summary>How often the events stream is read when nothing came.</summary>
    public TimeSpan Poll { get; init; } = TimeSpan.FromMilliseconds(40);

    IDatabase Db => _redis.GetDatabase();

    public void Enqueue(string id, GenerationJob job, JobAffinity affinity)
    {
        var stream = _keys.Stream(affinity);
        Reach(() => Db.ScriptEvaluate(RedisScripts.Enqueue, [stream, _keys.Queues, _keys.Where],
            [RedisKeys.Group, id, JobWire.Write(job), affinity.Model, affinity.LoraSet]));
    }

    public bool Withdraw(string id) =>
        (long)Reach(() => Db.ScriptEvaluate(RedisScripts.Withdraw, [_keys.Where, _keys.Control(id)], [RedisKeys.Group, id])) == 1;

    public void Control(string id, JobControl control)
    {
        var key = _keys.Control(id);
        Reach(() =>
        {
            var db = Db;
            db.HashIncrement(key, control.ToString().ToLowerInvariant());
            return db.KeyExpire(key, TimeSpan.FromDays(1));
        });
    }

    T Reach<T>(Func<T> call)
    {
        try { return call(); }
        catch (Exception e) when (e is RedisConnectionException or RedisTimeoutException)
        {
            throw new UserErrorException(ErrorKind.Busy, $"the job queue ({Describe}) cannot be reached: {e.Message.Split('\n')[0].Trim()}");
        }
    }

    public void Start(Action<RemoteEvent> received)
    {
        // from the newest event on: what came before belongs to earlier runs
        var last = Db.StreamRange(_keys.Events, "-", "+", 1, Order.Descending) is [var newest] ? newest.Id : (RedisValue)"0-0";
        _reader = new Thread(() => Read(last, received)) { IsBackground = true, Name = "loracraft-queue-events" };
        _reader.Start();
    }

    void Read(RedisValue last, Action<RemoteEvent> received)
    {
        while (!_stop.IsCancellationRequested)
        {
            StreamEntry[] entries;
            try { entries = Db.StreamRead(_keys.Events, last, 256); }
            catch (Exception e) when (e is RedisException or TimeoutException)
            {
                _stop.Token.WaitHandle.WaitOne(500); // Redis restarting: try again
                continue;
            }
            foreach (var entry in entries)
            {
                last = entry.Id;
                if (Decode(entry) is { } message)
                {
                    try { received(message); }
                    catch (Exception) { } // an observer's bug must not stop the events of every other job
                }
            }
            if (entries.Length == 0) _stop.Token.WaitHandle.WaitOne(Poll);
        }
    }

    RemoteEvent? Decode(StreamEntry entry)
    {
        string id = entry["id"].ToString(), worker = entry["worker"].ToString(), type = entry["type"].ToString(), data = entry["data"].ToString();
        if (id.Length == 0) return null;
        if (type == "completed")
        {
            RedisValue output = RedisValue.Null;
            for (int attempt = 0; attempt < 20 && output.IsNull; attempt++)
            {
                try { output = Db.StringGet(_keys.Result(id)); break; }
                catch (Exception e) when (e is RedisException or TimeoutException) { _stop.Token.WaitHandle.WaitOne(500); }
            }
            return output.IsNull
                ? new RemoteEvent(worker, new JobFailed(id, ErrorKind.NotFound, "the job's result is no longer in the queue"))
                : new RemoteEvent(worker, new JobCompleted(id, JobWire.ReadOutput(output.ToString())));
        }
        try
        {
            return JobWire.ReadEvent(type, data) is { } e ? new RemoteEvent(worker, e) : null;
        }
        catch (System.Text.Json.JsonException)
        {
            return null; // from a newer version: not for us
        }
    }

    public void Dispose()
    {
        _stop.Cancel();
        _reader?.Join(TimeSpan.FromSeconds(5));
        _redis.Dispose();
    }
}
