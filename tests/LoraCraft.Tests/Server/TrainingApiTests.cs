using System.Net;
using System.Text.Json;
using LoraCraft.Pipelines;
using LoraCraft.Tests.Training;
using Xunit;
using Xunit.Abstractions;
using static LoraCraft.Tests.Server.ServerJobs;

namespace LoraCraft.Tests.Server;

/// <summary>
/// POST /api/v1/train on the tiny SD1.5 fixture (64 px, 3 steps): progress as job events, the
/// LoRA lands in the LoRA folder, is listed and generates; datasets only by name from the
/// training-data root; cancel through the job API.
/// </summary>
public sealed class TrainingApiTests : IClassFixture<ServerFixture>
{
    readonly ServerFixture _server;
    readonly ITestOutputHelper _output;

    public TrainingApiTests(ServerFixture server, ITestOutputHelper output)
    {
        _server = server;
        _output = output;
        if (server.Dir is { } dir && Conformance.Fixture.Instance is not null)
        {
            // user/train/discs/10_sks disc/img*.png + captions
            var sub = Path.Combine(dir.File("user"), "train", "discs", "10_sks disc");
            if (!Directory.Exists(sub))
            {
                Directory.CreateDirectory(sub);
                for (int i = 0; i < 2; i++)
                {
                    TrainingData.WriteImage(Path.Combine(sub, $"img{i}.png"), i);
                    File.WriteAllText(Path.Combine(sub, $"img{i}.txt"), "sks disc, red");
                }
            }
        }
    }

    static object Request(string output, int steps = 3, object? extra = null)
    {
        var body = new Dictionary<string, object?>
        {
            ["model"] = "tiny-sd15", ["dataset"] = "discs", ["output_name"] = output, ["steps"] = steps, ["resolution"] = 64,
            ["rank"] = 4, ["alpha"] = 4, ["learning_rate"] = 1e-3, ["seed"] = 7, ["cache_latents"] = true, ["chart_every"] = 1,
        };
        if (extra is not null)
            foreach (var p in JsonSerializer.SerializeToElement(extra).EnumerateObject()) body[p.Name] = p.Value;
        return body;
    }

    [SkippableFact]
    public async Task ATinyTrainingRunReportsProgressAndItsLoraIsListedAndGenerates()
    {
        var submitted = await _server.PostJson("/api/v1/train", Request("api-disc", extra: new
        {
            sample_prompts = "a sks disc --w 64 --h 64 --s 2 --d 5", sample_every_n_steps = 3,
        }));
        string id = submitted.GetProperty("id").GetString()!;
        var events = await EventsAsync(_server, id);
        var names = events.Select(e => e.Event).ToList();
        _output.WriteLine(string.Join(" ", names));
        Assert.Equal("completed", names[^1]);
        var planned = events.Single(e => e.Event == "train_planned").Data;
        Assert.Equal(3, planned.GetProperty("total_steps").GetInt32());
        var steps = events.Where(e => e.Event == "train_step").Select(e => e.Data).ToList();
        Assert.Equal([1, 2, 3], steps.Select(s => s.GetProperty("step").GetInt32()));
        Assert.All(steps, s => Assert.True(s.GetProperty("loss").GetDouble() > 0));
        Assert.True(steps[^1].GetProperty("lr").GetDouble() > 0);
        Assert.Equal(3, events.Count(e => e.Event == "step")); // the generic progress too
        Assert.Contains(events, e => e.Event == "train_chart");
        Assert.Contains(events, e => e.Event == "train_samples");
        var saved = events.Single(e => e.Event == "train_saved").Data;
        Assert.True(saved.GetProperty("final").GetBoolean());
        Assert.Equal("api-disc.safetensors", saved.GetProperty("file").GetString());

        var status = await _server.GetJson($"/api/v1/jobs/{id}");
        var result = status.GetProperty("result");
        Assert.Equal("api-disc", result.GetProperty("lora").GetString());
        Assert.Equal(3, result.GetProperty("steps").GetInt32());
        Assert.True(File.Exists(Path.Combine(_server.LoraDir, "api-disc.safetensors")));
        var chart = await _server.Http.GetByteArrayAsync(result.GetProperty("chart").GetString());
        Assert.True(ImageFiles.Size(chart, "chart").Item1 > 0);
        var sample = await _server.Http.GetByteArrayAsync(result.GetProperty("samples")[0].GetString());
        Assert.Equal((64, 64), ImageFiles.Size(sample, "sample"));

        // listed with kohya's metadata, and usable in a generation
        var listed = await _server.GetJson("/api/v1/loras");
        Assert.Contains(listed.EnumerateArray(), l => l.GetProperty("name").GetString() == "api-disc" && l.GetProperty("rank").GetInt32() == 4);
        var detail = await _server.GetJson("/api/v1/loras/api-disc");
        Assert.Equal("4", detail.GetProperty("metadata").GetProperty("ss_network_dim").GetString());
        var generated = await RunAsync(_server, "/api/v1/generate", new
        {
            model = "tiny-sd15", prompt = "a sks disc", seed = 3, steps = 2, cfg = 4, sampler = "euler", width = 64, height = 64, save = false,
            loras = new[] { new { name = "api-disc", unet = 1.0 } },
        });
        Assert.Equal("completed", generated.GetProperty("state").GetString());
        Assert.True(generated.GetProperty("result").GetProperty("loras")[0].GetProperty("layers").GetInt32() > 0);

        // the same name again is refused unless forced
        var (again, body) = await PostAsync(_server, "/api/v1/train", Request("api-disc"));
        Assert.Equal(HttpStatusCode.Conflict, again);
        Assert.Equal("conflict", ErrorKind(again, body));
    }

    [SkippableFact]
    public async Task DatasetsAreListedByNameAndPathsOrBadSettingsAreRefusedBeforeAnythingRuns()
    {
        var listing = await _server.GetJson("/api/v1/train/datasets");
        var discs = listing.GetProperty("datasets").EnumerateArray().Single(d => d.GetProperty("name").GetString() == "discs");
        Assert.Equal("kohya", discs.GetProperty("layout").GetString());
        Assert.Equal(2, discs.GetProperty("images").GetInt32());
        var subset = discs.GetProperty("subsets")[0];
        Assert.Equal(10, subset.GetProperty("repeats").GetInt32());
        Assert.Equal("sks disc", subset.GetProperty("class_tokens").GetString());
        Assert.Equal(2, subset.GetProperty("captions").GetInt32());

        int before = _server.Engine.Queue.Finished.Count + _server.Engine.Queue.Pending.Count + _server.Engine.Queue.Running.Count;
        foreach (var (body, status, field) in new (object, HttpStatusCode, string)[]
        {
            (Request("x", extra: new { dataset = "../Lora" }), HttpStatusCode.BadRequest, "dataset"),
            (Request("x", extra: new { dataset = "/etc" }), HttpStatusCode.BadRequest, "dataset"),
            (Request("x", extra: new { dataset = "nope" }), HttpStatusCode.NotFound, "dataset"),
            (Request("../evil"), HttpStatusCode.BadRequest, "output_name"),
            (Request("sd15-attn"), HttpStatusCode.Conflict, "output_name"),
            (Request("x", extra: new { model = "../../x" }), HttpStatusCode.BadRequest, "model"),
            (Request("x", extra: new { resolution = 60 }), HttpStatusCode.BadRequest, ""),
            (Request("x", extra: new { optimizer = "lion" }), HttpStatusCode.BadRequest, "optimizer"),
            (Request("x", extra: new { sample_prompts = "a disc --w abc" }), HttpStatusCode.BadRequest, ""),
        })
        {
            var (code, error) = await PostAsync(_server, "/api/v1/train", body);
            _output.WriteLine($"{(int)code} {error}");
            Assert.Equal(status, code);
            ErrorKind(code, error);
            if (field.Length > 0) Assert.Equal(field, error.GetProperty("error").GetProperty("field").GetString());
        }
        Assert.Equal(before, _server.Engine.Queue.Finished.Count + _server.Engine.Queue.Pending.Count + _server.Engine.Queue.Running.Count);
    }

    [SkippableFact]
    public async Task ARunningTrainingIsCancelledThroughTheJobApi()
    {
        var submitted = await _server.PostJson("/api/v1/train", Request("api-cancel", steps: 500));
        string id = submitted.GetProperty("id").GetString()!;
        bool sent = false;
        var events = await EventsAsync(_server, id, async (type, _) =>
        {
            if (type == "train_step" && !sent)
            {
                sent = true;
                await _server.PostJson($"/api/v1/jobs/{id}/cancel", new { });
            }
        });
        Assert.Equal("cancelled", events[^1].Event);
        Assert.True(events.Count(e => e.Event == "train_step") < 500);
        Assert.False(File.Exists(Path.Combine(_server.LoraDir, "api-cancel.safetensors")));
    }
}
