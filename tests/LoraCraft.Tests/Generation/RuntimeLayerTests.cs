using LoraCraft.Generation;
using LoraCraft.Tests.Conformance;
using LoraCraft.Tests.Server;
using TorchSharp;
using Xunit;
using Xunit.Abstractions;

namespace LoraCraft.Tests.Generation;

/// <summary>The queue on its own: order, limits, cancel, interrupt, skip, events, and the worker thread.</summary>
public class JobQueueTests
{
    [Fact]
    public async Task JobsRunOneAfterAnotherInOrderOnOneWorkerThread()
    {
        using var queue = new JobQueue(new JobQueueOptions { Limit = 10 });
        var order = new List<int>();
        var threads = new HashSet<int>();
        var jobs = Enumerable.Range(0, 5).Select(i => queue.Submit("t", null, _ =>
        {
            lock (order) order.Add(i);
            lock (threads) threads.Add(Environment.CurrentManagedThreadId);
            return i * 10;
        })).ToList();
        foreach (var j in jobs) await j.Completion.WaitAsync(TimeSpan.FromSeconds(30));
        Assert.Equal([0, 1, 2, 3, 4], order);
        Assert.Single(threads);
        Assert.DoesNotContain(Environment.CurrentManagedThreadId, threads);
        Assert.Equal(30, jobs[3].Result);
        Assert.All(jobs, j => Assert.Equal(JobState.Completed, j.State));
    }

    [Fact]
    public async Task AFullQueueRefusesAsBusyAndCancelRemovesWaitingJobs()
    {
        using var queue = new JobQueue(new JobQueueOptions { Limit = 2 });
        using var gate = new ManualResetEventSlim();
        var running = queue.Submit("t", null, _ => { gate.Wait(TimeSpan.FromSeconds(30)); return null; });
        while (running.State == JobState.Pending) await Task.Delay(5);
        var a = queue.Submit("t", null, _ => 1);
        var b = queue.Submit("t", null, _ => 2);
        var e = Assert.Throws<UserErrorException>(() => queue.Submit("t", null, _ => 3));
        Assert.Equal(ErrorKind.Busy, e.Kind);
        Assert.True(queue.Cancel(a.Id));
        Assert.Equal(JobState.Cancelled, a.State);
        var c = queue.Submit("t", null, _ => 4); // room again
        gate.Set();
        await c.Completion.WaitAsync(TimeSpan.FromSeconds(30));
        Assert.Equal(JobState.Completed, b.State);
        Assert.Equal(4, c.Result);
        Assert.False(queue.Cancel(c.Id));
    }

    [Fact]
    public async Task ARunningJobSeesCancelInterruptAndSkipThroughItsContext()
    {
        using var queue = new JobQueue();
        using var started = new ManualResetEventSlim();
        var job = queue.Submit("t", null, ctx =>
        {
            started.Set();
            int skips = 0;
            while (!ctx.Interrupted)
            {
                ctx.Cancel.ThrowIfCancellationRequested();
                if (ctx.StopCurrentImage()) skips++;
                Thread.Sleep(5);
            }
            return skips;
        });
        started.Wait(TimeSpan.FromSeconds(30));
        job.Context.Skip();
        await Task.Delay(100);
        job.Context.Interrupt();
        await job.Completion.WaitAsync(TimeSpan.FromSeconds(30));
        Assert.Equal(JobState.Completed, job.State);
        Assert.Equal(1, job.Result); // one skip taken; the interrupt then ended the loop

        var endless = queue.Submit("t", null, ctx => { while (true) { ctx.Cancel.ThrowIfCancellationRequested(); Thread.Sleep(5); } });
        while (endless.State == JobState.Pending) await Task.Delay(5);
        Assert.True(queue.Cancel(endless.Id));
        await endless.Completion.WaitAsync(TimeSpan.FromSeconds(30));
        Assert.Equal(JobState.Cancelled, endless.State);
    }

    [Fact]
    public async Task EventsArriveInOrderAndLateSubscribersGetThemReplayed()
    {
        using var queue = new JobQueue();
        var job = queue.Submit("t", null, ctx =>
        {
            for (int i = 1; i <= 3; i++) ctx.Report(new JobStep(ctx.Id, i, 3, 0, 1, 0.1, 0, i == 3 ? [1, 2, 3] : [9]));
            ctx.Warn("careful");
            return "done";
        });
        var live = job.Subscribe();
        await job.Completion.WaitAsync(TimeSpan.FromSeconds(30));
        var seen = new List<JobEvent>();
        await foreach (var e in live.ReadAllAsync()) seen.Add(e);
        var late = new List<JobEvent>();
        await foreach (var e in job.Subscribe().ReadAllAsync()) late.Add(e);
        Assert.Equal(seen.Select(e => e.GetType()), late.Select(e => e.GetType()));
        Assert.IsType<JobQueued>(seen[0]);
        Assert.IsType<JobStarted>(seen[1]);
        Assert.Equal([1, 2, 3], seen.OfType<JobStep>().Select(s => s.Step));
        Assert.True(seen.OfType<JobMessage>().Single().Warning);
        Assert.IsType<JobCompleted>(seen[^1]);
        // only the newest step keeps its preview in the history; the latest is kept apart too
        Assert.Equal([false, false, true], late.OfType<JobStep>().Select(s => s.Preview is not null));
        Assert.Equal([1, 2, 3], job.LastPreview);
    }

    [Fact]
    public async Task FailuresCarryTheirKindAndAOneLineMessage()
    {
        using var queue = new JobQueue();
        var user = queue.Submit("t", null, _ => throw new UserErrorException(ErrorKind.NotFound, "no such thing"));
        var bug = queue.Submit("t", null, _ => throw new InvalidOperationException("broken\n  at somewhere\n  at elsewhere"));
        await Task.WhenAll(user.Completion, bug.Completion).WaitAsync(TimeSpan.FromSeconds(30));
        Assert.Equal((JobState.Failed, ErrorKind.NotFound, "no such thing"), (user.State, user.ErrorKind!.Value, user.Error));
        Assert.Equal("internal error: broken", bug.Error);
        Assert.Null(bug.ErrorKind);
    }
}

/// <summary>The model cache: loads once, lends, keeps within its budget, never unloads what is in use.</summary>
public class ModelCacheTests
{
    static CheckpointEntry Entry(Fixture f, string kind) =>
        new($"tiny-{kind}", f.ModelFile(kind), f.DiffusersDir(kind), CheckpointKind.SingleFile);

    [SkippableFact]
    public void ModelsAreLoadedOnceLentAndEvictedLeastRecentlyUsedFirst()
    {
        var f = Fixture.Require();
        using var cache = new ModelCache(new ModelCacheOptions { MaxModels = 1 });
        int loads = 0;
        LoadedModel first;
        using (var a = cache.Acquire(Entry(f, "sd15"), onLoad: _ => loads++))
        using (var again = cache.Acquire(Entry(f, "sd15"), onLoad: _ => loads++))
        {
            Assert.Same(a.Model, again.Model);
            first = a.Model;
            // a second model while the first is leased: both stay (the lease wins over the budget)
            using var b = cache.Acquire(Entry(f, "sd15-inpaint"), onLoad: _ => loads++);
            Assert.Equal(2, cache.Loaded.Count);
            Assert.True(a.Model.Model.UNet.Weights().All(w => w.Weight.Value is not null), "a leased model was unloaded");
        }
        // back within the budget of one: the inpainting model went when it was given back, as the
        // other was still in use then
        Assert.Same(first, Assert.Single(cache.Loaded));
        Assert.Equal(2, loads);
        using (var c = cache.Acquire(Entry(f, "sd15"), onLoad: _ => loads++)) Assert.Same(first, c.Model);
        Assert.Equal(2, loads);
        using (var d = cache.Acquire(Entry(f, "sd15-inpaint"), onLoad: _ => loads++)) Assert.True(d.Model.Model.Inpainting);
        Assert.Equal(3, loads);
        Assert.DoesNotContain(first, cache.Loaded); // the least recently used made room
        Assert.Equal(1, cache.UnloadIdle()); // nothing is leased: the idle model goes
        Assert.Empty(cache.Loaded);
    }
}

/// <summary>The service across many jobs in one process: nothing a job allocates outlives it.</summary>
[Collection(MemoryAlone.Name)]
public class GenerationServiceMemoryTests(ITestOutputHelper output)
{
    [SkippableFact]
    public void TwoHundredSmallJobsKeepMemoryFlat()
    {
        var f = Fixture.Require();
        using var dir = new TempDir();
        Directory.CreateDirectory(dir.File("Lora"));
        File.Copy(Path.Combine(f.Root, "loras", "sd15-attn.safetensors"), dir.File("Lora/attn.safetensors"));
        using var models = new ModelCache(new ModelCacheOptions());
        using var service = new GenerationService(new GenerationServiceOptions { AllowPaths = true, LoraDir = dir.File("Lora") }, models);
        using var init = torch.rand(1, 3, 64, 64, generator: new torch.Generator(1));
        var png = LoraCraft.Pipelines.ImageFiles.EncodePng(init);
        GenerationJob Job(int i) => new()
        {
            Model = f.ModelFile("sd15"), ConfigDir = f.DiffusersDir("sd15"), Prompt = i % 3 == 0 ? "a dog <lora:attn:0.7>" : "a dog",
            Seed = (ulong)i, Steps = 1, Width = 64, Height = 64, Sampler = "euler", PreviewEvery = 1,
            InitImage = i % 4 == 0 ? ImageInput.FromBytes(png) : null, Denoise = i % 4 == 0 ? 0.5 : null,
        };
        double afterTen = 0;
        for (int i = 0; i < 200; i++)
        {
            var output_ = service.Run(Job(i), new JobContext("j" + i));
            Assert.Single(output_.Images);
            if (i == 9) afterTen = ServerLoadTests.CurrentRssMb();
        }
        double end = ServerLoadTests.CurrentRssMb();
        output.WriteLine($"RSS after 10 jobs {afterTen:F0} MB, after 200 {end:F0} MB");
        Assert.True(end - afterTen < 100, $"RSS grew by {end - afterTen:F0} MB from job 10 to job 200");
    }
}
