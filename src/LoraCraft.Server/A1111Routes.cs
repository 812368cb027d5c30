using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using LoraCraft.Generation;
using LoraCraft.Lora;
using LoraCraft.Pipelines;
using LoraCraft.Sampling;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;

namespace LoraCraft.Server;

/// <summary>
/// AUTOMATIC1111's API under /sdapi/v1, as its clients (webuiapi, bots, Krita/Photoshop plugins)
/// call it: A1111's field names in (nulls, deprecated and unknown fields accepted), A1111's shapes
/// out, errors as `{error, detail, body, errors}`. Each route translates into one
/// <see cref="GenerationJob"/> for the shared engine.
/// </summary>
public static class A1111Routes
{
    /// <summary>A1111's options this server keeps (the rest of a POST is stored and echoed).</summary>
    static readonly Dictionary<string, JsonNode?> Stored = new(StringComparer.Ordinal);
    static readonly object OptionsLock = new();

    public static void Map(WebApplication app)
    {
        var api = app.MapGroup("/sdapi/v1");
        api.MapPost("/txt2img", (HttpContext http, ServerEngine engine) => Generate(http, engine, img2img: false));
        api.MapPost("/img2img", (HttpContext http, ServerEngine engine) => Generate(http, engine, img2img: true));
        api.MapGet("/progress", (ServerEngine engine, bool? skip_current_image) => Progress(engine, skip_current_image == true));
        api.MapPost("/interrupt", (ServerEngine engine) =>
        {
            foreach (var j in engine.Queue.Running.Where(j => j.Kind == "generate")) j.Context.Interrupt();
            return Results.Json(new { });
        });
        api.MapPost("/skip", (ServerEngine engine) =>
        {
            foreach (var j in engine.Queue.Running.Where(j => j.Kind == "generate")) j.Context.Skip();
            return Results.Json(new { });
        });
        api.MapGet("/options", (ServerEngine engine) => Options(engine));
        api.MapPost("/options", async (HttpContext http, ServerEngine engine) =>
        {
            var body = await ReadObject(http);
            if (body.TryGetPropertyValue("sd_model_checkpoint", out var ckpt) && ckpt?.GetValue<string>() is { Length: > 0 } name)
                engine.SelectModel(name);
            lock (OptionsLock)
                foreach (var (k, v) in body)
                    if (k != "sd_model_checkpoint") Stored[k] = v?.DeepClone();
            return JsonNull();
        });
        api.MapGet("/sd-models", (ServerEngine engine) => engine.Catalog.Entries.Where(e => e.Kind != CheckpointKind.Pickle).Select(e => Model(engine, e)));
        api.MapPost("/refresh-checkpoints", (ServerEngine engine) =>
        {
            engine.Catalog.Refresh();
            return JsonNull();
        });
        api.MapPost("/unload-checkpoint", (ServerEngine engine) => Results.Json(new { unloaded = engine.Models.UnloadIdle() }));
        api.MapPost("/reload-checkpoint", () => JsonNull());
        api.MapGet("/loras", (ServerEngine engine) => engine.Loras.Listings(engine.Hashes).Where(l => l.Info is not null).Select(l => new
        {
            name = LoraLibrary.NameOf(l.Path),
            alias = l.Info!.Metadata.TryGetValue("ss_output_name", out var alias) && alias.Length > 0 ? alias : LoraLibrary.NameOf(l.Path),
            path = l.Path,
            metadata = l.Info.Metadata,
        }));
        api.MapPost("/refresh-loras", (ServerEngine engine) =>
        {
            engine.Loras.Refresh();
            return JsonNull();
        });
        api.MapGet("/samplers", () => SamplerRegistry.Samplers.Select(s => new
        {
            name = s.A1111Name ?? s.Id,
            aliases = s.A1111Aliases.Append(s.Id).Distinct().ToArray(),
            options = s.Automatic == "normal" ? new Dictionary<string, string>() : new Dictionary<string, string> { ["scheduler"] = s.Automatic },
        }));
        api.MapGet("/schedulers", () => new[] { new { name = "automatic", label = "Automatic", aliases = Array.Empty<string>(), default_rho = -1.0, need_inner_model = false } }
            .Concat(SamplerRegistry.Schedulers.Where(s => s.A1111Label is not null).SelectMany(s => s.Aliases.Where(a => a == "Uniform")
                .Select(a => new { name = "uniform", label = a, aliases = Array.Empty<string>(), default_rho = -1.0, need_inner_model = true })
                .Prepend(new { name = A1111SchedulerName(s.Id), label = s.A1111Label!, aliases = s.Aliases.Where(a => a != "Uniform").ToArray(), default_rho = s.Id == "karras" ? 7.0 : -1.0, need_inner_model = s.Id is "normal" or "simple" or "ddim_uniform" }))));
        api.MapGet("/upscalers", () => new[]
        {
            new { name = "None", model_name = (string?)null, model_path = (string?)null, model_url = (string?)null, scale = 4.0 },
            new { name = "Lanczos", model_name = (string?)null, model_path = (string?)null, model_url = (string?)null, scale = 4.0 },
            new { name = "Nearest", model_name = (string?)null, model_path = (string?)null, model_url = (string?)null, scale = 4.0 },
        });
        api.MapGet("/latent-upscale-modes", () => new[] { new { name = "Latent" }, new { name = "Latent (nearest)" } });
        api.MapGet("/sd-vae", () => Array.Empty<object>());
        api.MapPost("/refresh-vae", () => JsonNull());
        api.MapGet("/hypernetworks", () => Array.Empty<object>());
        api.MapGet("/face-restorers", () => Array.Empty<object>());
        api.MapGet("/realesrgan-models", () => Array.Empty<object>());
        api.MapGet("/prompt-styles", () => Array.Empty<object>());
        api.MapGet("/scripts", () => new { txt2img = Array.Empty<string>(), img2img = Array.Empty<string>() });
        api.MapGet("/script-info", () => Array.Empty<object>());
        api.MapGet("/extensions", () => Array.Empty<object>());
        api.MapGet("/embeddings", (ServerEngine engine) =>
        {
            var all = engine.Service.Embeddings.List();
            object Entry(Text.Embeddings.EmbeddingInfo e) => new { step = e.Step, sd_checkpoint = e.SdCheckpoint, sd_checkpoint_name = e.SdCheckpointName, shape = e.Shape, vectors = e.Vectors };
            return new
            {
                loaded = all.Where(e => e.Problem is null).ToDictionary(e => e.Name, Entry),
                skipped = all.Where(e => e.Problem is not null).ToDictionary(e => e.Name, Entry),
            };
        });
        api.MapPost("/refresh-embeddings", (ServerEngine engine) =>
        {
            engine.Service.RefreshEmbeddings();
            return JsonNull();
        });
        api.MapPost("/png-info", async (HttpContext http) =>
        {
            var body = await ReadObject(http);
            var bytes = Base64Image.Decode(body["image"]?.GetValue<string>(), "image");
            var text = ImageFiles.ReadTextChunks(bytes, "image");
            text.TryGetValue(ImageFiles.ParametersKey, out var info);
            var parsed = info is null ? null : GenerationParameters.Parse(info);
            var parameters = new Dictionary<string, object?>();
            if (parsed is not null)
            {
                parameters["Prompt"] = parsed.Prompt;
                parameters["Negative prompt"] = parsed.Negative;
                foreach (var kv in parsed.Settings) parameters[kv.Key] = kv.Value;
            }
            return Results.Json(new { info = info ?? "", items = text.Where(kv => kv.Key != ImageFiles.ParametersKey).ToDictionary(kv => kv.Key, kv => kv.Value), parameters });
        });
        api.MapGet("/cmd-flags", (ServerEngine engine) => new Dictionary<string, object?>
        {
            ["api"] = true, ["listen"] = LoraServer.IsPublic(engine.Options.Host), ["port"] = engine.Options.Port,
            ["ckpt_dir"] = engine.Catalog.Root, ["lora_dir"] = engine.Loras.Root, ["embeddings_dir"] = engine.Options.EmbeddingsDir,
            ["api_auth"] = engine.Options.Auth.Count > 0 ? "***" : null, ["nowebui"] = false,
        });
        api.MapGet("/memory", () =>
        {
            long total = GC.GetGCMemoryInfo().TotalAvailableMemoryBytes, free = Runtime.SystemMemory.AvailableBytes();
            return new { ram = new { free, used = total - free, total }, cuda = new { error = "no CUDA device in use" } };
        });
    }

    /// <summary>A1111 answers some POSTs with JSON `null` (clients call .json() on it).</summary>
    static IResult JsonNull() => Results.Content("null", "application/json");

    static string A1111SchedulerName(string ours) => ours switch { "sgm_uniform" => "sgm_uniform", "ddim_uniform" => "ddim", _ => ours };

    /// <summary>A1111's sd-models entry; the hash only when already known (listing never hashes gigabytes).</summary>
    sealed record SdModel(string Title, string ModelName, string? Hash, string? Sha256, string Filename, string? Config);

    static SdModel Model(ServerEngine engine, CheckpointEntry e)
    {
        string? sha = e.Kind == CheckpointKind.SingleFile ? engine.Hashes.KnownSha256(e.Path) : null;
        string? hash = sha?[..10];
        return new SdModel(hash is null ? e.FileName : $"{e.FileName} [{hash}]", e.Name.Replace('/', '_'), hash, sha, e.Path, e.ConfigDir);
    }

    static Dictionary<string, object?> Options(ServerEngine engine)
    {
        var o = new Dictionary<string, object?>(StringComparer.Ordinal)
        {
            ["samples_save"] = true, ["samples_format"] = "png", ["outdir_samples"] = "", ["outdir_txt2img_samples"] = Path.Combine(engine.Outputs.Root, "txt2img-images"),
            ["outdir_img2img_samples"] = Path.Combine(engine.Outputs.Root, "img2img-images"), ["CLIP_stop_at_last_layers"] = 1, ["randn_source"] = "CPU",
            ["img2img_fix_steps"] = false, ["show_progress_every_n_steps"] = 2, ["live_previews_enable"] = true, ["sd_vae"] = "Automatic",
        };
        try
        {
            var current = engine.CurrentModel;
            o["sd_model_checkpoint"] = Model(engine, current).Title;
            o["sd_checkpoint_hash"] = current.Kind == CheckpointKind.SingleFile ? engine.Hashes.KnownSha256(current.Path) : null;
        }
        catch (UserErrorException)
        {
            o["sd_model_checkpoint"] = null;
        }
        lock (OptionsLock)
            foreach (var (k, v) in Stored) o[k] = v?.DeepClone();
        return o;
    }

    static JsonNode? Stored_(string key)
    {
        lock (OptionsLock) return Stored.TryGetValue(key, out var v) ? v?.DeepClone() : null;
    }

    static async Task<JsonObject> ReadObject(HttpContext http)
    {
        JsonNode? node;
        try { node = await JsonNode.ParseAsync(http.Request.Body); }
        catch (JsonException e) { throw new UserErrorException("the request body is not valid JSON: " + e.Message); }
        return node as JsonObject ?? throw new UserErrorException("the request body must be a JSON object");
    }

    /// <summary>txt2img / img2img: queued like every job; the response waits for it, as A1111's does.</summary>
    static async Task<IResult> Generate(HttpContext http, ServerEngine engine, bool img2img)
    {
        var body = await ReadObject(http);
        var f = new A1111Fields(body);
        string samplerName = f.String("sampler_name") is { Length: > 0 } s ? s : f.String("sampler_index") is { Length: > 0 } si ? si : "Euler a";
        try { SamplerNames.Resolve(samplerName, SchedulerOf(f)); }
        catch (UserErrorException e) when (e.Field == "sampler")
        {
            return Results.Json(new { error = "HTTPException", detail = "Sampler not found", body = "", errors = e.Message }, statusCode: 404);
        }
        var (job, model) = ToJob(engine, f, img2img, samplerName);
        bool save = f.Bool("save_images") ?? false;
        var queued = engine.Submit(job, save ? (img2img ? "img2img" : "txt2img") : null, request: body.ToJsonString());
        queued.Tags["a1111"] = true;
        // a client that goes away stops its own job, nobody else's
        using var _ = http.RequestAborted.Register(() => engine.Queue.Cancel(queued.Id));
        await queued.Completion;
        if (queued.State == JobState.Cancelled) return Results.Json(Error(null, 499, "the request was cancelled"), statusCode: 499);
        if (queued.State == JobState.Failed)
        {
            int status = queued.ErrorKind is { } k ? LoraServer.Status(k) : 500;
            return Results.Json(Error(null, status, queued.Error ?? "failed"), statusCode: status);
        }
        var result = (ServerResult)queued.Result!;
        bool send = f.Bool("send_images") ?? true;
        var parameters = Echo(body, img2img);
        return Results.Json(new
        {
            images = send ? result.Output.Images.Select(i => Base64Image.Encode(i.Png)).ToArray() : [],
            parameters,
            info = JsonSerializer.Serialize(Info(result.Output, f, model, job)),
        });
    }

    static string? SchedulerOf(A1111Fields f) => f.String("scheduler") is { Length: > 0 } s && !s.Equals("automatic", StringComparison.OrdinalIgnoreCase) ? s : null;

    /// <summary>The request echoed back with A1111's defaults filled in; img2img drops its images unless include_init_images.</summary>
    static JsonObject Echo(JsonObject body, bool img2img)
    {
        var echo = (JsonObject)body.DeepClone();
        if (img2img && echo["include_init_images"]?.GetValue<bool>() != true)
        {
            echo["init_images"] = null;
            echo["mask"] = null;
        }
        return echo;
    }

    static (GenerationJob Job, CheckpointEntry Model) ToJob(ServerEngine engine, A1111Fields f, bool img2img, string sampler)
    {
        var overrides = f.Object("override_settings");
        string? checkpoint = overrides?["sd_model_checkpoint"]?.GetValue<string>();
        var model = checkpoint is { Length: > 0 } ? engine.Catalog.Resolve(checkpoint) : engine.CurrentModel;
        int clipSkip = Int(overrides?["CLIP_stop_at_last_layers"]) ?? Int(Stored_("CLIP_stop_at_last_layers")) ?? f.Int("clip_skip") ?? 1;
        string randn = overrides?["randn_source"]?.GetValue<string>() ?? Stored_("randn_source")?.GetValue<string>() ?? "CPU";
        int batch = Math.Max(1, f.Int("batch_size") ?? 1) * Math.Max(1, f.Int("n_iter") ?? 1);
        int steps = f.Int("steps") ?? 50;
        double denoise = f.Double("denoising_strength") ?? 0.75;
        var job = new GenerationJob
        {
            Model = model.Name,
            Prompt = f.String("prompt") ?? "", Negative = f.String("negative_prompt") ?? "",
            Seed = Seeds.FromNumber(f.Long("seed") ?? -1),
            Subseed = f.Double("subseed_strength") is > 0 ? Seeds.FromNumber(f.Long("subseed") ?? -1) : null,
            SubseedStrength = f.Double("subseed_strength") ?? 0,
            Steps = steps, Cfg = f.Double("cfg_scale") ?? 7, Sampler = sampler, Scheduler = SchedulerOf(f),
            Width = f.Int("width") ?? 512, Height = f.Int("height") ?? 512, ClipSkip = clipSkip, BatchCount = batch,
            Noise = randn.Equals("NV", StringComparison.OrdinalIgnoreCase) ? RandomSource.Nv : RandomSource.Cpu,
            NoiseConvention = randn.Equals("NV", StringComparison.OrdinalIgnoreCase) || randn.Equals("CPU", StringComparison.OrdinalIgnoreCase) && Stored_("randn_source") is not null
                ? NoiseConvention.A1111 : null,
            PreviewEvery = 2,
        };
        if (!img2img) return (job, model);

        var images = f.Array("init_images");
        if (images is null || images.Count == 0) throw new UserErrorException("init_images: img2img needs at least one image") { Field = "init_images" };
        int w = job.Width!.Value, h = job.Height!.Value;
        var init = A1111Resize.Apply(Base64Image.Decode(images[0]?.GetValue<string>(), "init_images"), f.Int("resize_mode") ?? 0, w, h);
        byte[]? mask = f.String("mask") is { Length: > 0 } m ? A1111Resize.Apply(Base64Image.Decode(m, "mask"), f.Int("resize_mode") ?? 0, w, h) : null;
        // A1111 runs the last int(steps * denoise) + 1 sigmas of a schedule of `steps`
        int tEnc = (int)(Math.Min(denoise, 0.999) * steps);
        bool onlyMasked = mask is not null && (f.Bool("inpaint_full_res") ?? true);
        return (job with
        {
            InitImage = ImageInput.FromBytes(init), Mask = mask is null ? null : ImageInput.FromBytes(mask),
            Denoise = denoise, Steps = Math.Max(1, tEnc + 1), ScheduleSteps = steps,
            Inpaint = new InpaintSettings
            {
                OnlyMasked = onlyMasked, Padding = f.Int("inpaint_full_res_padding") ?? 0, WorkingSize = onlyMasked ? Math.Max(w, h) : null,
                MaskBlur = f.Int("mask_blur") ?? 4, InvertMask = (f.Int("inpainting_mask_invert") ?? 0) == 1,
                MaskedContent = (f.Int("inpainting_fill") ?? 1) switch
                {
                    0 => MaskedContent.Fill,
                    2 => MaskedContent.LatentNoise,
                    3 => MaskedContent.LatentNothing,
                    _ => MaskedContent.Original,
                },
            },
        }, model);
    }

    static int? Int(JsonNode? n) => n is JsonValue v && v.TryGetValue<int>(out var i) ? i : n is JsonValue s && s.TryGetValue<string>(out var t) && int.TryParse(t, CultureInfo.InvariantCulture, out var p) ? p : null;

    /// <summary>A1111's `info`: the keys its Processed.js() writes.</summary>
    static Dictionary<string, object?> Info(GenerationOutput o, A1111Fields f, CheckpointEntry model, GenerationJob job)
    {
        var j = o.Job;
        var seeds = o.Images.Select(i => i.Seed).ToArray();
        var (sampler, _) = SamplerNames.ToA1111(j.Sampler, j.Scheduler);
        return new Dictionary<string, object?>
        {
            ["prompt"] = j.Prompt, ["all_prompts"] = o.Images.Select(_ => j.Prompt).ToArray(),
            ["negative_prompt"] = j.Negative, ["all_negative_prompts"] = o.Images.Select(_ => j.Negative).ToArray(),
            ["seed"] = seeds.FirstOrDefault(j.Seed), ["all_seeds"] = seeds,
            ["subseed"] = o.Images.FirstOrDefault()?.Subseed ?? j.Subseed, ["all_subseeds"] = o.Images.Select(i => i.Subseed).ToArray(),
            ["subseed_strength"] = job.SubseedStrength,
            ["width"] = j.Width, ["height"] = j.Height, ["sampler_name"] = sampler, ["cfg_scale"] = j.Cfg,
            ["steps"] = job.ScheduleSteps ?? j.Steps, ["batch_size"] = Math.Max(1, f.Int("batch_size") ?? 1),
            ["restore_faces"] = false, ["face_restoration_model"] = null, ["sd_model_name"] = j.ModelName, ["sd_model_hash"] = j.ModelHash,
            ["sd_vae_name"] = null, ["sd_vae_hash"] = null, ["seed_resize_from_w"] = -1, ["seed_resize_from_h"] = -1,
            ["denoising_strength"] = j.Img2Img ? j.Denoise : f.Double("denoising_strength"),
            ["extra_generation_params"] = o.Job.Loras.Count > 0 ? new Dictionary<string, object?> { ["Lora hashes"] = LoraHashes(o) } : new Dictionary<string, object?>(),
            ["index_of_first_image"] = 0, ["infotexts"] = o.Images.Select(i => i.Infotext).ToArray(), ["styles"] = Array.Empty<string>(),
            ["job_timestamp"] = DateTime.Now.ToString("yyyyMMddHHmmss", CultureInfo.InvariantCulture), ["clip_skip"] = j.ClipSkip,
            ["is_using_inpainting_conditioning"] = false, ["version"] = "loracraft",
            ["notes"] = o.Notes, ["warnings"] = o.Warnings,
        };
    }

    static string? LoraHashes(GenerationOutput o) =>
        GenerationParameters.Parse(o.Images.FirstOrDefault()?.Infotext ?? "").Get("Lora hashes");

    static object Progress(ServerEngine engine, bool skipImage)
    {
        var running = engine.Queue.Running.FirstOrDefault(j => j.Kind == "generate");
        int count = engine.Queue.Running.Count(j => j.Kind == "generate") + engine.Queue.Pending.Count(j => j.Kind == "generate");
        var step = running?.LastStep;
        double progress = step?.Progress ?? 0;
        double eta = step?.EtaSeconds ?? 0;
        return new
        {
            progress, eta_relative = eta,
            state = new
            {
                skipped = false, interrupted = running?.Context.Interrupted ?? false, stopping_generation = false,
                job = running is null ? "" : $"Batch {(step?.Image ?? 0) + 1} out of {step?.Images ?? 1}",
                job_count = count, job_timestamp = running?.StartedAt?.ToLocalTime().ToString("yyyyMMddHHmmss", CultureInfo.InvariantCulture) ?? "0",
                job_no = step?.Image ?? 0, sampling_step = step?.Step ?? 0, sampling_steps = step?.Steps ?? 0,
            },
            current_image = skipImage || running?.LastPreview is not { } png ? null : Base64Image.Encode(png),
            textinfo = (string?)null,
        };
    }

    /// <summary>A1111's error body: `{error, detail, body, errors}`.</summary>
    public static object Error(Exception? e, int status, string message) => new
    {
        error = e?.GetType().Name ?? (status == 404 ? "HTTPException" : "Error"),
        detail = message,
        body = "",
        errors = message,
    };
}

/// <summary>Tolerant reads of an A1111 request: nulls and numbers sent as strings are fine, unknown fields ignored.</summary>
sealed class A1111Fields(JsonObject body)
{
    JsonNode? Get(string key) => body.TryGetPropertyValue(key, out var v) ? v : null;

    public string? String(string key) => Get(key) is JsonValue v ? (v.TryGetValue<string>(out var s) ? s : v.ToJsonString()) : null;

    public double? Double(string key) => Get(key) is JsonValue v
        ? v.TryGetValue<double>(out var d) ? d
          : v.TryGetValue<string>(out var s) && double.TryParse(s, NumberStyles.Float, CultureInfo.InvariantCulture, out var p) ? p
          : throw new UserErrorException($"{key} must be a number") { Field = key }
        : null;

    public long? Long(string key) => Get(key) is JsonValue v
        ? v.TryGetValue<long>(out var l) ? l
          : v.TryGetValue<double>(out var d) && d == Math.Floor(d) ? (long)d
          : v.TryGetValue<string>(out var s) && long.TryParse(s, CultureInfo.InvariantCulture, out var p) ? p
          : throw new UserErrorException($"{key} must be an integer") { Field = key }
        : null;

    public int? Int(string key) => Long(key) is { } l ? l is >= int.MinValue and <= int.MaxValue ? (int)l : throw new UserErrorException($"{key} is out of range") { Field = key } : null;

    public bool? Bool(string key) => Get(key) is JsonValue v
        ? v.TryGetValue<bool>(out var b) ? b : v.TryGetValue<long>(out var n) ? n != 0 : v.TryGetValue<string>(out var s) ? s is "true" or "True" or "1" : null
        : null;

    public JsonArray? Array(string key) => Get(key) as JsonArray;

    public JsonObject? Object(string key) => Get(key) as JsonObject;
}
