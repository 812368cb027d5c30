using LoraCraft.Models;
using LoraCraft.Text.Embeddings;

namespace LoraCraft.Text;

/// <summary>Whose prompt language: A1111's (CLI, A1111 API, web UI) or ComfyUI's CLIPTextEncode (ComfyUI nodes).</summary>
public enum PromptStyle { A1111, ComfyUI }

/// <summary>How prompts become conditioning, besides the texts themselves.</summary>
public sealed record PromptOptions
{
    public PromptStyle Style { get; init; } = PromptStyle.A1111;
    public int ClipSkip { get; init; } = 1;
    /// <summary>A1111's "use old prompt editing timelines".</summary>
    public bool OldScheduling { get; init; }
    public EmbeddingSet? Embeddings { get; init; }
}

/// <summary>A conditioning used up to and including sampling step <see cref="EndAtStep"/>.</summary>
public sealed record ScheduledConditioning(int EndAtStep, Conditioning Conditioning, string Text);

/// <summary>What one prompt gives over a generation: its conditioning at each sampling step.</summary>
public sealed class ConditioningSchedule(IReadOnlyList<ScheduledConditioning> entries)
{
    public IReadOnlyList<ScheduledConditioning> Entries { get; } = entries;

    /// <summary>Index of the entry used at 1-based sampling step <paramref name="step"/>.</summary>
    public int IndexAt(int step)
    {
        for (int i = 0; i < Entries.Count; i++)
            if (step <= Entries[i].EndAtStep) return i;
        return Entries.Count - 1;
    }

    public Conditioning At(int step) => Entries[IndexAt(step)].Conditioning;
}

/// <summary>One `AND` part of the positive prompt: its schedule and weight.</summary>
public sealed record WeightedSchedule(ConditioningSchedule Schedule, double Weight);

/// <summary>
/// The prompts of one generation as the sampler needs them. A1111 style: LoRA tags removed
/// (the caller applies them), the positive prompt split at `AND` into weighted parts, each part and the negative
/// prompt scheduled over the steps (prompt editing, alternation), the texts of each schedule
/// encoded together as A1111 does (<see cref="A1111PromptEncoder"/>), every distinct chunk run
/// through the text encoder once. ComfyUI style: one conditioning each, ComfyUI's weighting.
/// Owns its tensors.
/// </summary>
public sealed class PromptConditioning : IDisposable
{
    public required IReadOnlyList<WeightedSchedule> Positive { get; init; }
    /// <summary>Null when the negative is not needed (cfg 1 with a single part of weight 1).</summary>
    public required ConditioningSchedule? Negative { get; init; }
    /// <summary>`embedding:` names ComfyUI style did not find (dropped, as ComfyUI does).</summary>
    public IReadOnlyList<string> MissingEmbeddings { get; init; } = [];
    /// <summary>Text-encoder forwards that ran (each distinct chunk once per encoder).</summary>
    public int Forwards { get; init; }

    /// <summary>True when this is just one conditioning of weight 1 all along (the plain path).</summary>
    public bool IsSingle => Positive.Count == 1 && Positive[0].Weight == 1 && Positive[0].Schedule.Entries.Count == 1;

    /// <param name="negative">null: no unconditional part is needed.</param>
    public static PromptConditioning Encode(StableDiffusionModel model, string prompt, string? negative, int steps, PromptOptions options)
    {
        using var encoder = new ChunkEncoder(model, options.ClipSkip);
        var owned = new List<Conditioning>();
        try
        {
            if (options.Style == PromptStyle.ComfyUI)
            {
                var p = ComfyPromptEncoder.Encode(encoder, prompt, options.Embeddings);
                owned.Add(p.Conditioning);
                ComfyEncoding? n = negative is null ? null : ComfyPromptEncoder.Encode(encoder, negative, options.Embeddings);
                if (n is not null) owned.Add(n.Conditioning);
                return new PromptConditioning
                {
                    Positive = [new WeightedSchedule(Single(p.Conditioning, prompt, steps), 1.0)],
                    Negative = n is null ? null : Single(n.Conditioning, negative!, steps),
                    MissingEmbeddings = p.Missing.Concat(n?.Missing ?? []).Distinct().ToList(),
                    Forwards = encoder.Forwards,
                };
            }

            // A1111 removes extra-network tags first (a no-op when the caller already did)
            prompt = Lora.LoraTags.Extract(prompt).Text;
            if (negative is not null) negative = Lora.LoraTags.Extract(negative).Text;
            var parts = PromptAnd.Split(prompt);
            // A1111 encodes each distinct part once (get_multicond_prompt_list's flat list)
            var schedules = new Dictionary<string, ConditioningSchedule>(StringComparer.Ordinal);
            foreach (var text in parts.Select(p => p.Text).Distinct(StringComparer.Ordinal))
                schedules[text] = Scheduled(encoder, text, steps, options, owned);
            var positive = parts.Select(p => new WeightedSchedule(schedules[p.Text], p.Weight)).ToList();
            return new PromptConditioning
            {
                Positive = positive,
                Negative = negative is null ? null : Scheduled(encoder, negative, steps, options, owned),
                Forwards = encoder.Forwards,
            };
        }
        catch
        {
            foreach (var c in owned) c.Dispose();
            throw;
        }
    }

    /// <summary>Whether the negative prompt matters for this positive prompt at this cfg (cfg 1 skips it only for a single part of weight 1).</summary>
    public static bool NeedsNegative(string prompt, double cfg, PromptStyle style) =>
        cfg != 1 || (style == PromptStyle.A1111 && PromptAnd.Split(prompt) is var parts && (parts.Count != 1 || parts[0].Weight != 1));

    static ConditioningSchedule Single(Conditioning c, string text, int steps) => new([new ScheduledConditioning(steps, c, text)]);

    static ConditioningSchedule Scheduled(ChunkEncoder encoder, string prompt, int steps, PromptOptions options, List<Conditioning> owned)
    {
        var schedule = PromptSchedule.For(prompt, steps, null, options.OldScheduling);
        var conds = A1111PromptEncoder.EncodeBatch(encoder, schedule.Select(s => s.Text).ToList(), options.Embeddings);
        foreach (var c in conds.Distinct(ReferenceEqualityComparer.Instance)) owned.Add((Conditioning)c!);
        return new ConditioningSchedule(schedule.Select((s, i) => new ScheduledConditioning(s.EndAtStep, conds[i], s.Text)).ToList());
    }

    public void Dispose()
    {
        var all = Positive.SelectMany(p => p.Schedule.Entries).Concat(Negative?.Entries ?? []).Select(e => e.Conditioning);
        foreach (var c in all.Distinct(ReferenceEqualityComparer.Instance)) ((Conditioning)c!).Dispose();
    }
}
