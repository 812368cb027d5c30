using System.Text.Json;
using LoraCraft.Lora.Hub;

namespace LoraCraft.Cli.Commands;

/// <summary>
/// <c>lora get URL_OR_ID [--dir DIR] [--name NAME]</c>: a LoRA from Civitai, Hugging Face or a
/// URL into the LoRA folder, with its `.civitai.info` / `NAME.json` and preview beside it.
/// </summary>
public static class LoraGetCommand
{
    public static readonly string[] Flags = ["quiet", "json", "force"];
    public static readonly string[] Options = ["dir", "name", .. HubArgs.Options];

    public static int Run(string[] argv, TextWriter stdout, TextWriter stderr)
    {
        var a = new Args("lora get", argv, Flags, Options);
        if (a.Positionals.Count != 1)
            throw new UserErrorException("'lora get' takes one URL or id: civitai:VERSION_ID, hf:OWNER/REPO[/FILE], a Civitai or Hugging Face page, or an https URL to a .safetensors");
        var reference = LoraReference.Parse(a.Positionals[0], HubArgs.Urls(a));
        string dir = a.Get("dir") ?? LoraCommand.DefaultDir;
        var progress = a.Flag("quiet") ? null : new DownloadProgressBar(stderr);
        LoraDownload result;
        using (var client = new HubClient(HubArgs.Build(a, reference.Site)))
        {
            try { result = HubArgs.Cancellable(ct => client.GetAsync(reference, dir, a.Get("name"), a.Flag("force"), progress, ct)); }
            catch (OperationCanceledException)
            {
                progress?.Finish();
                stderr.WriteLine("cancelled: the partial download is kept; the same command resumes it");
                return 130;
            }
            catch
            {
                progress?.Finish();
                throw;
            }
        }
        foreach (var w in result.Warnings) stderr.WriteLine("warning: " + w);
        if (a.Flag("json"))
        {
            stdout.WriteLine(JsonSerializer.Serialize(new
            {
                path = result.Path,
                name = Path.GetFileNameWithoutExtension(result.Path),
                source = result.Source,
                site = result.Site.Id(),
                size_bytes = result.SizeBytes,
                sha256 = result.Sha256,
                already_present = result.AlreadyPresent,
                model = result.ModelName,
                version = result.VersionName,
                base_model = result.BaseModel,
                trigger_words = result.TriggerWords,
                civitai_info = result.CivitaiInfoPath,
                user_metadata = result.UserMetadataPath,
                preview = result.PreviewPath,
                warnings = result.Warnings,
            }, LoraCommand.JsonSerializerOptions));
            return 0;
        }
        string name = Path.GetFileNameWithoutExtension(result.Path);
        stdout.WriteLine((result.AlreadyPresent ? "already there: " : "saved ") +
                         $"{result.Path} ({TextFormat.Human(result.SizeBytes)}, sha256 {result.Sha256[..12]}…)");
        void Line(string label, string? value) { if (!string.IsNullOrEmpty(value)) stdout.WriteLine($"  {label,-14}{value}"); }
        Line("model", string.Join(" / ", new[] { result.ModelName, result.VersionName }.OfType<string>()) + (result.BaseModel is { } b ? $" ({b})" : ""));
        Line("trigger words", string.Join(", ", result.TriggerWords));
        Line("info", result.CivitaiInfoPath ?? result.UserMetadataPath);
        Line("preview", result.PreviewPath);
        Line("use it as", $"<lora:{name}:1>");
        return 0;
    }
}
