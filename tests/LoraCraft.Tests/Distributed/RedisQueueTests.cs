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

public class RedisQueueFaultTests(RedisFixture redis) : IClassFixture<RedisFixture>
{
    static GenerationJob Job(int seed, int steps = 3, string model = "tiny-sd15", int batch = 1) => new()
    {
        Model = model, Prompt = $"a lighthouse {seed} <lora:sd15-attn:0.8>", Seed = (ulong)seed, Steps = steps, Cfg = 5, Sampler = "euler",
        Width = 64, Height = 64, BatchCount = batch,
    };

    static async Task WaitFor(Func<bool> condition, Cluster cluster, string what, int seconds = 120)
    {
        var deadline = DateTime.UtcNow.AddSeconds(seconds);
        while (!condition())
        {
            if (DateTime.UtcNow > deadline) Assert.Fail($"{what}: not within {seconds} s\n{cluster.Logs}");
            await Task.Delay(50);
        }
    }

    static async Task Finished(Job job, Cluster cluster, JobState state = JobState.Completed)
    {
        await WaitFor(() => job.IsFinished, cluster, $"job {job.Id} to finish", 300);
        Assert.True(job.State == state, $"job {job.Id}: {job.State} ({job.Error}), expected {state}\n{cluster.Logs}");
    }

    [SkippableFact]
    public async Task AKilledWorkersJobIsRunAgainAndEveryJobCompletesOnce()
    {
        Fixture.Require();
        using var cluster = new Cluster(redis.Redis, "killed");
        var completions = new ConcurrentDictionary<string, int>();
        var images = new ConcurrentDictionary<string, int>();
        cluster.Engine.Queue.Events += (j, e) =>
        {
            if (e is JobCompleted) completions.AddOrUpdate(j.Id, 1, (_, n) => n + 1);
            if (e is JobImage) images.AddOrUpdate(j.Id, 1, (_, n) => n + 1);
        };
        var a = cluster.AddWorker("wa", "--claim-timeout", "2");
        var b = cluster.AddWorker("wb", "--claim-timeout", "2");
        var jobs = new List<Job> { cluster.Engine.Submit(Job(1, steps: 40), saveAs: "txt2img") };
        jobs.AddRange(Enumerable.Range(2, 5).Select(i => cluster.Engine.Submit(Job(i), saveAs: "txt2img")));
        var first = jobs[0];
        await WaitFor(() => first.LastStep is { Step: >= 2 }, cluster, "the long job to be running");
        var victim = (string)first.Tags["worker"]! == "wa" ? a : b;
        victim.Kill();
        foreach (var j in jobs) await Finished(j, cluster);
        Assert.All(jobs, j => Assert.Equal(1, completions.GetValueOrDefault(j.Id)));
        Assert.All(jobs, j => Assert.Equal(1, images.GetValueOrDefault(j.Id)));
        Assert.Equal(jobs.Count, Directory.EnumerateFiles(cluster.Server.OutputsDir, "*.png", SearchOption.AllDirectories).Count());
        Assert.NotEqual(victim.Name, (string)first.Tags["worker"]!);
        Assert.Contains(first.Events, e => e is JobMessage { Warning: true } m && m.Text.Contains($"worker {victim.Name} stopped answering"));
    }

    [SkippableFact]
    public async Task TheQueueLimitHoldsAndAWithdrawnJobNeverRuns()
    {
        Fixture.Require();
        using var cluster = new Cluster(redis.Redis, "limit", queueLimit: 3);
        var waiting = Enumerable.Range(1, 3).Select(i => cluster.Engine.Submit(Job(i), saveAs: null)).ToList();
        var full = Assert.Throws<UserErrorException>(() => cluster.Engine.Submit(Job(4), saveAs: null));
        Assert.Equal(ErrorKind.Busy, full.Kind);
        using (var r = await cluster.Server.Http.PostAsync("/api/v1/generate", System.Net.Http.Json.JsonContent.Create(new { prompt = "x", steps = 2, width = 64, height = 64 })))
            Assert.Equal(System.Net.HttpStatusCode.ServiceUnavailable, r.StatusCode);
        Assert.True(cluster.Engine.Queue.Cancel(waiting[1].Id));
        Assert.Equal(JobState.Cancelled, waiting[1].State);
        var last = cluster.Engine.Submit(Job(5), saveAs: null);
        cluster.AddWorker("w1");
        foreach (var j in new[] { waiting[0], waiting[2], last }) await Finished(j, cluster);
        Assert.DoesNotContain(waiting[1].Id, cluster.Logs);
    }

    [SkippableFact]
    public async Task AWorkerThatCannotLoadACheckpointFailsThatJobAndKeepsServing()
    {
        Fixture.Require();
        using var cluster = new Cluster(redis.Redis, "broken", prepare: s =>
        {
            File.WriteAllBytes(Path.Combine(s.CheckpointsDir, "tiny-broken.safetensors"), "not a checkpoint at all, just text"u8.ToArray());
            s.Engine.Catalog.Refresh();
        });
        cluster.AddWorker("w1");
        var broken = cluster.Engine.Submit(Job(1, model: "tiny-broken"), saveAs: null);
        var good = cluster.Engine.Submit(Job(2), saveAs: null);
        await Finished(broken, cluster, JobState.Failed);
        Assert.StartsWith("worker w1: ", broken.Error);
        await Finished(good, cluster);
        Assert.False(cluster.Workers[0].Exited);
    }

    [SkippableFact]
    public async Task SkipInterruptAndCancelReachTheWorker()
    {
        Fixture.Require();
        using var cluster = new Cluster(redis.Redis, "controls");
        cluster.AddWorker("w1");
        var s = cluster.Server;
        var job = cluster.Engine.Submit(Job(1, steps: 200, batch: 2), saveAs: null);
        await WaitFor(() => job.LastStep is { Image: 0, Step: >= 1 }, cluster, "image 1 to be sampling");
        (await s.Http.PostAsync($"/api/v1/jobs/{job.Id}/skip", null)).EnsureSuccessStatusCode();
        await WaitFor(() => job.LastStep is { Image: 1, Step: >= 1 }, cluster, "image 2 to be sampling after the skip");
        (await s.Http.PostAsync("/sdapi/v1/interrupt", null)).EnsureSuccessStatusCode();
        await Finished(job, cluster);
        var output = ((ServerResult)job.Result!).Output;
        Assert.True(output.Interrupted);
        Assert.Equal(2, output.Images.Count);
        Assert.All(output.Images, i => Assert.True(i.Partial));

        var running = cluster.Engine.Submit(Job(2, steps: 500), saveAs: null);
        var waiting = cluster.Engine.Submit(Job(3), saveAs: null);
        await WaitFor(() => running.LastStep is { Step: >= 1 }, cluster, "the long job to be sampling");
        Assert.True(cluster.Engine.Queue.Cancel(waiting.Id));
        Assert.Equal(JobState.Cancelled, waiting.State);
        (await s.Http.PostAsync($"/api/v1/jobs/{running.Id}/cancel", null)).EnsureSuccessStatusCode();
        await Finished(running, cluster, JobState.Cancelled);
        Assert.True(running.LastStep!.Step < 450);
        Assert.DoesNotContain(waiting.Id, cluster.Logs);
    }

    [SkippableFact]
    public async Task ARedisRestartLosesNoAcceptedJob()
    {
        Fixture.Require();
        using var restartable = new RedisProcess();
        using var cluster = new Cluster(restartable, "restart");
        var jobs = Enumerable.Range(1, 3).Select(i => cluster.Engine.Submit(Job(i), saveAs: null)).ToList();
        restartable.Kill();
        restartable.Start();
        cluster.AddWorker("w1");
        foreach (var j in jobs) await Finished(j, cluster);
    }
}

/// <summary>The affinity rule itself, on the take script (no models): checkpoint, then LoRA set, never past the bound.</summary>
public class RedisAffinityTests(RedisFixture redis) : IClassFixture<RedisFixture>
{
    [Fact]
    public async Task WorkersPreferTheirCheckpointThenTheirLoraSetButNotPastTheBound()
    {
        var address = RedisQueueAddress.Parse(redis.Redis.Url("affinity"));
        using var connection = address.Connect();
        var db = connection.GetDatabase();
        var keys = new RedisKeys(address.Prefix);
        using var transport = new RedisJobTransport(connection, address);
        void Put(string id, string model, string loras)
        {
            transport.Enqueue(id, new GenerationJob { Model = model }, new JobAffinity(model, loras));
            Thread.Sleep(5); // distinct stream times
        }
        string? Take(JobAffinity? current, double maxWaitMs)
        {
            var streams = db.SetMembers(keys.Queues).Select(v => (StackExchange.Redis.RedisKey)v.ToString()).ToArray();
            var r = db.ScriptEvaluate(RedisScripts.Take, streams,
                [RedisKeys.Group, "w", current is null ? "" : keys.Stream(current), current is null ? "" : keys.ModelPrefix(current.Model), (long)maxWaitMs]);
            if (r.IsNull) return null;
            var fields = (StackExchange.Redis.RedisResult[])((StackExchange.Redis.RedisResult[])r!)[2]!;
            return fields[1].ToString();
        }
        Put("a", "m1", "s1");
        Put("b", "m2", "");
        Put("c", "m1", "s2");
        Put("d", "m1", "s1");
        var mine = new JobAffinity("m1", "s1");
        Assert.Equal("a", Take(mine, 60_000));
        Assert.Equal("d", Take(mine, 60_000)); // same checkpoint and LoRA set, though b and c are older
        Assert.Equal("c", Take(mine, 60_000)); // same checkpoint
        Assert.Equal("b", Take(mine, 60_000)); // anything
        Assert.Null(Take(mine, 60_000));
        Put("e", "m2", "");
        await Task.Delay(300);
        Put("f", "m1", "s1");
        Assert.Equal("e", Take(mine, 200)); // e waited past the bound: the next free worker takes it
        Assert.Equal("f", Take(null, 200));
        Put("g", "m2", "");
        Put("h", "m1", "s1");
        Assert.Equal("g", Take(mine, 0)); // no bound: oldest first
        Assert.Equal("h", Take(mine, 0));
    }

    /// <summary>
    /// The note's figure: two workers draining a backlog of 48 jobs (two checkpoints, four LoRA
    /// sets, shuffled) through the real take script, counting what each worker had to switch.
    /// </summary>
    [Fact]
    public void AffinityCutsSwitchesOnAMixedQueue()
    {
        (int Models, int Loras) Drain(string prefix, bool affinity)
        {
            var address = RedisQueueAddress.Parse(redis.Redis.Url(prefix));
            using var connection = address.Connect();
            var db = connection.GetDatabase();
            var keys = new RedisKeys(address.Prefix);
            using var transport = new RedisJobTransport(connection, address);
            var random = new Random(19);
            var jobs = Enumerable.Range(0, 48).Select(i => new JobAffinity($"ckpt{i % 2}", $"set{i / 2 % 4}")).OrderBy(_ => random.Next()).ToList();
            for (int i = 0; i < jobs.Count; i++) transport.Enqueue($"j{i}", new GenerationJob { Model = jobs[i].Model }, jobs[i]);
            var current = new JobAffinity?[2];
            int models = 0, loras = 0;
            for (int turn = 0; ; turn++)
            {
                int w = turn % 2;
                var streams = db.SetMembers(keys.Queues).Select(v => (StackExchange.Redis.RedisKey)v.ToString()).ToArray();
                var c = affinity ? current[w] : null;
                var r = db.ScriptEvaluate(RedisScripts.Take, streams,
                    [RedisKeys.Group, $"w{w}", c is null ? "" : keys.Stream(c), c is null ? "" : keys.ModelPrefix(c.Model), affinity ? 600_000L : 0L]);
                if (r.IsNull) break;
                var f = (StackExchange.Redis.RedisResult[])((StackExchange.Redis.RedisResult[])r!)[2]!;
                var taken = new JobAffinity(f[5].ToString()!, f[7].ToString()!);
                if (current[w] is { } before)
                {
                    if (before.Model != taken.Model) models++;
                    else if (before.LoraSet != taken.LoraSet) loras++;
                }
                current[w] = taken;
            }
            return (models, loras);
        }
        var fifo = Drain("bench-fifo", affinity: false);
        var preferred = Drain("bench-affinity", affinity: true);
        Console.WriteLine($"48 mixed jobs, 2 workers: oldest first {fifo.Models} checkpoint + {fifo.Loras} LoRA switches; " +
                          $"with affinity {preferred.Models} + {preferred.Loras}");
        Assert.True(preferred.Models + preferred.Loras < (fifo.Models + fifo.Loras) / 2, $"{preferred} vs {fifo}");
    }
}
