namespace LoraCraft.Sampling;

// TEMPORARY stub until the samp branch lands (replaced by its SamplerNames.cs)
public static class SamplerNames
{
    public static (string Name, string ScheduleType) ToA1111(string sampler, string scheduler) => (sampler, scheduler);
    public static (string Sampler, string Scheduler) FromA1111(string display, string? scheduleType) => (display, scheduleType ?? "normal");
    public static (string Sampler, string? Scheduler) Resolve(string name) => (name, null);
}
