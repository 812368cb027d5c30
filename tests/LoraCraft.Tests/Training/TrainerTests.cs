using LoraCraft.IO;
using LoraCraft.Tests.Conformance;
using LoraCraft.Training;
using Xunit;
using Xunit.Abstractions;

namespace LoraCraft.Tests.Training;

public class TrainerTests(ITestOutputHelper output)
{
    sealed class Events : IProgress<TrainingEvent>
    {
        public List<TrainingEvent> All { get; } = new();
        public Action<TrainingEvent>? OnEvent { get; set; }
        public void Report(TrainingEvent value) { All.Add(value); OnEvent?.Invoke(value); }
    }

    [SkippableFact]
    public void SmokeRunWritesAKohyaFile()
    {
        var f = Fixture.Require();
        using var dir = new TempDir();
        var train = TrainingData.KohyaFolder(dir.Path);
        var events = new Events();
        var result = LoraTrainer.Run(TrainingData.Options(f, train, dir.File("out")), events);
        foreach (var e in events.All) output.WriteLine(e.ToString());
        Assert.NotNull(result.LoraPath);
        using var file = SafetensorsFile.Open(result.LoraPath!);
        Assert.Contains(file.Tensors, t => t.Name == "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q.lora_down.weight");
    }
}
