using System.Globalization;
using System.Text.Json;
using LoraCraft.Lora.Hub;
using LoraCraft.Models;

namespace LoraCraft.Cli.Commands;

/// <summary>
/// <c>lora search QUERY [--base sd1|sdxl] [--source civitai|hf]</c>: LoRAs on Civitai and
/// Hugging Face, with the id that `lora get` takes.
/// </summary>
public static class LoraSearchCommand
{
    public static readonly string[] Flags = ["quiet", "json"];
    public static readonly string[] Options = ["base", "source", "limit", .. HubArgs.Options];

    public static int Run(string[] argv, TextWriter stdout, TextWriter stderr)
    {
        var a = new Args("lora search", argv, Flags, Options);
        if (a.Positionals.Count == 0) throw new UserErrorException("'lora search' needs some words to search for");
        string query = string.Join(' ', a.Positionals);
        ModelFamily? family = a.Get("base") switch
        {
            null => null,
            "sd1" or "sd15" or "sd1.5" => ModelFamily.Sd1,
            "sd2" => ModelFamily.Sd2,
            "sdxl" => ModelFamily.Sdxl,
            var b => throw new UserErrorException($"--base must be sd1, sd2 or sdxl, got '{b}'"),
        };
        HubSite[] sites = a.Get("source") switch
        {
            null => [HubSite.Civitai, HubSite.HuggingFace],
            "civitai" => [HubSite.Civitai],
            "hf" or "huggingface" => [HubSite.HuggingFace],
            var s => throw new UserErrorException($"--source must be civitai or hf, got '{s}'"),
        };
        int limit = a.GetInt("limit", 20);
        if (limit is < 1 or > 100) throw new UserErrorException($"--limit must be between 1 and 100, got {limit}");

        var hits = new List<LoraSearchHit>();
        using (var client = new HubClient(HubArgs.Build(a, sites.Length == 1 ? sites[0] : null)))
        {
            var failures = new List<string>();
            foreach (var site in sites)
            {
                try { hits.AddRange(HubArgs.Cancellable(ct => client.SearchAsync(query, site, family, limit, ct))); }
                catch (UserErrorException e) when (sites.Length > 1)
                {
                    // one site down still leaves the other's results
                    failures.Add($"{site.Id()} search failed: {e.Message}");
                }
            }
            if (failures.Count == sites.Length) throw new UserErrorException(string.Join("; ", failures));
            foreach (var failure in failures) stderr.WriteLine("warning: " + failure);
        }

        if (a.Flag("json"))
        {
            stdout.WriteLine(JsonSerializer.Serialize(hits.Select(h => new
            {
                id = h.Id,
                site = h.Site.Id(),
                name = h.Name,
                version = h.Version,
                base_model = h.BaseModel,
                family = h.Family?.Id(),
                downloads = h.Downloads,
                url = h.PageUrl,
            }), LoraCommand.JsonSerializerOptions));
            return 0;
        }
        if (hits.Count == 0)
        {
            stdout.WriteLine($"no LoRAs found for '{query}'");
            return 0;
        }
        string[] head = ["ID", "BASE", "DOWNLOADS", "NAME"];
        var rows = hits.Select(h => new[]
        {
            h.Id, TextFormat.Shown(h.BaseModel ?? "?", 40), h.Downloads?.ToString("N0", CultureInfo.InvariantCulture) ?? "?",
            TextFormat.Shown(h.Name + (h.Version is { } v ? " / " + v : ""), 80),
        }).ToList();
        var widths = head.Select((t, c) => Math.Max(t.Length, rows.Max(r => r[c].Length))).ToArray();
        string Row(string[] cells) => string.Join("  ", cells.Select((c, k) => k == cells.Length - 1 ? c : k == 2 ? c.PadLeft(widths[k]) : c.PadRight(widths[k])));
        stdout.WriteLine(Row(head));
        foreach (var r in rows) stdout.WriteLine(Row(r));
        stdout.WriteLine($"{hits.Count} LoRA{(hits.Count == 1 ? "" : "s")}; get one with: loracraft lora get ID");
        return 0;
    }
}
