using System.Collections.Concurrent;
using LoraCraft.Generation;
using LoraCraft.Redis;
using LoraCraft.Server;
using LoraCraft.Tests.Conformance;
using LoraCraft.Tests.Server;
using Xunit;

namespace LoraCraft.Tests.Distributed;

/// <summary>One Redis for the class; each test has its own key prefix, server and workers.</summary>
public sealed class RedisFixture : IDisposable
{
    readonly Lazy<RedisProcess> _redis = new(() => new RedisProcess());
    public RedisProcess Redis => _redis.Value;
    public void Dispose()
    {
        if (_redis.IsValueCreated) _redis.Value.Dispose();
    }
}

/// <summary>
/// A front end whose generations go through Redis to `loracraft worker` processes, beside an
/// in-process reference server over copies of the same files.
/// </summary>
public sealed class Cluster : IDisposable
{
    public Cluster(RedisProcess redis, string prefix, int queueLimit = 64, Action<ServerFixture>? prepare = null)
    {
        Url = redis.Url(prefix);
        Address = RedisQueueAddress.Parse(Url);
        Transport = new RedisJobTransport(Address);
        Server = new ServerFixture(o => o with { QueueTransport = Transport, QueueLimit = queueLimit });
        prepare?.Invoke(Server);
    }

    public string Url { get; }
    public RedisQueueAddress Address { get; }
    public RedisJobTransport Transport { get; }
    public ServerFixture Server { get; }
    public List<WorkerProcess> Workers { get; } = new();
    public ServerEngine Engine => Server.Engine;

    public WorkerProcess AddWorker(string name, params string[] extra)
    {
        var w = new WorkerProcess(name, Url, Server.CheckpointsDir, Server.LoraDir, extra);
        Workers.Add(w);
        return w;
    }

    public string Logs => string.Join("\n", Workers.Select(w => $"--- {w.Name}\n{w.Log}"));

    public void Dispose()
    {
        foreach (var w in Workers) w.Dispose();
        Server.Dispose();
    }
}

public class RedisQueueTests(RedisFixture redis) : IClassFixture<RedisFixture>
{
    static readonly int JobCount = int.TryParse(Environment.GetEnvironmentVariable("LORACRAFT_REDIS_JOBS"), out var n) ? n : 20;
    static readonly string[] Models = ["tiny-sd15", "tiny-sd15-inpaint"];

    /// <summary>Four LoRA sets: none, one by tag, another by list, both.</summary>
    static GenerationJob Mixed(int i, int steps = 3)
    {
        var job = new GenerationJob
        {
            Model = Models[i % 2], Prompt = $"a photo of a cat {i}", Negative = "blurry", Seed = (ulong)(1000 + i), Steps = steps, Cfg = 5,
            Sampler = "euler", Width = 64, Height = 64,
        };
        return ((i / 2) % 4) switch
        {
            0 => job,
            1 => job with { Prompt = job.Prompt + " <lora:sd15-attn:0.8>" },
            2 => job with { Loras = [new LoraUse("sd15-locon", 0.7, 1)] },
            _ => job with { Prompt = job.Prompt + " <lora:sd15-attn:0.5>", Loras = [new LoraUse("sd15-locon", 1, 1)] },
        };
    }

    static async Task<ServerResult> Done(Job job, Cluster cluster, int minutes = 3)
    {
        var deadline = DateTime.UtcNow.AddMinutes(minutes);
        while (!job.IsFinished)
        {
            if (DateTime.UtcNow > deadline) Assert.Fail($"job {job.Id} still {job.State} after {minutes} min\n{cluster.Logs}");
            if (cluster.Workers.Count > 0 && cluster.Workers.All(w => w.Exited)) Assert.Fail($"every worker has exited\n{cluster.Logs}");
            await Task.WhenAny(job.Completion, Task.Delay(500));
        }
        Assert.True(job.State == JobState.Completed, $"job {job.Id} {job.State}: {job.Error}\n{cluster.Logs}");
        return (ServerResult)job.Result!;
    }

    static void AssertSamePng(byte[] expected, byte[] actual, string what)
    {
        if (expected.AsSpan().SequenceEqual(actual)) return;
        string Info(byte[] png) => LoraCraft.Pipelines.ImageFiles.ReadTextChunks(png, "png")[LoraCraft.Pipelines.ImageFiles.ParametersKey];
        using var x = LoraCraft.Pipelines.ImageFiles.DecodeRgb(expected, "expected");
        using var y = LoraCraft.Pipelines.ImageFiles.DecodeRgb(actual, "actual");
        using var d = (x - y).abs().max();
        Assert.Fail($"{what}: the PNG differs from the single-process one; max pixel difference {d.item<float>() * 255}\nexpected: {Info(expected)}\nactual:   {Info(actual)}");
    }

    static List<byte[]> Reference(IEnumerable<GenerationJob> jobs)
    {
        using var single = new ServerFixture();
        return jobs.Select(j =>
        {
            var job = single.Engine.Submit(j, saveAs: null);
            job.Completion.Wait(TimeSpan.FromMinutes(4));
            Assert.Equal(JobState.Completed, job.State);
            return ((ServerResult)job.Result!).Output.Images[0].Png;
        }).ToList();
    }

    [SkippableFact]
    public async Task TwentyMixedJobsThroughTwoWorkersEqualTheSingleProcessImages()
    {
        Fixture.Require();
        var jobs = Enumerable.Range(0, JobCount).Select(i => Mixed(i)).ToList();
        using var cluster = new Cluster(redis.Redis, "mixed");
        var completions = new ConcurrentDictionary<string, int>();
        cluster.Engine.Queue.Events += (j, e) => { if (e is JobCompleted) completions.AddOrUpdate(j.Id, 1, (_, n) => n + 1); };
        cluster.AddWorker("w1");
        cluster.AddWorker("w2");
        var queued = jobs.Select(j => cluster.Engine.Submit(j, saveAs: "txt2img")).ToList();
        var results = new List<ServerResult>();
        foreach (var q in queued) results.Add(await Done(q, cluster));
        var expected = Reference(jobs);
        for (int i = 0; i < jobs.Count; i++)
            AssertSamePng(expected[i], results[i].Output.Images[0].Png, $"job {i} ({JobAffinity.Of(jobs[i], jobs[i].Model)})");
        Assert.All(queued, q => Assert.Equal(1, completions.GetValueOrDefault(q.Id)));
        Assert.Equal(JobCount, Directory.EnumerateFiles(cluster.Server.OutputsDir, "*.png", SearchOption.AllDirectories).Count());
        // both workers took part
        var workers = queued.Select(q => (string)q.Tags["worker"]!).Distinct().Order().ToList();
        Assert.Equal(["w1", "w2"], workers);
    }
}
