using System.Text.Json;
using LoraCraft.Generation;
using LoraCraft.Lora;
using LoraCraft.Models.Vae;
using LoraCraft.Pipelines;
using LoraCraft.Sampling;
using LoraCraft.Text;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;

namespace LoraCraft.Server;

/// <summary>A LoRA in a native request: name in the LoRA folder and its two strengths.</summary>
public sealed record NativeLora(string Name, double? Unet = null, double? Te = null)
{
    /// <summary>UNet strength over the steps as loractl keyframes ("0@0,1@0.5"; steps or fractions); overrides <see cref="Unet"/>.</summary>
    public string? UnetSchedule { get; init; }
    /// <summary>Text-encoder strength as keyframes (the text is encoded once: its value at step 0).</summary>
    public string? TeSchedule { get; init; }
    /// <summary>Block weights as sd-webui-lora-block-weight writes them (a preset such as MIDD or a 12/17/20/26-value vector).</summary>
    public string? Lbw { get; init; }
    /// <summary>Element rules beside <see cref="Lbw"/> (its `lbwe=`).</summary>
    public string? Lbwe { get; init; }
    /// <summary>Block weights structured as diffusers' set_adapters takes them (text_encoder, down, mid, up).</summary>
    public LoraBlocks? Blocks { get; init; }
}

/// <summary>Inpainting options of a native request.</summary>
public sealed record NativeInpaint(bool? OnlyMasked = null, int? Padding = null, int? WorkingSize = null, int? MaskBlur = null,
                                   bool? InvertMask = null, string? MaskedContent = null);

/// <summary>POST /api/v1/generate: a generation in our own words (the web UI uses only this API).</summary>
public sealed record NativeGenerateRequest
{
    public string? Model { get; init; }
    public string Prompt { get; init; } = "";
    public string? Negative { get; init; }
    public long? Seed { get; init; }
    public int? Steps { get; init; }
    public double? Cfg { get; init; }
    public string? Sampler { get; init; }
    public string? Scheduler { get; init; }
    public int? Width { get; init; }
    public int? Height { get; init; }
    public int? ClipSkip { get; init; }
    public double? Denoise { get; init; }
    public int? BatchCount { get; init; }
    /// <summary>Base64 (with or without a data: prefix).</summary>
    public string? InitImage { get; init; }
    public string? Mask { get; init; }
    public NativeInpaint? Inpaint { get; init; }
    public IReadOnlyList<NativeLora>? Loras { get; init; }
    /// <summary>name -> A1111 LoRA hash (a PNG's `Lora hashes`): a tag whose name is not in the folder is found by hash.</summary>
    public IReadOnlyDictionary<string, string>? KnownLoraHashes { get; init; }
    /// <summary>"a1111" (default) or "comfy".</summary>
    public string? PromptStyle { get; init; }
    /// <summary>"cpu" (default) or "nv".</summary>
    public string? Noise { get; init; }
    public long? Subseed { get; init; }
    public double? SubseedStrength { get; init; }
    public string? VaeTiling { get; init; }
    /// <summary>A preview image with every n-th step event (default 2; 0: none).</summary>
    public int? PreviewEvery { get; init; }
    /// <summary>"auto" (default: bypass only for per-step schedules), "merge" or "bypass".</summary>
    public string? LoraMode { get; init; }
    /// <summary>Write the images to the outputs folder (default true).</summary>
    public bool? Save { get; init; }
}

/// <summary>
/// The native API under /api/v1 (OpenAPI at /openapi/v1.json): submit a generation, follow it
/// (status, Server-Sent Events, images, previews), cancel, interrupt, skip; models, LoRAs with
/// metadata and trigger words, a LoRA's coverage on a model, samplers, embeddings, outputs, PNG info.
/// </summary>
public static class NativeRoutes
{
    public static void Map(WebApplication app)
    {
        var api = app.MapGroup("/api/v1");
        api.MapPost("/generate", (NativeGenerateRequest body, ServerEngine engine, HttpContext http) =>
        {
            var job = engine.Submit(ToJob(body), body.Save == false ? null : (body.InitImage is null ? "txt2img" : "img2img"), request: body);
            return Results.Accepted($"/api/v1/jobs/{job.Id}", new { id = job.Id, state = Name(job.State), position = engine.Queue.Pending.Count });
        });
        api.MapGet("/jobs", (ServerEngine engine) => new
        {
            running = engine.Queue.Running.Select(Status),
            pending = engine.Queue.Pending.Select(Status),
            finished = engine.Queue.Finished.TakeLast(50).Reverse().Select(Status),
        });
        api.MapGet("/jobs/{id}", (string id, ServerEngine engine) => Find(engine, id) is { } job ? Results.Json(Status(job), LoraServer.Json) : NotFound("job", id));
        api.MapGet("/jobs/{id}/events", Events);
        api.MapGet("/jobs/{id}/images/{index:int}", (string id, int index, ServerEngine engine) =>
            Find(engine, id)?.Result is ServerResult r && index >= 0 && index < r.Output.Images.Count
                ? Results.File(r.Output.Images[index].Png, "image/png") : NotFound("image", $"{id}/{index}"));
        api.MapGet("/jobs/{id}/preview", (string id, ServerEngine engine) =>
            Find(engine, id)?.LastPreview is { } png ? Results.File(png, "image/png") : NotFound("preview", id));
        api.MapPost("/jobs/{id}/cancel", (string id, ServerEngine engine) => new { cancelled = engine.Queue.Cancel(id) });
        api.MapPost("/jobs/{id}/interrupt", (string id, ServerEngine engine) => Control(engine, id, c => c.Interrupt()));
        api.MapPost("/jobs/{id}/skip", (string id, ServerEngine engine) => Control(engine, id, c => c.Skip()));

        api.MapGet("/models", (ServerEngine engine) => engine.Catalog.Entries.Select(e => new
        {
            name = e.Name, file = e.FileName, kind = e.Kind.ToString().ToLowerInvariant(), config = e.ConfigDir is not null,
            family = CheckpointFamily.Of(e)?.ToString().ToLowerInvariant(),
            loaded = engine.Models.Loaded.Any(m => m.Entry.Path == e.Path), current = SafeCurrent(engine) == e.Name,
        }));
        api.MapPost("/models/refresh", (ServerEngine engine) =>
        {
            engine.Catalog.Refresh();
            return new { count = engine.Catalog.Entries.Count };
        });
        api.MapGet("/loras", (ServerEngine engine) => engine.Loras.Listings(engine.Hashes).Select(l => LoraJson(engine, l, full: false)));
        api.MapGet("/loras/{name}", (string name, ServerEngine engine) =>
        {
            var path = engine.Loras.Resolve(name);
            var listing = engine.Loras.Listings(engine.Hashes).First(l => l.Path == path);
            return Results.Json(LoraJson(engine, listing, full: true), LoraServer.Json);
        });
        api.MapGet("/loras/{name}/preview", (string name, ServerEngine engine) =>
            LoraSidecars.FindPreview(LoraSidecars.Stem(engine.Loras.Resolve(name))) is { } p ? Results.File(p, ContentType(p)) : NotFound("preview", name));
        api.MapPost("/loras/refresh", (ServerEngine engine) =>
        {
            engine.Loras.Refresh();
            return new { count = engine.Loras.Files.Count };
        });
        api.MapPut("/loras/{name}/user-metadata", (string name, JsonElement body, ServerEngine engine) =>
        {
            var path = engine.Loras.Resolve(name);
            UserMetadataFile.Write(path, body);
            engine.Loras.Forget(path);
            return Results.Json(LoraJson(engine, engine.Loras.Listings(engine.Hashes).First(l => l.Path == path), full: true), LoraServer.Json);
        });
        api.MapGet("/loras/{name}/coverage", async (string name, string? model, ServerEngine engine, CancellationToken ct) =>
        {
            var path = engine.Loras.Resolve(name);
            var entry = model is null ? engine.CurrentModel : engine.Catalog.Resolve(model);
            var job = engine.Queue.Submit("coverage", new { lora = name, model = entry.Name }, ctx => Coverage.Of(engine, entry, path));
            await job.Completion.WaitAsync(ct);
            return job.State == JobState.Completed ? Results.Json(job.Result, LoraServer.Json) : Failed(job);
        });
        api.MapGet("/samplers", () => SamplerRegistry.Samplers.Select(s => new
        {
            name = s.Id, a1111_name = s.A1111Name, aliases = s.A1111Aliases, default_scheduler = s.Automatic, ancestral = s.Ancestral, calls_per_step = s.CallsPerStep,
        }));
        api.MapGet("/schedulers", () => SamplerRegistry.Schedulers.Select(s => new { name = s.Id, label = s.A1111Label, aliases = s.Aliases }));
        api.MapGet("/embeddings", (ServerEngine engine) => engine.Service.Embeddings.List().Select(e => new
        {
            name = e.Name, vectors = e.Vectors, shape = e.Shape, family = e.Family?.ToString(), problem = e.Problem,
        }));
        api.MapPost("/embeddings/refresh", (ServerEngine engine) =>
        {
            engine.Service.RefreshEmbeddings();
            return new { count = engine.Service.Embeddings.List().Count };
        });
        api.MapGet("/outputs", (ServerEngine engine, int? limit) => engine.Outputs.Recent(Math.Clamp(limit ?? 100, 1, 1000)).Select(o => new
        {
            path = o.RelativePath, url = "/api/v1/outputs/file/" + o.RelativePath, created = o.Created, bytes = o.Bytes,
        }));
        api.MapGet("/outputs/file/{**path}", (string path, ServerEngine engine) =>
            engine.Outputs.Find(path) is { } file ? Results.File(file, "image/png") : NotFound("output", path));
        api.MapPost("/png-info", (JsonElement body, ServerEngine engine) =>
        {
            var bytes = Base64Image.Decode(body.TryGetProperty("image", out var i) ? i.GetString() : null, "image");
            var text = ImageFiles.ReadTextChunks(bytes, "image");
            text.TryGetValue(ImageFiles.ParametersKey, out var parameters);
            var parsed = parameters is null ? null : GenerationParameters.Parse(parameters);
            return new
            {
                parameters,
                prompt = parsed?.Prompt, negative = parsed?.Negative,
                settings = parsed?.Settings.ToDictionary(kv => kv.Key, kv => kv.Value),
                items = text.Where(kv => kv.Key != ImageFiles.ParametersKey).ToDictionary(kv => kv.Key, kv => kv.Value),
                generate = parsed is null ? null : PngInfoRequest.From(engine, parsed),
                loras = parsed is null ? null : PngInfoRequest.Loras(engine, parsed),
            };
        });
        api.MapGet("/status", (ServerEngine engine) => new
        {
            version = engine.Options.Version, queue = new { running = engine.Queue.Running.Count, pending = engine.Queue.Pending.Count, limit = engine.Queue.Options.Limit },
            models_loaded = engine.Models.Loaded.Select(m => m.Entry.Name), current_model = SafeCurrent(engine),
        });
    }

    static string? SafeCurrent(ServerEngine engine)
    {
        try { return engine.CurrentModel.Name; }
        catch (UserErrorException) { return null; }
    }

    static Job? Find(ServerEngine engine, string id) => engine.Queue.Get(id);

    static IResult NotFound(string what, string name) =>
        Results.Json(new { error = new { kind = "notfound", message = $"{what} '{name}' not found" } }, LoraServer.Json, statusCode: 404);

    static IResult Failed(Job job) =>
        Results.Json(new { error = new { kind = job.ErrorKind?.ToString().ToLowerInvariant() ?? "internal", message = job.Error } }, LoraServer.Json,
                     statusCode: job.ErrorKind is { } k ? LoraServer.Status(k) : 500);

    static object Control(ServerEngine engine, string id, Action<JobContext> action)
    {
        if (Find(engine, id) is not { } job || job.IsFinished) return new { ok = false };
        action(job.Context);
        return new { ok = true };
    }

    static string Name(JobState s) => s.ToString().ToLowerInvariant();

    /// <summary>A job as the native API shows it.</summary>
    public static object Status(Job job) => new
    {
        id = job.Id, kind = job.Kind, state = Name(job.State), created = job.CreatedAt, started = job.StartedAt, finished = job.FinishedAt,
        progress = job.LastStep is { } s ? new
        {
            step = s.Step, steps = s.Steps, image = s.Image, images = s.Images, fraction = job.State == JobState.Completed ? 1 : s.Progress,
            seconds_per_step = s.SecondsPerStep, eta_seconds = s.EtaSeconds,
        } : null,
        preview = job.LastPreview is null ? null : $"/api/v1/jobs/{job.Id}/preview",
        error = job.Error is null ? null : new { kind = job.ErrorKind?.ToString().ToLowerInvariant() ?? "internal", message = job.Error },
        result = job.Result is ServerResult r ? Result(job, r) : job.Result,
    };

    static object Result(Job job, ServerResult r) => new
    {
        images = r.Output.Images.Select((img, i) => new
        {
            url = $"/api/v1/jobs/{job.Id}/images/{i}", saved = i < r.Saved.Count ? "/api/v1/outputs/file/" + r.Saved[i].RelativePath : null,
            seed = img.Seed, width = img.Width, height = img.Height, infotext = img.Infotext, partial = img.Partial,
        }),
        notes = r.Output.Notes, warnings = r.Output.Warnings, interrupted = r.Output.Interrupted, seconds = r.Output.Seconds,
        model = r.Output.Job.ModelName, loras = r.Output.Job.Loras.Select(l => new { name = l.Name, unet = l.UNet, te = l.TextEncoder, layers = l.Layers, unmatched = l.UnmatchedKeys }),
    };

    /// <summary>Server-Sent Events: every event of the job (replayed from the start), then the stream ends.</summary>
    static async Task Events(string id, ServerEngine engine, HttpContext http)
    {
        if (Find(engine, id) is not { } job)
        {
            await NotFound("job", id).ExecuteAsync(http);
            return;
        }
        http.Response.ContentType = "text/event-stream";
        http.Response.Headers.CacheControl = "no-cache";
        http.Response.Headers["X-Accel-Buffering"] = "no";
        var reader = job.Subscribe();
        var ct = http.RequestAborted;
        try
        {
            await foreach (var e in reader.ReadAllAsync(ct))
            {
                var (type, data) = EventJson(job, e);
                await http.Response.WriteAsync($"event: {type}\ndata: {JsonSerializer.Serialize(data, LoraServer.Json)}\n\n", ct);
                await http.Response.Body.FlushAsync(ct);
            }
        }
        catch (OperationCanceledException) { } // the client went away: the job goes on
    }

    static (string Type, object Data) EventJson(Job job, JobEvent e) => e switch
    {
        JobQueued q => ("queued", new { id = job.Id, position = q.Position }),
        JobStarted => ("started", new { id = job.Id }),
        JobPhase p => ("phase", new { id = job.Id, phase = p.Phase, detail = p.Detail }),
        JobStep s => ("step", new
        {
            id = job.Id, step = s.Step, steps = s.Steps, image = s.Image, images = s.Images, fraction = s.Progress,
            seconds_per_step = s.SecondsPerStep, eta_seconds = s.EtaSeconds,
            preview = s.Preview is null ? null : "data:image/png;base64," + Convert.ToBase64String(s.Preview),
        }),
        JobMessage m => ("message", new { id = job.Id, text = m.Text, warning = m.Warning }),
        JobImage i => ("image", new { id = job.Id, index = i.Index, url = $"/api/v1/jobs/{job.Id}/images/{i.Index}", seed = i.Image.Seed, infotext = i.Image.Infotext }),
        JobCompleted => ("completed", Status(job)),
        JobFailed f => ("failed", new { id = job.Id, kind = f.Kind?.ToString().ToLowerInvariant() ?? "internal", message = f.Message }),
        JobCancelled => ("cancelled", new { id = job.Id }),
        ServerEvent x => (x.Type, x.Data),
        _ => ("event", new { id = job.Id }),
    };

    static object LoraJson(ServerEngine engine, LoraListing l, bool full)
    {
        var sidecars = LoraSidecars.Read(l.Path);
        var info = l.Info;
        string relative = Path.GetRelativePath(engine.Loras.Root, l.Path).Replace(Path.DirectorySeparatorChar, '/');
        string name = LoraLibrary.NameOf(l.Path);
        return new
        {
            name, file = relative, folder = Path.GetDirectoryName(relative)?.Replace(Path.DirectorySeparatorChar, '/') ?? "",
            error = l.Error,
            family = info?.Family?.ToString().ToLowerInvariant(), algorithm = info?.Algorithm.ToString().ToLowerInvariant(), dora = info?.Dora ?? false,
            algorithms = full ? info?.Algorithms.ToDictionary(a => a.Key.Id(), a => a.Value) : null,
            rank = info?.Rank, alpha = info?.Alpha, modules = info?.Modules, title = info?.Title, hash = info?.Hash,
            triggers = info?.Triggers?.Words ?? [], triggers_source = info?.Triggers?.Source,
            tags = info?.TopTags(10).Select(t => t.Tag) ?? [],
            base_model = sidecars.BaseModel,
            preview = sidecars.PreviewPath is null ? null : $"/api/v1/loras/{Uri.EscapeDataString(name)}/preview",
            user = sidecars.UserMetadata is { } u ? new
            {
                activation_text = u.ActivationText, preferred_weight = u.PreferredWeight, negative_text = u.NegativeText, notes = u.Notes, description = u.Description, sd_version = u.SdVersion,
            } : null,
            civitai = sidecars.Civitai is { } c ? new { model_id = c.ModelId, version_id = c.VersionId, model_name = c.ModelName, trained_words = c.TrainedWords, description = full ? c.Description : null } : null,
            metadata = full ? info?.Metadata : null,
            tag_frequency = full && info is not null ? info.TopTags(40).Select(t => new { tag = t.Tag, count = t.Count }) : null,
        };
    }

    static string ContentType(string path) => Path.GetExtension(path).ToLowerInvariant() switch
    {
        ".jpg" or ".jpeg" => "image/jpeg",
        ".webp" => "image/webp",
        ".gif" => "image/gif",
        _ => "image/png",
    };

    static LoraUse ToUse(NativeLora l)
    {
        if (l.Blocks is not null && (l.Lbw ?? l.Lbwe) is not null)
            throw new UserErrorException($"LoRA '{l.Name}': give blocks or lbw, not both") { Field = "loras" };
        return new LoraUse(l.Name, l.Unet ?? 1, l.Te ?? l.Unet ?? 1)
        {
            UNetSchedule = l.UnetSchedule, TextEncoderSchedule = l.TeSchedule,
            Blocks = l.Blocks is { } b ? Field("loras", () => LoraBlockWeights.FromBlocks(b))
                : (l.Lbw ?? l.Lbwe) is not null ? Field("loras", () => LoraBlockWeights.Parse(l.Lbw, l.Lbwe)) : null,
        };
    }

    static T Field<T>(string field, Func<T> parse)
    {
        try { return parse(); }
        catch (UserErrorException e) when (e.Field is null) { throw new UserErrorException(e.Kind, e.Message) { Field = field }; }
    }

    /// <summary>The native request as a job.</summary>
    public static GenerationJob ToJob(NativeGenerateRequest r) => new()
    {
        Model = r.Model ?? "",
        Prompt = r.Prompt, Negative = r.Negative ?? "",
        Seed = Seeds.FromNumber(r.Seed),
        Steps = r.Steps ?? 20, Cfg = r.Cfg ?? 7, Sampler = r.Sampler ?? "euler_ancestral", Scheduler = r.Scheduler,
        Width = r.Width, Height = r.Height, ClipSkip = r.ClipSkip ?? 1, Denoise = r.Denoise, BatchCount = r.BatchCount ?? 1,
        InitImage = r.InitImage is null ? null : ImageInput.FromBytes(Base64Image.Decode(r.InitImage, "init_image")),
        Mask = r.Mask is null ? null : ImageInput.FromBytes(Base64Image.Decode(r.Mask, "mask")),
        Inpaint = r.Inpaint is { } i ? new InpaintSettings
        {
            OnlyMasked = i.OnlyMasked ?? false, Padding = i.Padding, WorkingSize = i.WorkingSize, MaskBlur = i.MaskBlur ?? 0,
            InvertMask = i.InvertMask ?? false,
            MaskedContent = i.MaskedContent?.ToLowerInvariant() switch
            {
                null or "original" => MaskedContent.Original,
                "fill" => MaskedContent.Fill,
                "latent_noise" or "latent noise" => MaskedContent.LatentNoise,
                "latent_nothing" or "latent nothing" => MaskedContent.LatentNothing,
                var m => throw new UserErrorException($"masked_content must be fill, original, latent_noise or latent_nothing, got '{m}'") { Field = "masked_content" },
            },
        } : new InpaintSettings(),
        Loras = r.Loras?.Select(ToUse).ToList() ?? [],
        LoraMode = r.LoraMode is null ? LoraMode.Auto : Field("lora_mode", () => LoraModes.Parse(r.LoraMode)),
        KnownLoraHashes = r.KnownLoraHashes,
        PromptStyle = r.PromptStyle?.ToLowerInvariant() switch
        {
            null or "a1111" => PromptStyle.A1111,
            "comfy" or "comfyui" => PromptStyle.ComfyUI,
            var s => throw new UserErrorException($"prompt_style must be a1111 or comfy, got '{s}'") { Field = "prompt_style" },
        },
        Noise = r.Noise?.ToLowerInvariant() switch
        {
            null or "cpu" => RandomSource.Cpu,
            "nv" or "gpu" => RandomSource.Nv,
            var n => throw new UserErrorException($"noise must be cpu or nv, got '{n}'") { Field = "noise" },
        },
        Subseed = r.Subseed is { } sub ? Seeds.FromNumber(sub) : null, SubseedStrength = r.SubseedStrength ?? 0,
        VaeTiling = r.VaeTiling is null ? VaeTilingMode.Auto : VaeTiling.Parse(r.VaeTiling),
        PreviewEvery = r.PreviewEvery ?? 2,
    };
}
