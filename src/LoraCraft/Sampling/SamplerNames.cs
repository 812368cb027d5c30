namespace LoraCraft.Sampling;

/// <summary>
/// Sampler and schedule names as users write them: ours (ComfyUI's, "euler_ancestral" + "karras")
/// and AUTOMATIC1111's display names, either the old combined form ("DPM++ 2M Karras") or 1.9+'s
/// sampler name with a separate "Schedule type" ("DPM++ 2M" + "Karras").
/// </summary>
/// <remarks>
/// A1111 "Automatic" is the sampler's own default as in A1111 1.9+ (Karras for the DPM samplers,
/// k-diffusion's uniform timesteps, our "normal", for the others), and a missing schedule type means
/// Automatic, as A1111 1.9+ reads old infotexts too. Where A1111 runs something we only approximate
/// it is mapped to the nearest: DPM2 / DPM2 a also drop the next-to-last sigma in A1111 (we follow
/// k-diffusion and do not); DDIM and UniPC are A1111 timestep samplers that ignore the schedule type
/// and stop at the smallest training sigma, mapped to ddim + ddim_uniform and uni_pc (bh1, A1111's
/// default variant) + sgm_uniform.
/// </remarks>
public static class SamplerNames
{
    const string Automatic = "Automatic";

    /// <summary>The A1111 display names understood (each may also carry a schedule type suffix).</summary>
    public static IReadOnlyList<string> A1111SamplerNames { get; } =
        SamplerRegistry.Samplers.Where(s => s.A1111Name is not null).Select(s => s.A1111Name!).ToArray();

    /// <summary>
    /// Any sampler name the CLI accepts, with an optional schedule (ours or an A1111 schedule type;
    /// null or "Automatic" picks the sampler's default: "normal" for our names). Our names match
    /// exactly first, so "ddim" is ComfyUI's (normal schedule) while "DDIM" is A1111's.
    /// </summary>
    public static (string Sampler, string Scheduler) Resolve(string sampler, string? schedule = null)
    {
        string name = sampler.Trim();
        if (SamplerRegistry.Sampler(name) is not null) return (name, ParseSchedule(schedule) ?? "normal");
        return FromA1111(name, schedule);
    }

    /// <summary>
    /// A1111's "Sampler" and "Schedule type" (null when absent) as our sampler and scheduler, the
    /// way A1111 1.9+ reads them, with A1111's aliases (k_euler_a) and any case. Our own names are
    /// accepted too (what <see cref="ToA1111"/> writes for samplers A1111 lacks).
    /// </summary>
    public static (string Sampler, string Scheduler) FromA1111(string displayName, string? scheduleType)
    {
        string name = displayName.Trim();
        string? fromName = null;
        if (FindSampler(name) is null)
        {
            // the old combined form, e.g. "DPM++ 2M Karras"
            foreach (var spelling in ScheduleSpellings())
            {
                if (name.Length <= spelling.Length + 1 || !name.EndsWith(" " + spelling, StringComparison.OrdinalIgnoreCase)) continue;
                string head = name[..^(spelling.Length + 1)];
                if (FindSampler(head) is null) continue;
                fromName = ParseSchedule(spelling);
                name = head;
                break;
            }
        }
        var (info, byA1111Name) = FindSampler(name) ?? throw UnknownSampler(displayName);

        string? schedule = ParseSchedule(scheduleType);
        if (fromName is not null && schedule is not null && fromName != schedule)
            throw new UserErrorException($"sampler '{displayName}' names a schedule other than '{scheduleType}'") { Field = "sampler" };
        schedule ??= fromName;

        if (!byA1111Name) return (info.Id, schedule ?? "normal");
        return (info.Id, info.OwnTimesteps ? info.Automatic : schedule ?? info.Automatic);
    }

    /// <summary>
    /// Our sampler and scheduler as A1111 1.9+ writes them in PNG parameters ("Euler a",
    /// "Automatic"), "Automatic" when the schedule is the sampler's default there. ddim is written
    /// as Euler unless on its own grid (the two are the same update); samplers A1111 cannot run
    /// this way keep our name.
    /// </summary>
    public static (string Sampler, string ScheduleType) ToA1111(string sampler, string scheduler)
    {
        if (SamplerRegistry.Sampler(sampler) is null) throw UnknownSampler(sampler);
        var schedule = SamplerRegistry.Scheduler(scheduler) ?? throw UnknownSchedule(scheduler);
        string label = schedule.A1111Label ?? schedule.Id;
        string target = sampler == "ddim" && scheduler != "ddim_uniform" ? "euler" : sampler;
        var a = SamplerRegistry.Sampler(target)!;
        if (a.A1111Name is null || (a.OwnTimesteps && scheduler != a.Automatic)) return (sampler, label);
        return (a.A1111Name, scheduler == a.Automatic ? Automatic : label);
    }

    /// <summary>A1111's schedule label of one of our schedulers ("Karras"), or our id where A1111 has none.</summary>
    public static string A1111Label(string scheduler) => SamplerRegistry.Scheduler(scheduler)?.A1111Label ?? scheduler;

    /// <summary>An A1111 display name or alias (first), or one of ours, ignoring case; true when found by A1111's name.</summary>
    static (SamplerInfo Info, bool ByA1111Name)? FindSampler(string name)
    {
        var a = SamplerRegistry.Samplers.FirstOrDefault(s =>
            s.A1111Name is not null && (s.A1111Name.Equals(name, StringComparison.OrdinalIgnoreCase)
                                        || s.A1111Aliases.Any(x => x.Equals(name, StringComparison.OrdinalIgnoreCase))));
        if (a is not null) return (a, true);
        var ours = SamplerRegistry.Samplers.FirstOrDefault(s => s.Id.Equals(name, StringComparison.OrdinalIgnoreCase));
        return ours is null ? null : (ours, false);
    }

    static IEnumerable<string> ScheduleSpellings() =>
        SamplerRegistry.Schedulers.Where(s => s.A1111Label is not null)
            .SelectMany(s => s.Aliases.Prepend(s.Id).Prepend(s.A1111Label!)).Append(Automatic);

    /// <summary>Our scheduler for a schedule name or A1111 schedule type; null for none or Automatic.</summary>
    public static string? ParseSchedule(string? text)
    {
        if (text is null) return null;
        string t = text.Trim();
        if (t.Length == 0 || t.Equals(Automatic, StringComparison.OrdinalIgnoreCase)) return null;
        foreach (var s in SamplerRegistry.Schedulers)
            if (s.Aliases.Prepend(s.Id).Append(s.A1111Label ?? s.Id).Any(x => x.Equals(t, StringComparison.OrdinalIgnoreCase)))
                return s.Id;
        throw UnknownSchedule(text);
    }

    static UserErrorException UnknownSampler(string name) => new(ErrorKind.NotFound,
        $"unknown sampler '{name}' (known: {string.Join(", ", SamplerRegistry.SamplerIds)}; or A1111's {string.Join(", ", A1111SamplerNames)}, " +
        "optionally followed by a schedule type, e.g. 'DPM++ 2M Karras')") { Field = "sampler" };

    static UserErrorException UnknownSchedule(string name) => new(ErrorKind.NotFound,
        $"unknown schedule '{name}' (known: {string.Join(", ", SamplerRegistry.SchedulerIds)}; or A1111's {Automatic}, " +
        $"{string.Join(", ", SamplerRegistry.Schedulers.Where(s => s.A1111Label is not null).SelectMany(s => s.Aliases.Prepend(s.A1111Label!)))})") { Field = "scheduler" };
}
