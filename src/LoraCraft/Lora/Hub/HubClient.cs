using System.Security.Cryptography;
using System.Text;
using LoraCraft.IO;
using LoraCraft.Models;

namespace LoraCraft.Lora.Hub;

/// <summary>
/// Getting LoRAs from Civitai, Hugging Face or a URL into a LoRA folder, with the sidecars that
/// LoRA cards show; looking up files already there by hash; searching the sites. Plain data in
/// and out, progress as bytes, cancellable: the CLI and the server's jobs call the same methods.
/// One instance holds one HTTP connection pool and no other state: it may serve several jobs at
/// once (two downloads of the same file into one folder are not: the second waits on the first's
/// partial file and fails). Dispose it when done.
/// </summary>
public sealed class HubClient : IDisposable
{
    const int MaxPreviewBytes = 32 << 20;

    readonly HubHttp _http;
    readonly CivitaiApi _civitai;
    readonly HuggingFaceApi _hf;

    public HubClient(HubOptions options)
    {
        _http = new HubHttp(options);
        _civitai = new CivitaiApi(_http);
        _hf = new HuggingFaceApi(_http);
    }

    public HubOptions Options => _http.Options;

    /// <summary>What the sites call the file, where it comes from and what to check it against.</summary>
    sealed record Plan(HubSite Site, string SourceId, string FileName, ResumableDownload.Source Download, long? ApproximateSize,
                       string? Sha256, CivitaiVersion? Civitai, HuggingFaceRepo? Repo, Uri? Preview, Uri Page);

    /// <summary>
    /// Downloads <paramref name="source"/> (see <see cref="LoraReference.Parse"/>) into
    /// <paramref name="dir"/> as NAME.safetensors (the site's file name unless
    /// <paramref name="name"/> is given), resuming a partial download left by an earlier try,
    /// checks its size and SHA-256 against what the site publishes and that it is a valid
    /// safetensors file, then writes the sidecars. A refused file leaves nothing behind.
    /// </summary>
    public Task<LoraDownload> GetAsync(string source, string dir, string? name = null, bool overwrite = false,
                                       IProgress<DownloadProgress>? progress = null, CancellationToken ct = default) =>
        GetAsync(LoraReference.Parse(source, Options), dir, name, overwrite, progress, ct);

    public async Task<LoraDownload> GetAsync(LoraReference reference, string dir, string? name = null, bool overwrite = false,
                                             IProgress<DownloadProgress>? progress = null, CancellationToken ct = default)
    {
        if (name is not null) CheckName(name);
        var warnings = new List<string>();
        var plan = reference switch
        {
            CivitaiReference c => await PlanCivitai(c, ct),
            HuggingFaceReference h => await PlanHuggingFace(h, warnings, ct),
            UrlReference u => PlanUrl(u),
            _ => throw new ArgumentOutOfRangeException(nameof(reference)),
        };
        if ((plan.Civitai?.BaseModel ?? plan.Repo?.BaseModel) is { } baseModel && BaseModels.FromCivitai(baseModel) is null && BaseModels.FromHuggingFace(baseModel) is null)
            warnings.Add($"its base model is {baseModel}: LoraCraft runs LoRAs for SD 1.x, SD 2.x and SDXL");
        string stem = name is not null ? StripExtension(name) : SafeStem(plan.FileName);
        Directory.CreateDirectory(dir);
        string final = Path.Combine(dir, stem + ".safetensors");

        bool present = false;
        string sha;
        if (File.Exists(final) && !overwrite)
        {
            sha = Sha256Of(final);
            if (plan.Sha256 is null || sha != plan.Sha256)
                throw new HubException($"{final} already exists and is " + (plan.Sha256 is null ? "perhaps another file" : "another file") +
                                       "; choose another name or allow overwriting");
            present = true;
        }
        else sha = await Fetch(plan, dir, stem, final, warnings, progress, ct);

        string? info = null, user = null, preview = null;
        if (plan.Civitai is { } version) info = SidecarWriter.WriteCivitaiInfo(final, version);
        if (plan.Repo is { } repo) user = SidecarWriter.WriteUserMetadata(final, repo, plan.Page);
        if (plan.Preview is { } image) preview = await SavePreview(final, image, plan.Site, warnings, ct);

        var sidecars = LoraSidecars.Read(final);
        return new LoraDownload(final, plan.Site, plan.SourceId, new FileInfo(final).Length, sha, present,
            plan.Civitai?.ModelName ?? plan.Repo?.Id, plan.Civitai?.Name, plan.Civitai?.BaseModel ?? plan.Repo?.BaseModel,
            LoraSidecars.Triggers(final)?.Words ?? [], info, user ?? sidecars.UserMetadataPath, preview ?? sidecars.PreviewPath, warnings);
    }

    /// <summary>Downloads into a partial file beside the final one, checks it, renames it into place; returns its SHA-256.</summary>
    async Task<string> Fetch(Plan plan, string dir, string stem, string final, List<string> warnings,
                             IProgress<DownloadProgress>? progress, CancellationToken ct)
    {
        // the partial file's name says what it is a part of: a resume never splices two different files
        string key = (plan.Sha256 ?? Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(plan.Download.Url.ToString()))))[..12];
        string part = Path.Combine(dir, $".{stem}.safetensors.{key}.part");
        long length = await ResumableDownload.RunAsync(_http, plan.Download, part, stem + ".safetensors", progress, ct);
        string where = plan.SourceId;
        try
        {
            if (plan.Sha256 is null && plan.ApproximateSize is long approx && Math.Abs(length - approx) > Math.Max(4096, approx / 100))
                throw new HubException($"{where}: the file is {length:N0} bytes but the site lists about {approx:N0}; it was not kept");
            string sha = Sha256Of(part);
            if (plan.Sha256 is { } expected && sha != expected)
                throw new HubException($"{where}: SHA-256 mismatch: the site publishes {expected[..16]}…, the downloaded file has {sha[..16]}…; it was not kept");
            DownloadedFileCheck.Validate(part, where);
            try { LoraInfo.Read(part); }
            catch (LoraFormatException e) { warnings.Add(e.Message.Replace(part, stem + ".safetensors", StringComparison.Ordinal)); }
            File.Move(part, final, overwrite: true);
            return sha;
        }
        catch
        {
            TryDelete(part);
            throw;
        }
    }

    async Task<Plan> PlanCivitai(CivitaiReference reference, CancellationToken ct)
    {
        System.Text.Json.Nodes.JsonObject? model = null;
        long versionId;
        if (reference.VersionId is { } v) versionId = v;
        else
        {
            model = await _civitai.GetModelAsync(reference.ModelId!.Value, ct);
            versionId = CivitaiApi.NewestVersionId(model, reference.ModelId.Value);
        }
        var version = await _civitai.GetVersionAsync(versionId, ct);
        if (model is null && version.ModelId is { } modelId)
        {
            // only for the description and tags in the info file: the download does not need it
            try { model = await _civitai.GetModelAsync(modelId, ct); }
            catch (HubException) { }
        }
        CivitaiApi.AddModelDetails(version, model);
        string where = $"civitai:{versionId}";
        if (version.ModelType is { } type && !CivitaiVersion.LoraTypes.Contains(type, StringComparer.OrdinalIgnoreCase))
            throw new HubException($"{where} ({version.ModelName}) is a {type}, not a LoRA");
        var file = version.SafetensorsFile();
        if (file is null)
        {
            var first = version.Files.FirstOrDefault(f => f.Type is null or "Model") ?? throw new HubException($"{where}: the version has no files");
            DownloadedFileCheck.RefuseByName(first.Name, where);
            throw new HubException($"{where}: '{first.Name}' is not a .safetensors file");
        }
        DownloadedFileCheck.RefuseByName(file.Name, where);
        var url = Absolute(file.DownloadUrl ?? version.DownloadUrl, _civitai.DownloadUrl(versionId));
        return new Plan(HubSite.Civitai, where, file.Name, new ResumableDownload.Source(url, Options.CivitaiToken, Options.CivitaiBase, null),
            file.SizeKB is { } kb ? (long)Math.Round(kb * 1024) : null, file.Sha256, version, null,
            version.PreviewImage() is { } image ? Absolute(image.Url, null) : null,
            new Uri(Options.CivitaiBase, $"models/{version.ModelId}?modelVersionId={versionId}"));
    }

    async Task<Plan> PlanHuggingFace(HuggingFaceReference reference, List<string> warnings, CancellationToken ct)
    {
        string where = "hf:" + reference.Repo + (reference.File is { } named ? "/" + named : "");
        if (reference.File is { } given) DownloadedFileCheck.RefuseByName(given, where);
        HuggingFaceRepo? repo;
        try { repo = await _hf.GetRepoAsync(reference.Repo, reference.Revision, ct); }
        catch (HubException e) when (reference.File is not null)
        {
            // a mirror without the repo API still serves the file: take its size and hash from the file's headers
            warnings.Add($"no model card ({e.Message}): no activation text or preview");
            repo = null;
        }
        var file = repo is null ? new HuggingFaceFile(reference.File!, null, null) : ChooseFile(repo, reference, where);
        if (reference.File is null) where += "/" + file.Path;
        string revision = repo?.Commit ?? reference.Revision;
        string repoId = repo?.Id ?? reference.Repo;
        if (file.Sha256 is null)
        {
            var headers = await _hf.FileMetadataAsync(repoId, revision, file.Path, ct);
            file = file with { Size = headers.Size ?? file.Size, Sha256 = headers.Sha256 };
        }
        var url = _hf.FileUrl(repoId, revision, file.Path);
        Uri? preview = repo?.WidgetImages.FirstOrDefault() is { } image
            ? Uri.TryCreate(image, UriKind.Absolute, out var abs) && abs.Scheme is "http" or "https" ? abs : _hf.FileUrl(repoId, revision, image.TrimStart('/'))
            : null;
        // the file name on disk is the repo's name when the file has diffusers' generic name
        string fileName = Path.GetFileName(file.Path) == "pytorch_lora_weights.safetensors" ? repoId.Split('/')[^1] + ".safetensors" : Path.GetFileName(file.Path);
        return new Plan(HubSite.HuggingFace, where, fileName, new ResumableDownload.Source(url, Options.HuggingFaceToken, Options.HuggingFaceBase, file.Size),
            file.Size, file.Sha256, null, repo, preview, new Uri(_hf.Base, repoId));
    }

    /// <summary>The file named, or the repo's one .safetensors file (diffusers' `pytorch_lora_weights.safetensors` among several).</summary>
    static HuggingFaceFile ChooseFile(HuggingFaceRepo repo, HuggingFaceReference reference, string where)
    {
        var safetensors = repo.Files.Where(f => f.Path.EndsWith(".safetensors", StringComparison.OrdinalIgnoreCase)).ToList();
        if (reference.File is { } wanted)
            return repo.Files.FirstOrDefault(f => f.Path == wanted)
                   ?? throw new HubException($"{where}: the repo has no such file" + (safetensors.Count > 0 ? $" (its .safetensors files: {List(safetensors)})" : ""));
        return safetensors.Count switch
        {
            1 => safetensors[0],
            0 => repo.Files.FirstOrDefault(f => Path.GetExtension(f.Path).ToLowerInvariant() is ".bin" or ".pt" or ".ckpt" or ".pth") is { } pickle
                ? throw new HubException($"{where} has no .safetensors file, only '{pickle.Path}', a pickle, which can run code when loaded; LoraCraft installs only .safetensors LoRAs")
                : throw new HubException($"{where} has no .safetensors file"),
            _ => safetensors.FirstOrDefault(f => f.Path == "pytorch_lora_weights.safetensors")
                 ?? throw new HubException($"{where} has {safetensors.Count} .safetensors files; name one: {string.Join(", ", safetensors.Take(5).Select(f => $"{where}/{f.Path}"))}"),
        };

        static string List(List<HuggingFaceFile> files) => string.Join(", ", files.Take(5).Select(f => f.Path)) + (files.Count > 5 ? ", …" : "");
    }

    Plan PlanUrl(UrlReference reference)
    {
        var url = reference.Url;
        string where = LoraReference.Shown(url);
        string fileName = Uri.UnescapeDataString(url.AbsolutePath.Split('/', StringSplitOptions.RemoveEmptyEntries).LastOrDefault() ?? "");
        DownloadedFileCheck.RefuseByName(fileName, where);
        if (fileName.Length == 0) fileName = "lora.safetensors";
        var origin = new Uri(url.GetLeftPart(UriPartial.Authority) + "/");
        return new Plan(HubSite.Url, where, fileName, new ResumableDownload.Source(url, Options.UrlToken, origin, null), null, null, null, null, null, url);
    }

    async Task<string?> SavePreview(string loraPath, Uri image, HubSite site, List<string> warnings, CancellationToken ct)
    {
        var (token, host) = site == HubSite.HuggingFace ? (Options.HuggingFaceToken, Options.HuggingFaceBase) : (Options.CivitaiToken, Options.CivitaiBase);
        try { return SidecarWriter.WritePreview(loraPath, await _http.GetBytesAsync(image, token, host, MaxPreviewBytes, ct), warnings); }
        catch (HubException e)
        {
            warnings.Add("no preview: " + e.Message);
            return null;
        }
    }

    /// <summary>
    /// Looks up each file on Civitai by its SHA-256 and, when that finds nothing, by its AutoV3
    /// hash (the SHA-256 of its tensor data, unchanged by metadata edits), and writes the
    /// `.civitai.info` and preview (an existing preview is kept) of those found. Files with an
    /// info file already are skipped unless <paramref name="overwrite"/>. One file's failure does
    /// not stop the others: it is a <see cref="FetchInfoStatus.Failed"/> result.
    /// </summary>
    public async Task<IReadOnlyList<FetchInfoResult>> FetchInfoAsync(IEnumerable<string> files, bool overwrite = false, FileHashes? hashes = null,
                                                                     IProgress<FetchInfoResult>? progress = null, CancellationToken ct = default)
    {
        hashes ??= FileHashes.Default;
        var results = new List<FetchInfoResult>();
        foreach (var file in files)
        {
            ct.ThrowIfCancellationRequested();
            var result = await FetchInfoOne(file, overwrite, hashes, ct);
            results.Add(result);
            progress?.Report(result);
        }
        return results;
    }

    async Task<FetchInfoResult> FetchInfoOne(string file, bool overwrite, FileHashes hashes, CancellationToken ct)
    {
        var existing = LoraSidecars.Read(file);
        if (!overwrite && existing.Civitai?.VersionId is not null)
            return new FetchInfoResult(file, FetchInfoStatus.Skipped, null, existing.Civitai.VersionId, existing.Civitai.ModelName,
                existing.Civitai.VersionName, existing.Civitai.BaseModel, existing.CivitaiInfoPath, existing.PreviewPath, null);
        string? sha = null;
        try
        {
            sha = hashes.Sha256(file);
            var version = await _civitai.ByHashAsync(sha, ct);
            if (version is null && DataHash(file, hashes) is { } autoV3) version = await _civitai.ByHashAsync(autoV3, ct);
            if (version is null) return new FetchInfoResult(file, FetchInfoStatus.NotFound, sha, null, null, null, null, null, null, null);
            if (version.ModelId is { } modelId)
            {
                try { CivitaiApi.AddModelDetails(version, await _civitai.GetModelAsync(modelId, ct)); }
                catch (HubException) { }
            }
            string info = SidecarWriter.WriteCivitaiInfo(file, version);
            string? preview = existing.PreviewPath;
            var warnings = new List<string>();
            if ((preview is null || overwrite) && version.PreviewImage() is { } image)
                preview = await SavePreview(file, Absolute(image.Url, null), HubSite.Civitai, warnings, ct) ?? preview;
            return new FetchInfoResult(file, FetchInfoStatus.Found, sha, version.Id, version.ModelName, version.Name, version.BaseModel, info, preview,
                warnings.Count > 0 ? string.Join("; ", warnings) : null);
        }
        catch (Exception e) when (e is UserErrorException or IOException or UnauthorizedAccessException)
        {
            return new FetchInfoResult(file, FetchInfoStatus.Failed, sha, null, null, null, null, null, null, _http.Redact(e.Message));
        }
    }

    /// <summary>Civitai's AutoV3: the first 12 hex digits of the SHA-256 of the tensor data (A1111's LoRA hash); null for a file that is not safetensors.</summary>
    static string? DataHash(string file, FileHashes hashes)
    {
        try { return hashes.LoraHash(file); }
        catch (SafetensorsFormatException) { return null; }
    }

    /// <summary>LoRAs on one site matching <paramref name="query"/>, at most <paramref name="limit"/>, for one family when given.</summary>
    public async Task<IReadOnlyList<LoraSearchHit>> SearchAsync(string query, HubSite site, ModelFamily? family = null, int limit = 20,
                                                                CancellationToken ct = default)
    {
        if (string.IsNullOrWhiteSpace(query)) throw new HubException("the search needs some words");
        limit = Math.Clamp(limit, 1, 100);
        return site switch
        {
            HubSite.Civitai => await _civitai.SearchAsync(query.Trim(), family, limit, ct),
            HubSite.HuggingFace => await _hf.SearchAsync(query.Trim(), family, limit, ct),
            _ => throw new HubException("search works on Civitai and Hugging Face only"),
        };
    }

    static Uri Absolute(string? url, Uri? fallback) =>
        url is not null && Uri.TryCreate(url, UriKind.Absolute, out var u) && u.Scheme is "http" or "https" ? u
        : fallback ?? throw new HubException($"'{url}' is not an http(s) URL");

    /// <summary>A name given by the user: a file stem, not a path.</summary>
    static void CheckName(string name)
    {
        if (name.Length == 0 || name.Contains('/') || name.Contains('\\') || name.Contains("..", StringComparison.Ordinal) || name.StartsWith('.') ||
            name.IndexOfAny(Path.GetInvalidFileNameChars()) >= 0)
            throw new HubException($"LoRA name '{name}' must be a plain file name (no path separators, no leading dot, no '..')");
    }

    static string StripExtension(string name) =>
        name.EndsWith(".safetensors", StringComparison.OrdinalIgnoreCase) ? name[..^".safetensors".Length] : name;

    /// <summary>The site's file name as a safe stem: no separators, no leading dots, no control characters.</summary>
    static string SafeStem(string fileName)
    {
        var stem = StripExtension(Path.GetFileName(fileName));
        var chars = stem.Select(c => c < 32 || c is '/' or '\\' or ':' or '*' or '?' or '"' or '<' or '>' or '|' ? '_' : c).ToArray();
        var safe = new string(chars).Trim().TrimStart('.').Replace("..", "_", StringComparison.Ordinal);
        return safe.Length == 0 ? "lora" : safe;
    }

    static string Sha256Of(string path)
    {
        using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 20, FileOptions.SequentialScan);
        return Convert.ToHexStringLower(SHA256.HashData(stream));
    }

    static void TryDelete(string path)
    {
        try { File.Delete(path); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { }
    }

    public void Dispose() => _http.Dispose();
}
