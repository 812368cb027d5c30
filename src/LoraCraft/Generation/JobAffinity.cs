using System.Globalization;
using LoraCraft.Lora;

namespace LoraCraft.Generation;

/// <summary>
/// What a worker would have to switch to run a job: the checkpoint, and the LoRA set (names with
/// their strengths, from the prompt's tags and the job's list). Workers prefer jobs whose affinity
/// matches what they have loaded, so a mixed queue needs fewer model loads and re-patches.
/// </summary>
public sealed record JobAffinity(string Model, string LoraSet)
{
    /// <summary>The affinity of <paramref name="job"/> once its model name is resolved (the catalog's name).</summary>
    public static JobAffinity Of(GenerationJob job, string modelName)
    {
        var tags = LoraTags.Extract(job.Prompt).Tags.Concat(LoraTags.Extract(job.Negative).Tags)
            .Select(t => Describe(t.Name, t.TextEncoder, t.UNet) + (t.Scheduled ? "@sched" : ""))
            .Concat(job.Loras.Select(l => Describe(l.Name, l.TextEncoder, l.UNet) + (l.UNetSchedule is null ? "" : "@" + l.UNetSchedule)));
        return new JobAffinity(modelName, string.Join(",", tags.Order(StringComparer.Ordinal)));
    }

    static string Describe(string name, double te, double unet) =>
        string.Create(CultureInfo.InvariantCulture, $"{name.ToLowerInvariant()}:{te:R}:{unet:R}");

    public override string ToString() => LoraSet.Length == 0 ? Model : $"{Model} + {LoraSet}";
}
