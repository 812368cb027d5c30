using LoraCraft.IO;
using LoraCraft.Lora;
using LoraCraft.Models.Random;
using LoraCraft.Runtime;
using Xunit;
using static TorchSharp.torch;

namespace LoraCraft.Tests.Lora;

/// <summary>What `lora list` shows is what loads: one parser for headers and tensors.</summary>
public class AdapterListingTests
{
    static AdapterListingTests() => TorchNative.Ensure();

    [SkippableFact]
    public void AFolderWithEveryTypeListsWhatLoads()
    {
        using var dir = new TempDir();
        using var model = RandomLoraTests.TinyModel(dir, RandomModelKind.Sd15);
        var targets = new LoraTargets(model);
        var folder = Directory.CreateDirectory(Path.Combine(dir.Path, "Lora")).FullName;
        var samples = AdapterSamples.WriteAll(folder, targets);
        var rows = LoraInfo.List(new LoraLibrary(folder));
        Assert.Equal(samples.Count, rows.Count);
        foreach (var sample in samples)
        {
            var row = rows.Single(r => r.Path == sample.Path);
            Assert.Null(row.Error);
            var info = row.Info!;
            using var file = LoraFile.Load(sample.Path);
            var plan = LoraPlan.Create(file, targets);
            Assert.Equal(sample.Algorithm, info.Algorithm);
            Assert.Equal(file.Algorithm, info.Algorithm);
            Assert.Equal(file.Modules.Count, info.Modules.Total);
            Assert.Equal(sample.Modules.Count, plan.Matched.Count);
            Assert.Empty(plan.Unmatched);
            Assert.Equal(0, info.UnknownTensors);
            Assert.Equal(file.Modules.Any(m => m.IsDora), info.Dora);
            Assert.Equal(sample.Name.Contains("dora", StringComparison.Ordinal), info.Dora);
            Assert.Equal(file.Modules.GroupBy(m => m.Algorithm).ToDictionary(g => g.Key, g => g.Count()), info.Algorithms);
            Assert.Equal(LoraFamilyGuess.Guess(file), info.Family);
        }
    }

    [SkippableFact]
    public void MixedFilesCountEachTypeAndReportWhatNothingReads()
    {
        using var dir = new TempDir();
        using var model = RandomLoraTests.TinyModel(dir, RandomModelKind.Sd15);
        var targets = new LoraTargets(model);
        var samples = AdapterSamples.WriteAll(dir.Path, targets);
        // a LyCORIS-style file: LoHa layers, norm layers, and tensors of no known type
        var path = dir.File("mixed.safetensors");
        using (var loha = SafetensorsFile.Open(samples.Single(s => s.Name == "loha").Path))
        using (var norm = SafetensorsFile.Open(samples.Single(s => s.Name == "norm").Path))
        {
            var tensors = loha.Tensors.Select(t => new KeyValuePair<string, Tensor>(t.Name, loha.Load(t.Name)))
                .Concat(norm.Tensors.Select(t => new KeyValuePair<string, Tensor>(t.Name, norm.Load(t.Name))))
                .Append(new("lora_unet_down_blocks_0_attentions_0_proj_in.mystery_part", ones(3)))
                .Append(new("lora_unet_no_such_layer.lora_down.weight", ones(2, 32)))
                .Append(new("lora_unet_no_such_layer.lora_up.weight", ones(32, 2)))
                .Append(new("lora_unet_down_blocks_0_attentions_0_proj_in.hada_w1_a", ones(32, 2))) // a LoHa missing its other factors
                .ToList();
            SafetensorsWriter.Write(path, tensors);
        }
        var info = LoraInfo.Read(path);
        Assert.Equal(LoraAlgorithm.LoHa, info.Algorithm);
        Assert.Equal(new Dictionary<LoraAlgorithm, int> { [LoraAlgorithm.Lora] = 1, [LoraAlgorithm.LoHa] = 2, [LoraAlgorithm.Norm] = 2 }, info.Algorithms);
        Assert.Equal(2, info.UnknownTensors);
        using var file = LoraFile.Load(path);
        Assert.Equal(["lora_unet_down_blocks_0_attentions_0_proj_in.mystery_part", "lora_unet_down_blocks_0_attentions_0_proj_in.hada_w1_a"], file.UnknownKeys);
        var plan = LoraPlan.Create(file, targets);
        Assert.Equal(4, plan.Matched.Count);
        // unmatched: the module for a layer the model lacks, and the tensors no type reads
        Assert.Equal(["lora_unet_no_such_layer", .. file.UnknownKeys], plan.Unmatched);
    }

    [SkippableFact]
    public void ACheckpointIsStillNotALora()
    {
        using var dir = new TempDir();
        var path = dir.File("model.safetensors");
        SafetensorsWriter.Write(path, [new("model.diffusion_model.out.2.weight", ones(4, 4, 3, 3)), new("model.diffusion_model.out.2.bias", ones(4))]);
        Assert.Contains("not a LoRA", Assert.Throws<LoraFormatException>(() => LoraInfo.Read(path)).Message);
        Assert.Contains("no LoRA modules", Assert.Throws<LoraFormatException>(() => LoraFile.Load(path)).Message);
    }
}
