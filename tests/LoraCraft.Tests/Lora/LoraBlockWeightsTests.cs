using LoraCraft.Lora;
using LoraCraft.Models;
using LoraCraft.Models.Random;
using LoraCraft.Runtime;
using Xunit;

namespace LoraCraft.Tests.Lora;

/// <summary>sd-webui-lora-block-weight's `lbw=` / `lbwe=` and the structured (diffusers-style) block weights.</summary>
public class LoraBlockWeightsTests
{
    static LoraBlockWeightsTests() => TorchNative.Ensure();

    static LoraTarget UNet(string sgmModule, string leaf = ".weight") =>
        new(LoraComponent.UNet, sgmModule + leaf, new Weight([1])) { Block = LoraTargets.BlockOf(sgmModule, 2) };

    static readonly LoraTarget Text = new(LoraComponent.TextEncoder1, "encoder.layers.0.self_attn.q_proj.weight", new Weight([1]));

    [SkippableTheory]
    // presets are 17-value vectors: BASE, IN01, IN02, IN04, IN05, IN07, IN08, M00, OUT03..OUT11
    [InlineData("ALL", "input_blocks.4.1.proj_in", 1.0)]
    [InlineData("MIDD", "input_blocks.5.1.proj_in", 1.0)]
    [InlineData("MIDD", "input_blocks.4.1.proj_in", 0.0)]
    [InlineData("MIDD", "input_blocks.1.1.proj_in", 0.0)]
    [InlineData("MIDD", "middle_block.1.proj_in", 1.0)]
    [InlineData("MIDD", "output_blocks.6.1.proj_in", 1.0)]
    [InlineData("MIDD", "output_blocks.7.1.proj_in", 0.0)]
    [InlineData("OUTALL", "output_blocks.3.0.in_layers.2", 1.0)]
    [InlineData("OUTALL", "input_blocks.8.1.proj_in", 0.0)]
    [InlineData("INALL", "input_blocks.2.1.proj_in", 1.0)]
    [InlineData("IND", "input_blocks.2.1.proj_in", 0.0)]
    [InlineData("IND", "input_blocks.7.0.in_layers.2", 1.0)]
    [InlineData("INS", "input_blocks.4.0.in_layers.2", 1.0)]
    [InlineData("ALL0.5", "output_blocks.11.1.proj_out", 0.5)]
    // blocks the 17 values do not name get 0 (the extension fills them so), layers outside the blocks 1
    [InlineData("ALL", "input_blocks.3.0.op", 0.0)]
    [InlineData("ALL", "output_blocks.1.0.in_layers.2", 0.0)]
    [InlineData("ALL", "input_blocks.0.0", 0.0)]
    [InlineData("NONE", "time_embed.0", 1.0)]
    [InlineData("NONE", "out.2", 1.0)]
    public void PresetsWeightTheirBlocks(string preset, string module, double weight)
    {
        Assert.Equal(weight, LoraBlockWeights.Parse(preset).WeightFor(UNet(module)));
    }

    [SkippableFact]
    public void VectorsOfEachLengthMapOntoTheirBlocks()
    {
        // 17: BASE IN01 IN02 IN04 IN05 IN07 IN08 M00 OUT03..OUT11
        var sd1 = LoraBlockWeights.Parse("0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9,1.0,1.1,1.2,1.3,1.4,1.5,1.6,1.7");
        Assert.Equal(0.1, sd1.WeightFor(Text));
        Assert.Equal(0.3, sd1.WeightFor(UNet("input_blocks.2.1.proj_in")));
        Assert.Equal(0.8, sd1.WeightFor(UNet("middle_block.2.in_layers.2")));
        Assert.Equal(1.7, sd1.WeightFor(UNet("output_blocks.11.1.proj_out")));
        // 12 (SDXL): BASE IN04 IN05 IN07 IN08 M00 OUT00..OUT05
        var xl = LoraBlockWeights.Parse("1,0.4,0.5,0.7,0.8,0.9,0,0.01,0.02,0.03,0.04,0.05");
        Assert.Equal(0.7, xl.WeightFor(UNet("input_blocks.7.1.transformer_blocks.3.attn1.to_q")));
        Assert.Equal(0.05, xl.WeightFor(UNet("output_blocks.5.1.proj_in")));
        Assert.Equal(0.0, xl.WeightFor(UNet("output_blocks.6.1.proj_in")));
        // 26: every SD1 block; 20: every SDXL block
        var all = LoraBlockWeights.Parse(string.Join(",", Enumerable.Range(0, 26).Select(i => (i / 100.0).ToString(System.Globalization.CultureInfo.InvariantCulture))));
        Assert.Equal(0.04, all.WeightFor(UNet("input_blocks.3.0.op")));
        Assert.Equal(0.13, all.WeightFor(UNet("middle_block.1.proj_in")));
        Assert.Equal(0.25, all.WeightFor(UNet("output_blocks.11.0.in_layers.2")));
        var xlAll = LoraBlockWeights.Parse(string.Join(",", Enumerable.Range(0, 20).Select(i => (i / 100.0).ToString(System.Globalization.CultureInfo.InvariantCulture))));
        Assert.Equal(0.09, xlAll.WeightFor(UNet("input_blocks.8.1.proj_in")));
        Assert.Equal(0.19, xlAll.WeightFor(UNet("output_blocks.8.0.in_layers.2")));
    }

    [SkippableTheory]
    [InlineData("SOMETHING", "not a preset")]
    [InlineData("1,0,1", "3 values")]
    [InlineData("1,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,R", "random R/U/X values are not supported")]
    public void BadWeightsAreUserErrors(string spec, string problem)
    {
        Assert.Contains(problem, Assert.Throws<UserErrorException>(() => LoraBlockWeights.Parse(spec)).Message);
    }

    [SkippableFact]
    public void ElementRulesSetMatchingLayersInTheirBlocks()
    {
        // ATTNDEEPOFF: attention layers of IN05..OUT05 at 0, everything else keeps its block weight
        var w = LoraBlockWeights.Parse("ALL", "ATTNDEEPOFF");
        Assert.Equal(0.0, w.WeightFor(UNet("input_blocks.7.1.transformer_blocks.0.attn1.to_q")));
        Assert.Equal(0.0, w.WeightFor(UNet("output_blocks.4.1.transformer_blocks.0.attn2.to_k")));
        Assert.Equal(1.0, w.WeightFor(UNet("input_blocks.7.1.transformer_blocks.0.ff.net.2")));
        Assert.Equal(1.0, w.WeightFor(UNet("input_blocks.4.1.transformer_blocks.0.attn1.to_q")));
        Assert.Equal(1.0, w.WeightFor(UNet("output_blocks.6.1.transformer_blocks.0.attn1.to_q")));
        // NOT inverts the block set; an inline rule without a preset
        var inverted = LoraBlockWeights.Parse(null, "NOT M00:proj:0.25");
        Assert.Equal(0.25, inverted.WeightFor(UNet("input_blocks.1.1.proj_in")));
        Assert.Equal(1.0, inverted.WeightFor(UNet("middle_block.1.proj_in")));
        Assert.Equal(1.0, inverted.WeightFor(UNet("input_blocks.1.1.transformer_blocks.0.attn1.to_q")));
    }

    [SkippableFact]
    public void StructuredBlocksFollowDiffusersBlocksAndLayers()
    {
        var w = LoraBlockWeights.FromBlocks(new LoraBlocks(TextEncoder: 0.5, Down: [[1], [0.2, 0.3]], Mid: 0.7, Up: [[0.1, 0.2, 0.3]]));
        Assert.Equal(0.5, w.WeightFor(Text));
        Assert.Equal(1.0, w.WeightFor(UNet("input_blocks.1.1.proj_in")));    // down 0, layer 0
        Assert.Equal(0.2, w.WeightFor(UNet("input_blocks.4.0.in_layers.2"))); // down 1, layer 0
        Assert.Equal(0.3, w.WeightFor(UNet("input_blocks.5.1.proj_in")));    // down 1, layer 1
        Assert.Equal(0.3, w.WeightFor(UNet("input_blocks.6.0.op")));         // down 1's downsampler follows its last layer
        Assert.Equal(1.0, w.WeightFor(UNet("input_blocks.7.1.proj_in")));    // down 2: not given
        Assert.Equal(0.7, w.WeightFor(UNet("middle_block.2.out_layers.3")));
        Assert.Equal(0.3, w.WeightFor(UNet("output_blocks.2.2.conv")));      // up 0, layer 2 (its upsampler)
        Assert.Equal(1.0, w.WeightFor(UNet("output_blocks.3.0.in_layers.2")));
        Assert.Equal(1.0, w.WeightFor(UNet("input_blocks.0.0")));            // conv_in belongs to no diffusers block
        Assert.Contains("has 2 weights", Assert.Throws<UserErrorException>(() =>
            LoraBlockWeights.FromBlocks(new LoraBlocks(Up: [[1, 1]])).WeightFor(UNet("output_blocks.2.1.proj_in"))).Message);
    }

    [SkippableFact]
    public void AZeroBlockLeavesThatBlocksWeightsExactlyOriginal()
    {
        using var dir = new TempDir();
        using var model = RandomLoraTests.TinyModel(dir, RandomModelKind.Sd15);
        var targets = new LoraTargets(model);
        var path = dir.File("all.safetensors");
        RandomLora.Make(path, targets, new RandomLoraOptions(Rank: 2, Seed: 4, Layers: RandomLoraLayers.All));
        using var file = LoraFile.Load(path);
        var plan = LoraPlan.Create(file, targets);
        var before = Weights.Snapshot(model);
        // 26 values: IN04 and IN05 at 0, the rest at 1
        var blocks = LoraBlockWeights.Parse(string.Join(",", Enumerable.Range(0, 26).Select(i => i is 5 or 6 ? "0" : "1")));
        using var patcher = new LoraPatcher();
        patcher.Apply([new LoraApplication(plan, 1, 1) { Blocks = blocks }]);
        int zeroed = 0, changed = 0;
        foreach (var (_, t) in plan.Matched)
        {
            bool same = (t.Weight.T == before[(t.Component == LoraComponent.UNet ? "unet." : "te1.") + t.Name]).all().item<bool>();
            if (t.Block?.Id is "IN04" or "IN05")
            {
                Assert.True(same, $"{t.Name} changed in a zero block");
                zeroed++;
            }
            else if (!same) changed++;
        }
        Assert.True(zeroed > 0);
        Assert.Equal(plan.Matched.Count - zeroed, changed);
        patcher.Apply([]);
        Weights.AssertBitIdentical(before, model);
    }
}
