using LoraCraft.Generation;
using LoraCraft.Training;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;

namespace LoraCraft.Server.Training;

/// <summary>
/// LoRA training in the native API: GET /api/v1/train/datasets (the folders of the training-data
/// root), POST /api/v1/train (a <see cref="TrainRequest"/>: 202 and a job id; follow it with
/// /api/v1/jobs/{id}/events — phases, notes, step, train_planned, train_step, train_chart,
/// train_samples, train_saved — and stop it with /api/v1/jobs/{id}/cancel), GET
/// /api/v1/train/{id}/chart and /api/v1/train/{id}/samples/{i}. Everything the request names is
/// checked here (4xx before anything is queued); the run itself is a job on the worker thread.
/// </summary>
public static class TrainingRoutes
{
    public const string Kind = "train";
    const string OutputTag = "train.output";

    public static void Map(WebApplication app, ServerOptions options)
    {
        var folders = new TrainingFolders(options.TrainDir ?? Path.Combine(options.DataDir, "train"));
        var api = app.MapGroup("/api/v1/train");
        api.MapGet("/datasets", () => Results.Json(new { root = folders.Root, datasets = folders.List() }, LoraServer.Json));
        api.MapPost("", (TrainRequest body, ServerEngine engine) =>
        {
            var job = Submit(engine, folders, body);
            return Results.Accepted($"/api/v1/jobs/{job.Id}", new { id = job.Id, state = job.State.ToString().ToLowerInvariant(), position = engine.Queue.Pending.Count });
        });
        api.MapGet("/{id}/chart", (string id, ServerEngine engine) =>
            engine.Queue.Get(id) is { } job && TrainingJob.Chart(job) is { } path && File.Exists(path)
                ? Results.File(File.ReadAllBytes(path), "image/png") : NotFound("chart", id));
        api.MapGet("/{id}/samples/{index:int}", (string id, int index, ServerEngine engine) =>
            engine.Queue.Get(id) is { } job && TrainingJob.Samples(job) is var samples && index >= 0 && index < samples.Count && File.Exists(samples[index])
                ? Results.File(File.ReadAllBytes(samples[index]), "image/png") : NotFound("sample", $"{id}/{index}"));
    }

    static IResult NotFound(string what, string name) =>
        Results.Json(new { error = new { kind = "notfound", message = $"{what} '{name}' not found" } }, LoraServer.Json, statusCode: 404);

    /// <summary>Checks the request (names, settings, folders: no image is decoded, no model loaded) and queues the run.</summary>
    public static Job Submit(ServerEngine engine, TrainingFolders folders, TrainRequest body)
    {
        var model = string.IsNullOrEmpty(body.Model) ? engine.CurrentModel : engine.Catalog.Resolve(body.Model);
        if (model.Kind != CheckpointKind.SingleFile && model.Kind != CheckpointKind.Diffusers)
            throw new UserErrorException(ErrorKind.Unsupported, $"checkpoint '{model.Name}' cannot be trained on") { Field = "model" };
        var dataset = folders.Resolve(body.Dataset);
        var reg = string.IsNullOrEmpty(body.RegDataset) ? null : folders.Resolve(body.RegDataset, "reg_dataset");
        if (reg is not null && reg == dataset) throw new UserErrorException("the regularization dataset must be another folder than the training one") { Field = "reg_dataset" };
        string name = FolderOutputs.CleanName(body.OutputName, "output_name");
        var target = FolderOutputs.Lora(engine, name, body.Force == true, "output_name");
        lock (engine.Queue)
        {
            if (engine.Queue.Pending.Concat(engine.Queue.Running).Any(j => j.Kind == Kind && j.Tags.TryGetValue(OutputTag, out var o) && string.Equals(o as string, name, StringComparison.OrdinalIgnoreCase)))
                throw new UserErrorException(ErrorKind.Conflict, $"a training run for '{name}' is queued or running already") { Field = "output_name" };
            var runDir = Path.Combine(Path.GetFullPath(engine.Options.DataDir), "train-runs", name);
            string? prompts = string.IsNullOrWhiteSpace(body.SamplePrompts) ? null : body.SamplePrompts;
            if (prompts is not null)
                foreach (var (line, i) in prompts.Split('\n').Select((l, i) => (l.Trim(), i)))
                    if (line.Length > 0 && !line.StartsWith('#')) SamplePrompts.Parse(line, $"sample prompt line {i + 1}");
            var options = body.ToOptions(model, dataset, reg, runDir, name, prompts is null ? null : Path.Combine(runDir, "prompts.txt"), Device(engine));
            TrainingSetup.Validate(options);
            foreach (var spec in TrainingSetup.Datasets(options)) spec.Validate();
            var work = new TrainingJob(engine, options, target, prompts);
            var job = engine.Queue.Submit(Kind, body, ctx => work.Run(ctx, engine.Queue.Get(ctx.Id)!));
            job.Tags[OutputTag] = name;
            return job;
        }
    }

    static string Device(ServerEngine engine) =>
        engine.Options.Device is { } d && d.type == TorchSharp.DeviceType.CUDA ? "cuda" : "cpu";
}
