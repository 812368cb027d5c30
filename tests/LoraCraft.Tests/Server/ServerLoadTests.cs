using System.Net.Http.Json;
using System.Text.Json;
using LoraCraft.Generation;
using Xunit;
using Xunit.Abstractions;

namespace LoraCraft.Tests.Server;

/// <summary>Many clients at once: LoRA sets switched per job, clients that leave, a soak of tiny jobs.</summary>
public sealed class ServerLoadTests(ServerFixture server) : IClassFixture<ServerFixture>
{
    static object Txt2Img(string prompt, long seed) => new
    {
        prompt, negative_prompt = "", seed, steps = 2, cfg_scale = 5, width = 64, height = 64, sampler_name = "Euler",
    };

    async Task<byte[]> Image(string prompt, long seed, CancellationToken ct = default)
    {
        using var r = await server.Http.PostAsJsonAsync("/sdapi/v1/txt2img", Txt2Img(prompt, seed), ct);
        r.EnsureSuccessStatusCode();
        var body = await r.Content.ReadFromJsonAsync<JsonElement>(ct);
        return Convert.FromBase64String(body.GetProperty("images")[0].GetString()!);
    }

    static readonly string[] Prompts =
    [
        "a castle on a hill",
        "a castle on a hill <lora:sd15-attn:1>",
        "a castle on a hill <lora:sd15-locon:0.7>",
        "a castle on a hill <lora:sd15-attn:0.5> <lora:sd15-locon:-0.4>",
    ];

    [SkippableFact]
    public async Task ConcurrentRequestsWithDifferentLoraSetsEachGiveTheImageMadeAlone()
    {
        var alone = new List<byte[]>();
        foreach (var (p, i) in Prompts.Select((p, i) => (p, i))) alone.Add(await Image(p, 100 + i));
        // all at once, twice over, in an order that switches the LoRA set every job
        var tasks = Enumerable.Range(0, 8).Select(k => Image(Prompts[(k * 3) % 4], 100 + (k * 3) % 4)).ToList();
        var together = await Task.WhenAll(tasks);
        for (int k = 0; k < 8; k++)
            Assert.True(together[k].AsSpan().SequenceEqual(alone[(k * 3) % 4]), $"request {k} ({Prompts[(k * 3) % 4]}) differs from the image made alone");
        Assert.False(alone[0].AsSpan().SequenceEqual(alone[1]), "the LoRA changed nothing");
    }

    [SkippableFact]
    public async Task AClientThatGoesAwayMidJobDoesNotDisturbTheOthers()
    {
        var expected = await Image(Prompts[1], 7);
        using var leave = new CancellationTokenSource();
        var leaver = server.Http.PostAsJsonAsync("/sdapi/v1/txt2img",
            new { prompt = Prompts[2], seed = 9, steps = 300, width = 64, height = 64, sampler_name = "Euler" }, leave.Token);
        for (int i = 0; i < 400 && server.Engine.Queue.Running.Count == 0; i++) await Task.Delay(25);
        var stayer = Image(Prompts[1], 7);
        leave.Cancel();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => leaver);
        Assert.True((await stayer).AsSpan().SequenceEqual(expected));
        // the abandoned job was stopped, not left running
        var abandoned = server.Engine.Queue.Finished.Last(j => j.Request is string s && s.Contains("\"seed\":9"));
        Assert.Equal(JobState.Cancelled, abandoned.State);
    }

    internal static double CurrentRssMb()
    {
        GC.Collect();
        GC.WaitForPendingFinalizers();
        Runtime.Compute.ReleaseFreedMemory();
        foreach (var line in File.ReadLines("/proc/self/status"))
            if (line.StartsWith("VmRSS:", StringComparison.Ordinal))
                return long.Parse(line[6..].Trim().Split(' ')[0]) / 1024.0;
        return 0;
    }
}

/// <summary>Process memory is only meaningful with nothing else running: these run alone, after the parallel tests.</summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class MemoryAlone
{
    public const string Name = "memory (alone)";
}

[Collection(MemoryAlone.Name)]
public sealed class ServerSoakTests(ServerFixture server, ITestOutputHelper output) : IClassFixture<ServerFixture>
{
    [SkippableFact]
    public async Task ASoakOfAHundredTinyJobsLosesNoneAndKeepsMemoryBounded()
    {
        async Task<List<string>> Submit(int n, int offset)
        {
            var ids = new List<string>();
            for (int i = 0; i < n; i++)
            {
                var r = await server.PostJson("/api/v1/generate", new
                {
                    prompt = i % 2 == 0 ? "a tree" : "a tree <lora:sd15-attn:0.6>", seed = offset + i, steps = 1, width = 64, height = 64, save = false, preview_every = 0,
                });
                ids.Add(r.GetProperty("id").GetString()!);
            }
            return ids;
        }
        async Task WaitAll(IEnumerable<string> ids)
        {
            foreach (var id in ids) await server.Engine.Queue.Get(id)!.Completion.WaitAsync(TimeSpan.FromMinutes(5));
        }
        var warm = await Submit(10, 0);
        await WaitAll(warm);
        double before = ServerLoadTests.CurrentRssMb();
        var ids = new List<string>();
        for (int round = 0; round < 5; round++)
        {
            var batch = await Submit(18, 1000 + round * 18); // within the queue limit of 64
            await WaitAll(batch);
            ids.AddRange(batch);
        }
        double after = ServerLoadTests.CurrentRssMb();
        output.WriteLine($"RSS after 10 jobs {before:F0} MB, after {ids.Count + 10} jobs {after:F0} MB");
        Assert.Equal(90, ids.Count);
        foreach (var id in ids.Concat(warm))
        {
            var job = server.Engine.Queue.Get(id)!;
            Assert.Equal(JobState.Completed, job.State);
            Assert.Single(((LoraCraft.Server.ServerResult)job.Result!).Output.Images);
        }
        Assert.True(after - before < 150, $"RSS grew {after - before:F0} MB over 90 jobs");
    }

}
