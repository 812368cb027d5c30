namespace LoraCraft.Training;

/// <summary>
/// diffusers' `get_scheduler` as kohya uses it: a factor on the base learning rate for each
/// optimizer step (0-based, LambdaLR's `current_step`), with linear warmup first.
/// </summary>
public sealed record LearningRateSchedule(string Name, int WarmupSteps, int TotalSteps, int Cycles = 1, double Power = 1)
{
    public static readonly string[] Names = ["constant", "constant_with_warmup", "linear", "cosine", "cosine_with_restarts", "polynomial"];

    public void Validate()
    {
        if (!Names.Contains(Name)) throw new UserErrorException($"unknown learning-rate scheduler '{Name}' (known: {string.Join(", ", Names)})");
        if (WarmupSteps < 0) throw new UserErrorException($"warmup steps must be 0 or more, got {WarmupSteps}");
        if (Name == "constant" && WarmupSteps > 0)
            throw new UserErrorException("the constant scheduler has no warmup (kohya refuses it too): use constant_with_warmup");
    }

    public double Factor(int step)
    {
        if (Name == "constant") return 1;
        if (step < WarmupSteps) return step / (double)Math.Max(1, WarmupSteps);
        if (Name == "constant_with_warmup") return 1;
        double progress = (step - WarmupSteps) / (double)Math.Max(1, TotalSteps - WarmupSteps);
        return Name switch
        {
            "linear" => Math.Max(0, (TotalSteps - step) / (double)Math.Max(1, TotalSteps - WarmupSteps)),
            // num_cycles 0.5: half a cosine from 1 to 0
            "cosine" => Math.Max(0, 0.5 * (1 + Math.Cos(Math.PI * 0.5 * 2 * progress))),
            "cosine_with_restarts" => progress >= 1 ? 0 : Math.Max(0, 0.5 * (1 + Math.Cos(Math.PI * (Cycles * progress % 1.0)))),
            // diffusers' polynomial decay to lr_end 1e-7 is relative to the base rate; the factor form decays to 0
            _ => step > TotalSteps ? 0 : Math.Pow(1 - progress, Power),
        };
    }
}
