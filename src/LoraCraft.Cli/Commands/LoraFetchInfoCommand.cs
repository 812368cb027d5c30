using System.Text.Json;
using LoraCraft.IO;
using LoraCraft.Lora;
using LoraCraft.Lora.Hub;

namespace LoraCraft.Cli.Commands;

/// <summary>
/// <c>lora fetch-info [--dir DIR] [--force]</c>: looks up every LoRA of the folder on Civitai by
/// its hash and writes the `.civitai.info` and preview of those found (as Civitai Helper's scan does).
/// </summary>
public static class LoraFetchInfoCommand
{
    public static readonly string[] Flags = ["quiet", "json", "force"];
    public static readonly string[] Options = ["dir", .. HubArgs.Options];

    public static int Run(string[] argv, TextWriter stdout, TextWriter stderr)
    {
        var a = new Args("lora fetch-info", argv, Flags, Options);
        if (a.Positionals.Count > 0) throw new UserErrorException($"'lora fetch-info' takes no positional arguments (got '{a.Positionals[0]}'; use --dir)");
        string dir = a.Get("dir") ?? LoraCommand.DefaultDir;
        if (!Directory.Exists(dir)) throw new UserErrorException($"LoRA folder {dir} does not exist (use --dir)");
        var files = new LoraLibrary(dir).Files;
        bool json = a.Flag("json");
        int width = files.Select(f => Path.GetFileNameWithoutExtension(f).Length).DefaultIfEmpty(0).Max();
        var print = new Printer(r => { if (!json) stdout.WriteLine(Line(r, width)); });
        IReadOnlyList<FetchInfoResult> results;
        using (var client = new HubClient(HubArgs.Build(a, HubSite.Civitai)))
        {
            try { results = HubArgs.Cancellable(ct => client.FetchInfoAsync(files, a.Flag("force"), FileHashes.Default, print, ct)); }
            catch (OperationCanceledException)
            {
                stderr.WriteLine("cancelled: the sidecars written so far are kept");
                return 130;
            }
        }
        int Count(FetchInfoStatus s) => results.Count(r => r.Status == s);
        int failed = Count(FetchInfoStatus.Failed);
        if (json)
        {
            stdout.WriteLine(JsonSerializer.Serialize(results.Select(r => new
            {
                name = Path.GetFileNameWithoutExtension(r.Path),
                path = r.Path,
                status = Status(r.Status).Replace(' ', '_'),
                sha256 = r.Sha256,
                version_id = r.VersionId,
                get_id = r.VersionId is { } v ? $"civitai:{v}" : null,
                model = r.ModelName,
                version = r.VersionName,
                base_model = r.BaseModel,
                civitai_info = r.CivitaiInfoPath,
                preview = r.PreviewPath,
                error = r.Error,
            }), LoraCommand.JsonSerializerOptions));
        }
        else if (files.Count == 0) stdout.WriteLine($"no .safetensors files in {dir}");
        else stdout.WriteLine($"{Count(FetchInfoStatus.Found)} found, {Count(FetchInfoStatus.NotFound)} not found on Civitai, " +
                              $"{Count(FetchInfoStatus.Skipped)} skipped (info already there), {failed} failed, in {dir}");
        if (failed == 0) return 0;
        stderr.WriteLine($"error: {failed} lookup{(failed == 1 ? "" : "s")} failed" + (json ? "" : " (see above)"));
        return 2;
    }

    static string Line(FetchInfoResult r, int width)
    {
        string name = Path.GetFileNameWithoutExtension(r.Path).PadRight(width);
        string what = string.Join(" / ", new[] { r.ModelName, r.VersionName }.OfType<string>()) + (r.BaseModel is { } b ? $" ({b})" : "");
        return $"{Status(r.Status),-9}  {name}  " + r.Status switch
        {
            FetchInfoStatus.Found => $"{what}  civitai:{r.VersionId}" + (r.Error is { } w ? $"  ({w})" : ""),
            FetchInfoStatus.Skipped => $"{what}  (has {Path.GetFileName(r.CivitaiInfoPath)}; --force fetches it again)",
            FetchInfoStatus.Failed => r.Error,
            _ => "",
        };
    }

    static string Status(FetchInfoStatus s) => s switch
    {
        FetchInfoStatus.Found => "found",
        FetchInfoStatus.NotFound => "not found",
        FetchInfoStatus.Skipped => "skipped",
        _ => "failed",
    };

    /// <summary>Prints each result as it arrives (Progress&lt;T&gt; would post them to the thread pool, out of order).</summary>
    sealed class Printer(Action<FetchInfoResult> print) : IProgress<FetchInfoResult>
    {
        public void Report(FetchInfoResult value) => print(value);
    }
}
