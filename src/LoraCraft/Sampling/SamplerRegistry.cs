using static TorchSharp.torch;

namespace LoraCraft.Sampling;

/// <summary>Runs one sampler: k-diffusion's signature plus our step context.</summary>
public delegate Tensor SamplerFunction(Denoiser model, Tensor x, float[] sigmas, NoiseSource noise, SamplerContext ctx);

/// <summary>
/// A sampler as every interface names it: our id (ComfyUI's), A1111's display name and aliases,
/// the schedule A1111's "Automatic" picks for it, and what it costs.
/// </summary>
/// <param name="A1111Name">A1111's display name; null where A1111 has none (then our id is used).</param>
/// <param name="Automatic">A1111's default schedule for this sampler (1.9+ "Automatic").</param>
/// <param name="OwnTimesteps">A1111 runs it on its own timestep grid and ignores the schedule type (DDIM, UniPC).</param>
public sealed record SamplerInfo(string Id, string? A1111Name, IReadOnlyList<string> A1111Aliases, string Automatic, bool Ancestral,
                                 int CallsPerStep, bool OwnTimesteps, SamplerFunction Run);

/// <summary>A sigma schedule: our id, A1111's label and the other spellings it accepts.</summary>
public sealed record SchedulerInfo(string Id, string? A1111Label, IReadOnlyList<string> Aliases, Func<NoiseSchedule, int, float[]> Compute);

/// <summary>
/// The one list of samplers and schedulers. Validation, A1111 and ComfyUI name mapping, CLI help
/// and every API listing read it, so adding a sampler is one line here.
/// </summary>
public static class SamplerRegistry
{
    public static IReadOnlyList<SamplerInfo> Samplers { get; } =
    [
        new("euler", "Euler", ["k_euler"], "normal", false, 1, false, (m, x, s, _, c) => Sampling.Samplers.Euler(m, x, s, c)),
        new("euler_ancestral", "Euler a", ["k_euler_a", "k_euler_ancestral"], "normal", true, 1, false, Sampling.Samplers.EulerAncestral),
        new("heun", "Heun", ["k_heun"], "normal", false, 2, false, (m, x, s, _, c) => Sampling.Samplers.Heun(m, x, s, c)),
        new("dpm_2", "DPM2", ["k_dpm_2"], "karras", false, 2, false, (m, x, s, _, c) => Sampling.Samplers.Dpm2(m, x, s, c)),
        new("dpm_2_ancestral", "DPM2 a", ["k_dpm_2_a"], "karras", true, 2, false, Sampling.Samplers.Dpm2Ancestral),
        new("lms", "LMS", ["k_lms"], "normal", false, 1, false, (m, x, s, _, c) => Sampling.Samplers.Lms(m, x, s, c)),
        new("dpmpp_2s_ancestral", "DPM++ 2S a", ["k_dpmpp_2s_a"], "karras", true, 2, false, Sampling.Samplers.DpmPp2sAncestral),
        new("dpmpp_2m", "DPM++ 2M", ["k_dpmpp_2m"], "karras", false, 1, false, (m, x, s, _, c) => Sampling.Samplers.DpmPp2m(m, x, s, c)),
        // ComfyUI's ddim is k-diffusion's euler (see SamplerFormulaTests); A1111's DDIM runs on its own grid
        new("ddim", "DDIM", [], "ddim_uniform", false, 1, true, (m, x, s, _, c) => Sampling.Samplers.Euler(m, x, s, c)),
        new("uni_pc", "UniPC", [], "sgm_uniform", false, 1, true, (m, x, s, _, c) => Sampling.Samplers.UniPc(m, x, s, c, bh2: false)),
        new("uni_pc_bh2", null, [], "normal", false, 1, false, (m, x, s, _, c) => Sampling.Samplers.UniPc(m, x, s, c, bh2: true)),
    ];

    public static IReadOnlyList<SchedulerInfo> Schedulers { get; } =
    [
        // A1111's Normal and Uniform (k-diffusion's default) both give ComfyUI's normal sigmas
        new("normal", "Normal", ["Uniform"], (s, n) => Sampling.Schedulers.Normal(s, n, sgm: false)),
        new("karras", "Karras", [], (s, n) => Sampling.Schedulers.Karras(n, s.SigmaMin, s.SigmaMax)),
        new("exponential", "Exponential", [], (s, n) => Sampling.Schedulers.Exponential(n, s.SigmaMin, s.SigmaMax)),
        new("sgm_uniform", "SGM Uniform", ["SGMUniform"], (s, n) => Sampling.Schedulers.Normal(s, n, sgm: true)),
        new("simple", "Simple", [], Sampling.Schedulers.Simple),
        new("ddim_uniform", "DDIM", [], Sampling.Schedulers.DdimUniform),
    ];

    public static IReadOnlyList<string> SamplerIds { get; } = Samplers.Select(s => s.Id).ToArray();
    public static IReadOnlyList<string> SchedulerIds { get; } = Schedulers.Select(s => s.Id).ToArray();

    /// <summary>Our sampler by its exact id, or null.</summary>
    public static SamplerInfo? Sampler(string id) => Samplers.FirstOrDefault(s => s.Id == id);

    /// <summary>Our scheduler by its exact id, or null.</summary>
    public static SchedulerInfo? Scheduler(string id) => Schedulers.FirstOrDefault(s => s.Id == id);

    public static SamplerInfo RequireSampler(string id) => Sampler(id) ?? throw new UserErrorException(ErrorKind.NotFound,
        $"unknown sampler '{id}' (known: {string.Join(", ", SamplerIds)})") { Field = "sampler" };

    public static SchedulerInfo RequireScheduler(string id) => Scheduler(id) ?? throw new UserErrorException(ErrorKind.NotFound,
        $"unknown scheduler '{id}' (known: {string.Join(", ", SchedulerIds)})") { Field = "scheduler" };
}
