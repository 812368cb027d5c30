using System.Diagnostics;
using LoraCraft.Generation;
using LoraCraft.IO;
using LoraCraft.Lora;
using LoraCraft.Lora.Tools;
using LoraCraft.Models;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;

namespace LoraCraft.Server.Tools;

/// <summary>
/// The LoRA tools in the native API: POST /api/v1/lora/tools/{merge-into|extract|resize|merge|
/// convert|bake-blocks}. Each request is checked here (names resolve inside the LoRA and
/// checkpoints folders, the output name is free; 4xx otherwise) and runs as a job on the worker
/// thread ("lora-tool"); its report is the job's result (GET /api/v1/jobs/{id}, the `completed`
/// event), the new file appears in the LoRA listing (merge-into: the checkpoint list).
/// </summary>
public static class ToolRoutes
{
    public const string Kind = "lora-tool";

    public static void Map(WebApplication app)
    {
        var api = app.MapGroup("/api/v1/lora/tools");
        api.MapPost("/merge-into", (MergeIntoToolRequest r, ServerEngine e) => Accepted(e, MergeInto(e, r)));
        api.MapPost("/extract", (ExtractToolRequest r, ServerEngine e) => Accepted(e, Extract(e, r)));
        api.MapPost("/resize", (ResizeToolRequest r, ServerEngine e) => Accepted(e, Resize(e, r)));
        api.MapPost("/merge", (MergeToolRequest r, ServerEngine e) => Accepted(e, Merge(e, r)));
        api.MapPost("/convert", (ConvertToolRequest r, ServerEngine e) => Accepted(e, Convert(e, r)));
        api.MapPost("/bake-blocks", (BakeBlocksToolRequest r, ServerEngine e) => Accepted(e, BakeBlocks(e, r)));
    }

    static IResult Accepted(ServerEngine engine, Job job) =>
        Results.Accepted($"/api/v1/jobs/{job.Id}", new { id = job.Id, state = job.State.ToString().ToLowerInvariant(), position = engine.Queue.Pending.Count });

    /// <summary>Queues one tool run; the file is written by the library (temp file, rename), then the listings are refreshed.</summary>
    static Job Queue(ServerEngine engine, string tool, object request, string output, bool checkpoint, Func<object> run) =>
        engine.Queue.Submit(Kind, request, ctx =>
        {
            ctx.Report(new JobPhase(ctx.Id, tool, LoraLibrary.NameOf(output)));
            var clock = Stopwatch.StartNew();
            object report = run();
            if (checkpoint) engine.Catalog.Refresh();
            else
            {
                engine.Loras.Forget(output);
                engine.Loras.Refresh();
            }
            return new ToolResult(tool, LoraLibrary.NameOf(output), checkpoint ? "checkpoint" : "lora",
                FolderOutputs.Relative(checkpoint ? engine.Catalog.Root : engine.Loras.Root, output), clock.Elapsed.TotalSeconds, report);
        });

    static string Lora(ServerEngine engine, string? name, string field)
    {
        if (string.IsNullOrWhiteSpace(name)) throw new UserErrorException("no LoRA named") { Field = field };
        try { return engine.Loras.Resolve(name); }
        catch (UserErrorException e) { throw new UserErrorException(e.Kind, e.Message) { Field = field }; }
    }

    /// <summary>A single-file checkpoint of the catalog by name (the tools read its tensors directly).</summary>
    static CheckpointEntry Model(ServerEngine engine, string? name, string field)
    {
        if (string.IsNullOrWhiteSpace(name)) throw new UserErrorException("no checkpoint named") { Field = field };
        CheckpointEntry entry;
        try { entry = engine.Catalog.Resolve(name); }
        catch (UserErrorException e) { throw new UserErrorException(e.Kind, e.Message) { Field = field }; }
        if (entry.Kind != CheckpointKind.SingleFile)
            throw new UserErrorException(ErrorKind.Unsupported, $"checkpoint '{entry.Name}' is not a single .safetensors file; the LoRA tools read single-file checkpoints") { Field = field };
        return entry;
    }

    static SafeDType? DType(string? name)
    {
        try { return ToolFiles.ParseDType(string.IsNullOrEmpty(name) ? null : name); }
        catch (UserErrorException e) { throw new UserErrorException(e.Message) { Field = "dtype" }; }
    }

    static RankRule Rule(int rank, string? method, double? param)
    {
        var rule = new RankRule(rank);
        if (string.IsNullOrEmpty(method)) return rule;
        if (param is null) throw new UserErrorException("dynamic_method needs dynamic_param") { Field = "dynamic_param" };
        try { return rule with { Method = RankRule.ParseMethod(method), Param = param.Value }; }
        catch (UserErrorException e) { throw new UserErrorException(e.Message) { Field = "dynamic_method" }; }
    }

    static ModelFamily? Family(string? name)
    {
        if (string.IsNullOrEmpty(name)) return null;
        try { return ToolTargets.ParseFamily(name); }
        catch (UserErrorException e) { throw new UserErrorException(e.Message) { Field = "family" }; }
    }

    static IReadOnlyList<ToolLora> Several(IReadOnlyList<ToolLora>? loras, int min)
    {
        if (loras is null || loras.Count < min) throw new UserErrorException(min == 1 ? "give at least one LoRA" : $"give {min} LoRAs or more") { Field = "loras" };
        return loras;
    }

    static Job MergeInto(ServerEngine engine, MergeIntoToolRequest r)
    {
        var model = Model(engine, r.Model, "model");
        var loras = Several(r.Loras, 1).Select(l => new LoraStrength(Lora(engine, l.Name, "loras"), l.Unet ?? l.Weight ?? 1, l.Te ?? l.Unet ?? l.Weight ?? 1)).ToList();
        var dtype = DType(r.Dtype);
        var output = FolderOutputs.Checkpoint(engine, r.Output, r.Force);
        if (string.Equals(output, Path.GetFullPath(model.Path), StringComparison.Ordinal))
            throw new UserErrorException("the output is the input checkpoint; choose another name") { Field = "output" };
        return Queue(engine, "merge-into", r, output, checkpoint: true, () =>
        {
            var result = LoraMergeInto.Run(new MergeIntoRequest(model.Path, loras, output) { DType = dtype, Force = r.Force }, engine.Hashes);
            // a checkpoint that needs its config folder (NAME.config) gets a copy beside the new file: same architecture
            if (model.ConfigDir is { } config) CopyConfig(config, Path.ChangeExtension(output, ".config"));
            return new
            {
                model = model.Name, tensors = result.Tensors, changed = result.Changed,
                loras = result.Loras.Select(l => new { name = l.Name, matched = l.Matched, unmatched = l.Unmatched.Count, unmatched_examples = l.Unmatched.Take(5) }),
            };
        });
    }

    static void CopyConfig(string from, string to)
    {
        if (Path.GetFullPath(from) == Path.GetFullPath(to)) return;
        foreach (var file in Directory.EnumerateFiles(from, "*", SearchOption.AllDirectories))
        {
            if (file.EndsWith(".safetensors", StringComparison.OrdinalIgnoreCase) || file.EndsWith(".bin", StringComparison.OrdinalIgnoreCase)) continue;
            var target = Path.Combine(to, Path.GetRelativePath(from, file));
            Directory.CreateDirectory(Path.GetDirectoryName(target)!);
            File.Copy(file, target, overwrite: true);
        }
    }

    static Job Extract(ServerEngine engine, ExtractToolRequest r)
    {
        var b = Model(engine, r.Base, "base");
        var t = Model(engine, r.Tuned, "tuned");
        if (b.Path == t.Path) throw new UserErrorException("base and tuned are the same checkpoint") { Field = "tuned" };
        if (r.Rank < 1) throw new UserErrorException($"rank must be 1 or more, got {r.Rank}") { Field = "rank" };
        var request = new ExtractRequest(b.Path, t.Path, Rule(r.Rank, r.DynamicMethod, r.DynamicParam), FolderOutputs.Lora(engine, r.Output, r.Force))
        {
            ConvRank = r.ConvRank, ClampQuantile = r.ClampQuantile ?? 0.99, MinDiff = r.MinDiff ?? 0.01, DType = DType(r.Dtype) ?? SafeDType.F32, Force = r.Force,
        };
        return Queue(engine, "extract", r, request.Output, checkpoint: false, () =>
        {
            var result = LoraExtract.Run(request);
            return new
            {
                base_model = b.Name, tuned_model = t.Name, text_encoders = result.TextEncoders, text_encoder_max_diff = result.TextEncoderMaxDiff,
                module_count = result.Modules.Count,
                min_rank = result.Modules.Count == 0 ? 0 : result.Modules.Min(m => m.Rank), max_rank = result.Modules.Count == 0 ? 0 : result.Modules.Max(m => m.Rank),
                average_fro_retained = result.Modules.Count == 0 ? 1 : result.Modules.Average(m => m.FroRetained),
                modules = result.Modules.Select(m => new { key = m.Key, rank = m.Rank, fro_retained = m.FroRetained }),
            };
        });
    }

    static Job Resize(ServerEngine engine, ResizeToolRequest r)
    {
        var input = Lora(engine, r.Lora, "lora");
        if (r.Rank is null && string.IsNullOrEmpty(r.DynamicMethod)) throw new UserErrorException("give rank, or dynamic_method and dynamic_param") { Field = "rank" };
        if (r.Rank is < 1) throw new UserErrorException($"rank must be 1 or more, got {r.Rank}") { Field = "rank" };
        var request = new ResizeRequest(input, Rule(r.Rank ?? int.MaxValue, r.DynamicMethod, r.DynamicParam), FolderOutputs.Lora(engine, r.Output, r.Force))
        {
            ConvRank = r.ConvRank, DType = DType(r.Dtype), Force = r.Force,
        };
        return Queue(engine, "resize", r, request.Output, checkpoint: false, () =>
        {
            var result = LoraResize.Run(request);
            return new
            {
                input = LoraLibrary.NameOf(input), module_count = result.Modules.Count, average_fro_retained = result.AverageFroRetained,
                unchanged = result.Unchanged,
                modules = result.Modules.Select(m => new
                {
                    key = m.Key, old_rank = m.OldRank, new_rank = m.NewRank, new_alpha = m.NewAlpha, fro_retained = m.FroRetained, sum_retained = m.SumRetained,
                }),
            };
        });
    }

    static Job Merge(ServerEngine engine, MergeToolRequest r)
    {
        var loras = Several(r.Loras, 2).Select(l => new WeightedLora(Lora(engine, l.Name, "loras"), l.Weight ?? l.Unet ?? 1)).ToList();
        if (r.SvdRank is < 1) throw new UserErrorException($"svd_rank must be 1 or more, got {r.SvdRank}") { Field = "svd_rank" };
        var request = new MergeRequest(loras, FolderOutputs.Lora(engine, r.Output, r.Force))
        {
            SvdRank = r.SvdRank, DType = DType(r.Dtype) ?? SafeDType.F16, Force = r.Force,
        };
        return Queue(engine, "merge", r, request.Output, checkpoint: false, () =>
        {
            var result = LoraMerge.Run(request);
            return new
            {
                inputs = loras.Select(l => new { name = LoraLibrary.NameOf(l.Path), weight = l.Weight }),
                method = r.SvdRank is null ? "concat" : "svd", module_count = result.Modules, max_rank = result.MaxRank,
            };
        });
    }

    static Job Convert(ServerEngine engine, ConvertToolRequest r)
    {
        var input = Lora(engine, r.Lora, "lora");
        var to = r.To?.ToLowerInvariant() switch
        {
            "kohya" => LoraNaming.Kohya,
            "peft" or "diffusers" => LoraNaming.Peft,
            var t => throw new UserErrorException($"to must be kohya or peft, got '{t}'") { Field = "to" },
        };
        var request = new ConvertRequest(input, to, FolderOutputs.Lora(engine, r.Output, r.Force))
        {
            Model = string.IsNullOrEmpty(r.Model) ? null : Model(engine, r.Model, "model").Path, Family = Family(r.Family), Force = r.Force,
        };
        return Queue(engine, "convert", r, request.Output, checkpoint: false, () =>
        {
            var result = LoraConvert.Run(request);
            return new { input = LoraLibrary.NameOf(input), to = to == LoraNaming.Kohya ? "kohya" : "peft", module_count = result.Modules };
        });
    }

    static Job BakeBlocks(ServerEngine engine, BakeBlocksToolRequest r)
    {
        var input = Lora(engine, r.Lora, "lora");
        if (string.IsNullOrWhiteSpace(r.Blocks)) throw new UserErrorException("give the block weights (a preset such as MIDD, or the values)") { Field = "blocks" };
        LoraBlockWeights blocks;
        try { blocks = LoraBlockWeights.Parse(r.Blocks, string.IsNullOrEmpty(r.Elements) ? null : r.Elements); }
        catch (UserErrorException e) { throw new UserErrorException(e.Message) { Field = "blocks" }; }
        var request = new BakeBlocksRequest(input, blocks, FolderOutputs.Lora(engine, r.Output, r.Force))
        {
            Model = string.IsNullOrEmpty(r.Model) ? null : Model(engine, r.Model, "model").Path, Family = Family(r.Family), Force = r.Force,
        };
        return Queue(engine, "bake-blocks", r, request.Output, checkpoint: false, () =>
        {
            var result = LoraBakeBlocks.Run(request);
            return new { input = LoraLibrary.NameOf(input), blocks = r.Blocks, scaled = result.Scaled, dropped = result.Dropped, kept = result.Kept };
        });
    }
}

/// <summary>A finished tool job: which tool, the new file (by name, and relative to its folder), the time, and the tool's report.</summary>
public sealed record ToolResult(string Tool, string Name, string Folder, string File, double Seconds, object Report);
