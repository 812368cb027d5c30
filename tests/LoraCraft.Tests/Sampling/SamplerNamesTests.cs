using LoraCraft.Sampling;
using Xunit;

namespace LoraCraft.Tests.Sampling;

/// <summary>A1111 display names and schedule types to our samplers and schedulers and back.</summary>
public class SamplerNamesTests
{
    [SkippableTheory]
    // pre-1.9 combined names; a bare DPM name means A1111 1.9+'s Automatic (Karras), as 1.9+ reads it
    [InlineData("Euler a", "euler_ancestral", "normal")]
    [InlineData("Euler", "euler", "normal")]
    [InlineData("LMS", "lms", "normal")]
    [InlineData("LMS Karras", "lms", "karras")]
    [InlineData("Heun", "heun", "normal")]
    [InlineData("DPM2", "dpm_2", "karras")]
    [InlineData("DPM2 a", "dpm_2_ancestral", "karras")]
    [InlineData("DPM2 Karras", "dpm_2", "karras")]
    [InlineData("DPM2 a Karras", "dpm_2_ancestral", "karras")]
    [InlineData("DPM++ 2S a", "dpmpp_2s_ancestral", "karras")]
    [InlineData("DPM++ 2S a Karras", "dpmpp_2s_ancestral", "karras")]
    [InlineData("DPM++ 2M", "dpmpp_2m", "karras")]
    [InlineData("DPM++ 2M Karras", "dpmpp_2m", "karras")]
    [InlineData("DDIM", "ddim", "ddim_uniform")]
    [InlineData("UniPC", "uni_pc", "sgm_uniform")]
    // other suffixes A1111's parser accepts: labels, internal names, aliases
    [InlineData("Euler a Exponential", "euler_ancestral", "exponential")]
    [InlineData("Euler SGM Uniform", "euler", "sgm_uniform")]
    [InlineData("Euler SGMUniform", "euler", "sgm_uniform")]
    [InlineData("DPM++ 2M sgm_uniform", "dpmpp_2m", "sgm_uniform")]
    [InlineData("DPM++ 2M Uniform", "dpmpp_2m", "normal")]
    [InlineData("Heun Simple", "heun", "simple")]
    [InlineData("Euler DDIM", "euler", "ddim_uniform")]
    public void A1111DisplayNamesWithoutScheduleType(string display, string sampler, string scheduler)
    {
        Assert.Equal((sampler, scheduler), SamplerNames.FromA1111(display, null));
        Assert.Equal((sampler, scheduler), SamplerNames.FromA1111(display, "Automatic"));
    }

    [SkippableTheory]
    [InlineData("DPM++ 2M", "Karras", "dpmpp_2m", "karras")]
    [InlineData("DPM++ 2M", "Automatic", "dpmpp_2m", "karras")]
    [InlineData("DPM++ 2M", "Uniform", "dpmpp_2m", "normal")]
    [InlineData("DPM++ 2M", "Normal", "dpmpp_2m", "normal")]
    [InlineData("DPM++ 2M", "Exponential", "dpmpp_2m", "exponential")]
    [InlineData("Euler a", "Automatic", "euler_ancestral", "normal")]
    [InlineData("Euler a", "Karras", "euler_ancestral", "karras")]
    [InlineData("Euler", "SGM Uniform", "euler", "sgm_uniform")]
    [InlineData("Euler", "Simple", "euler", "simple")]
    [InlineData("Euler", "DDIM", "euler", "ddim_uniform")]
    [InlineData("LMS", "Normal", "lms", "normal")]
    [InlineData("DPM2 a", "Exponential", "dpm_2_ancestral", "exponential")]
    [InlineData("DPM++ 2S a", "Simple", "dpmpp_2s_ancestral", "simple")]
    [InlineData("DPM++ 2M Karras", "Karras", "dpmpp_2m", "karras")]
    // A1111's DDIM and UniPC run on their own timesteps whatever the schedule type says
    [InlineData("DDIM", "Karras", "ddim", "ddim_uniform")]
    [InlineData("UniPC", "Exponential", "uni_pc", "sgm_uniform")]
    public void A1111SamplerWithScheduleType(string display, string scheduleType, string sampler, string scheduler)
    {
        Assert.Equal((sampler, scheduler), SamplerNames.FromA1111(display, scheduleType));
    }

    [SkippableFact]
    public void ConflictingAndUnsupportedNamesAreUserErrorsListingTheValidOnes()
    {
        Assert.Throws<UserErrorException>(() => SamplerNames.FromA1111("DPM++ 2M Karras", "Exponential"));
        var sde = Assert.Throws<UserErrorException>(() => SamplerNames.FromA1111("DPM++ SDE", null));
        Assert.Contains("DPM++ 2M", sde.Message);
        Assert.Contains("euler_ancestral", sde.Message);
        var beta = Assert.Throws<UserErrorException>(() => SamplerNames.FromA1111("Euler", "Beta"));
        Assert.Contains("SGM Uniform", beta.Message);
        Assert.Contains("karras", beta.Message);
        var unknown = Assert.Throws<UserErrorException>(() => SamplerNames.Resolve("warp drive"));
        Assert.Contains("'warp drive'", unknown.Message);
        Assert.Contains("Euler a", unknown.Message);
        Assert.Contains("uni_pc_bh2", unknown.Message);
        Assert.Throws<UserErrorException>(() => SamplerNames.Resolve("euler", "cosine"));
        Assert.Throws<UserErrorException>(() => SamplerNames.ToA1111("euler", "beta"));
        Assert.Throws<UserErrorException>(() => SamplerNames.ToA1111("Euler a", "normal"));
    }

    [SkippableTheory]
    [InlineData("Euler a", null, "euler_ancestral", "normal")]
    [InlineData("euler_ancestral", null, "euler_ancestral", "normal")]
    [InlineData("EULER_ANCESTRAL", null, "euler_ancestral", "normal")]
    [InlineData(" euler a ", null, "euler_ancestral", "normal")]
    [InlineData("DPM++ 2M Karras", null, "dpmpp_2m", "karras")]
    [InlineData("dpm++ 2m karras", null, "dpmpp_2m", "karras")]
    [InlineData("dpmpp_2m", null, "dpmpp_2m", "normal")] // our names default to ComfyUI's normal
    [InlineData("dpmpp_2m", "karras", "dpmpp_2m", "karras")]
    [InlineData("dpmpp_2m", "Karras", "dpmpp_2m", "karras")]
    [InlineData("DPM++ 2M", "exponential", "dpmpp_2m", "exponential")]
    [InlineData("euler", "SGM Uniform", "euler", "sgm_uniform")]
    [InlineData("euler", "Automatic", "euler", "normal")]
    [InlineData("ddim", null, "ddim", "normal")] // ComfyUI's ddim: exact name first
    [InlineData("ddim", "karras", "ddim", "karras")]
    [InlineData("DDIM", null, "ddim", "ddim_uniform")] // A1111's
    [InlineData("uni_pc_bh2", "karras", "uni_pc_bh2", "karras")]
    [InlineData("uni_pc karras", null, "uni_pc", "karras")]
    [InlineData("lms", "ddim_uniform", "lms", "ddim_uniform")]
    public void ResolveAcceptsOursAndA1111s(string name, string? schedule, string sampler, string scheduler)
    {
        Assert.Equal((sampler, scheduler), SamplerNames.Resolve(name, schedule));
    }

    [SkippableTheory]
    [InlineData("euler_ancestral", "normal", "Euler a", "Automatic")]
    [InlineData("euler_ancestral", "karras", "Euler a", "Karras")]
    [InlineData("euler", "normal", "Euler", "Automatic")]
    [InlineData("euler", "sgm_uniform", "Euler", "SGM Uniform")]
    [InlineData("lms", "exponential", "LMS", "Exponential")]
    [InlineData("heun", "simple", "Heun", "Simple")]
    [InlineData("dpm_2", "karras", "DPM2", "Automatic")]
    [InlineData("dpm_2_ancestral", "normal", "DPM2 a", "Normal")]
    [InlineData("dpmpp_2s_ancestral", "karras", "DPM++ 2S a", "Automatic")]
    [InlineData("dpmpp_2m", "karras", "DPM++ 2M", "Automatic")]
    [InlineData("dpmpp_2m", "normal", "DPM++ 2M", "Normal")]
    [InlineData("dpmpp_2m", "ddim_uniform", "DPM++ 2M", "DDIM")]
    [InlineData("ddim", "ddim_uniform", "DDIM", "Automatic")]
    [InlineData("ddim", "karras", "Euler", "Karras")] // the same update; A1111's DDIM would ignore Karras
    [InlineData("ddim", "normal", "Euler", "Automatic")]
    [InlineData("uni_pc", "sgm_uniform", "UniPC", "Automatic")]
    [InlineData("uni_pc", "karras", "uni_pc", "Karras")] // A1111's UniPC cannot follow a schedule
    [InlineData("uni_pc_bh2", "sgm_uniform", "uni_pc_bh2", "SGM Uniform")] // nor use bh2 from the name
    public void ToA1111WritesWhatA1111Writes(string sampler, string scheduler, string display, string scheduleType)
    {
        Assert.Equal((display, scheduleType), SamplerNames.ToA1111(sampler, scheduler));
    }

    public static TheoryData<string, string> EveryPair()
    {
        var data = new TheoryData<string, string>();
        foreach (var sampler in Samplers.Names)
            foreach (var scheduler in Schedulers.Names)
                data.Add(sampler, scheduler);
        return data;
    }

    [SkippableTheory, MemberData(nameof(EveryPair))]
    public void EveryPairSurvivesARoundTripThroughA1111Names(string sampler, string scheduler)
    {
        var (display, scheduleType) = SamplerNames.ToA1111(sampler, scheduler);
        // ddim off its own grid is written as Euler: the same sampler under A1111's name
        var expected = sampler == "ddim" && scheduler != "ddim_uniform" ? ("euler", scheduler) : (sampler, scheduler);
        Assert.Equal(expected, SamplerNames.FromA1111(display, scheduleType));
        Assert.Equal(expected, SamplerNames.Resolve(display, scheduleType));
    }

    [SkippableFact]
    public void EveryA1111NameAndScheduleTypeComesBackNormalizedAsA1111Would()
    {
        string[] types = ["Automatic", "Uniform", "Normal", "Karras", "Exponential", "SGM Uniform", "Simple", "DDIM"];
        foreach (var display in SamplerNames.A1111SamplerNames)
            foreach (var type in types)
            {
                var (sampler, scheduler) = SamplerNames.FromA1111(display, type);
                var (display2, type2) = SamplerNames.ToA1111(sampler, scheduler);
                Assert.Equal(display, display2);
                Assert.Equal((sampler, scheduler), SamplerNames.FromA1111(display2, type2));
                // A1111 turns a sampler's own default back into "Automatic"
                if (type == "Automatic") Assert.Equal("Automatic", type2);
            }
    }
}
