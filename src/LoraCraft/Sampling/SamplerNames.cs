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
    sealed record A1111Sampler(string Name, string Sampler, string Automatic, bool OwnTimesteps = false);

    static readonly A1111Sampler[] A1111Samplers =
    [
        new("Euler a", "euler_ancestral", "normal"),
        new("Euler", "euler", "normal"),
        new("LMS", "lms", "normal"),
        new("Heun", "heun", "normal"),
        new("DPM2", "dpm_2", "karras"),
        new("DPM2 a", "dpm_2_ancestral", "karras"),
        new("DPM++ 2S a", "dpmpp_2s_ancestral", "karras"),
        new("DPM++ 2M", "dpmpp_2m", "karras"),
        new("DDIM", "ddim", "ddim_uniform", OwnTimesteps: true),
        new("UniPC", "uni_pc", "sgm_uniform", OwnTimesteps: true),
    ];

    /// <summary>A1111 schedule types: the label it writes, our scheduler, other spellings it accepts.</summary>
    static readonly (string Label, string Scheduler, string[] Aliases)[] A1111Schedules =
    [
        // A1111's Normal and Uniform (k-diffusion's default) both give ComfyUI's normal sigmas
        ("Normal", "normal", ["Uniform"]),
        ("Karras", "karras", []),
        ("Exponential", "exponential", []),
        ("SGM Uniform", "sgm_uniform", ["SGMUniform"]),
        ("Simple", "simple", []),
        ("DDIM", "ddim_uniform", []),
    ];

    const string Automatic = "Automatic";

    /// <summary>The A1111 display names understood (each may also carry a schedule type suffix).</summary>
    public static IReadOnlyList<string> A1111SamplerNames { get; } = A1111Samplers.Select(a => a.Name).ToArray();

    /// <summary>
    /// Any sampler name the CLI accepts, with an optional schedule (ours or an A1111 schedule type;
    /// null or "Automatic" picks the sampler's default: "normal" for our names). Our names match
    /// exactly first, so "ddim" is ComfyUI's (normal schedule) while "DDIM" is A1111's.
    /// </summary>
    public static (string Sampler, string Scheduler) Resolve(string sampler, string? schedule = null)
    {
        string name = sampler.Trim();
        if (Samplers.Names.Contains(name)) return (name, ParseSchedule(schedule) ?? "normal");
        return FromA1111(name, schedule);
    }

    /// <summary>
    /// A1111's "Sampler" and "Schedule type" (null when absent) as our sampler and scheduler, the
    /// way A1111 1.9+ reads them. Our own names are accepted too (what <see cref="ToA1111"/> writes
    /// for samplers A1111 lacks).
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
        var (a1111, ours) = FindSampler(name) ?? throw UnknownSampler(displayName);

        string? schedule = ParseSchedule(scheduleType);
        if (fromName is not null && schedule is not null && fromName != schedule)
            throw new UserErrorException($"sampler '{displayName}' names a schedule other than '{scheduleType}'");
        schedule ??= fromName;

        if (a1111 is null) return (ours!, schedule ?? "normal");
        return (a1111.Sampler, a1111.OwnTimesteps ? a1111.Automatic : schedule ?? a1111.Automatic);
    }

    /// <summary>
    /// Our sampler and scheduler as A1111 1.9+ writes them in PNG parameters ("Euler a",
    /// "Automatic"), "Automatic" when the schedule is the sampler's default there. ddim is written
    /// as Euler unless on its own grid (the two are the same update); samplers A1111 cannot run
    /// this way keep our name.
    /// </summary>
    public static (string Sampler, string ScheduleType) ToA1111(string sampler, string scheduler)
    {
        if (!Samplers.Names.Contains(sampler)) throw UnknownSampler(sampler);
        string label = A1111Schedules.FirstOrDefault(s => s.Scheduler == scheduler).Label ?? throw UnknownSchedule(scheduler);
        string target = sampler == "ddim" && scheduler != "ddim_uniform" ? "euler" : sampler;
        var a = A1111Samplers.FirstOrDefault(a => a.Sampler == target);
        if (a is null || (a.OwnTimesteps && scheduler != a.Automatic)) return (sampler, label);
        return (a.Name, scheduler == a.Automatic ? Automatic : label);
    }

    /// <summary>An A1111 display name (first) or one of ours, ignoring case.</summary>
    static (A1111Sampler? A1111, string? Ours)? FindSampler(string name)
    {
        var a = A1111Samplers.FirstOrDefault(a => a.Name.Equals(name, StringComparison.OrdinalIgnoreCase));
        if (a is not null) return (a, null);
        var ours = Samplers.Names.FirstOrDefault(n => n.Equals(name, StringComparison.OrdinalIgnoreCase));
        return ours is null ? null : (null, ours);
    }

    static IEnumerable<string> ScheduleSpellings() =>
        A1111Schedules.SelectMany(s => s.Aliases.Prepend(s.Scheduler).Prepend(s.Label)).Append(Automatic);

    /// <summary>Our scheduler for a schedule name or A1111 schedule type; null for none or Automatic.</summary>
    static string? ParseSchedule(string? text)
    {
        if (text is null) return null;
        string t = text.Trim();
        if (t.Equals(Automatic, StringComparison.OrdinalIgnoreCase)) return null;
        foreach (var s in A1111Schedules)
            if (s.Aliases.Prepend(s.Scheduler).Prepend(s.Label).Any(x => x.Equals(t, StringComparison.OrdinalIgnoreCase)))
                return s.Scheduler;
        throw UnknownSchedule(text);
    }

    static UserErrorException UnknownSampler(string name) => new(
        $"unknown sampler '{name}' (known: {string.Join(", ", Samplers.Names)}; or A1111's {string.Join(", ", A1111SamplerNames)}, " +
        "optionally followed by a schedule type, e.g. 'DPM++ 2M Karras')");

    static UserErrorException UnknownSchedule(string name) => new(
        $"unknown schedule '{name}' (known: {string.Join(", ", Schedulers.Names)}; or A1111's {Automatic}, " +
        $"{string.Join(", ", A1111Schedules.SelectMany(s => s.Aliases.Prepend(s.Label)))})");
}
