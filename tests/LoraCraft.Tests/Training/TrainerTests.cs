using System.Text.Json;
using System.Text.RegularExpressions;
using LoraCraft.IO;
using LoraCraft.Lora;
using LoraCraft.Models;
using LoraCraft.Models.Loading;
using LoraCraft.Pipelines;
using LoraCraft.Tests.Conformance;
using LoraCraft.Training;
using TorchSharp;
using Xunit;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace LoraCraft.Tests.Training;

/// <summary>Whole runs on the tiny SD1.5 fixture at 64 px: kept to a few dozen steps in all.</summary>
public class TrainerTests(ITestOutputHelper output)
{
    sealed class Events : IProgress<TrainingEvent>
    {
        public List<TrainingEvent> All { get; } = new();
        public Action<TrainingEvent>? OnEvent { get; init; }
        public void Report(TrainingEvent value) { All.Add(value); OnEvent?.Invoke(value); }
    }

    static (int Code, string Out, string Err) Cli(params string[] args)
    {
        var o = new StringWriter();
        var e = new StringWriter();
        return (LoraCraft.Cli.Cli.Run(args, o, e), o.ToString(), e.ToString());
    }

    /// <summary>The training objective on fixed draws (8 timesteps, fixed noise) for the image's latent.</summary>
    static double HeldOutLoss(StableDiffusionModel model, Tensor latent, string caption)
    {
        using var noGrad = no_grad();
        using var scope = NewDisposeScope();
        var diffusion = new DiffusionLoss();
        using var g = new Generator(1234);
        var (context, _) = CaptionEncoder.Encode(model, [caption], 1, 75);
        double total = 0;
        foreach (int t in new[] { 50, 150, 300, 450, 600, 750, 900, 990 })
        {
            var noise = randn(latent.shape, generator: g);
            var pred = model.UNet.Forward(diffusion.AddNoise(latent, noise, [t]), tensor(new float[] { t }), context);
            total += (pred - noise).pow(2).mean().item<float>();
        }
        return total / 8;
    }

    [SkippableFact]
    public void ThirtyStepsLearnTheImageAndTheFileWorksEverywhere()
    {
        var f = Fixture.Require();
        using var dir = new TempDir();
        var train = TrainingData.KohyaFolder(dir.Path, count: 1, folder: "10_sks disc", caption: "sks disc");
        File.WriteAllText(dir.File("prompts.txt"), "# a comment\nsks disc --w 64 --h 64 --s 2 --d 5 --l 5\n");
        var options = TrainingData.Options(f, train, dir.File("out")) with
        {
            MaxTrainSteps = 30, LearningRate = 3e-3, CacheLatents = true, Network = new LoraNetworkOptions { Dim = 8, Alpha = 8 },
            SamplePrompts = dir.File("prompts.txt"), SampleEveryNSteps = 30, ChartEverySteps = 10, TrainingComment = "test run",
        };
        var events = new Events();
        var result = LoraTrainer.Run(options, events);
        var steps = events.All.OfType<TrainingStep>().ToList();
        Assert.Equal(30, steps.Count);
        Assert.Equal(30, result.Steps);
        output.WriteLine($"{steps.Last().SecondsPerStep:F3} s/step; loss first 5 {steps.Take(5).Average(s => s.Loss):F4}, last 5 {steps.TakeLast(5).Average(s => s.Loss):F4}");

        // the file: kohya names and metadata
        var path = result.LoraPath!;
        Assert.Equal(Path.Combine(dir.File("out"), "disc.safetensors"), path);
        var header = SafetensorsHeader.Read(path);
        Assert.All(header.Tensors, t => Assert.Matches(@"^lora_(unet|te)_[a-z0-9_]+\.(lora_down\.weight|lora_up\.weight|alpha)$", t.Name));
        Assert.Contains(header.Tensors, t => t.Name == "lora_te_text_model_encoder_layers_0_self_attn_q_proj.lora_up.weight");
        var meta = header.Metadata;
        Assert.Equal("networks.lora", meta["ss_network_module"]);
        Assert.Equal("8", meta["ss_network_dim"]);
        Assert.Equal("8.0", meta["ss_network_alpha"]);
        Assert.Equal("30", meta["ss_steps"]);
        Assert.Equal("sd_v1", meta["ss_base_model_version"]);
        Assert.Equal("0.003", meta["ss_learning_rate"]);
        Assert.Equal("test run", meta["ss_training_comment"]);
        Assert.Equal("stable-diffusion-v1/lora", meta["modelspec.architecture"]);
        Assert.Equal("""{"10_sks disc":{"sks disc":1}}""", meta["ss_tag_frequency"]);
        Assert.Equal(FileHashes.Default.SafetensorsDataSha256(path), meta["sshs_model_hash"]);

        // loss log, chart, sample
        Assert.True(File.ReadAllLines(dir.File(Path.Combine("out", "disc_loss.csv"))).Length == 31);
        Assert.Equal(0x89, File.ReadAllBytes(dir.File(Path.Combine("out", "disc_loss.png")))[0]);
        var sample = Assert.Single(events.All.OfType<TrainingSamples>()).Paths.Single();
        Assert.Matches(@"disc_000030_00_\d{14}_5\.png$", sample);

        // it learned: the objective on fixed draws is lower with the LoRA merged (inference path), all keys map
        using var model = CheckpointLoader.Load(f.ModelFile("sd15"), new LoadOptions { ConfigDir = f.DiffusersDir("sd15") });
        using var image = TrainingData.Options(f, train, "").Width == 64 ? ImageFiles.LoadRgb(Path.Combine(train, "10_sks disc", "img0.png")) : null;
        using var latent = StableDiffusionPipeline.EncodeImage(model, image!);
        double before = HeldOutLoss(model, latent, "sks disc");
        using var file = LoraFile.Load(path);
        var plan = LoraPlan.Create(file, new LoraTargets(model));
        Assert.Empty(plan.Unmatched);
        using (var patcher = new LoraPatcher())
        {
            patcher.Apply([new LoraApplication(plan, 1, 1)]);
            double after = HeldOutLoss(model, latent, "sks disc");
            output.WriteLine($"held-out loss without LoRA {before:F4}, with {after:F4}");
            Assert.True(after < before * 0.97, $"training did not lower the loss on fixed draws: {before:F4} -> {after:F4}");
        }

        // generate with it: the final latent moves toward the training image's latent
        double Distance(string latentFile)
        {
            using var st = SafetensorsFile.Open(latentFile);
            using var l = st.Load("latent", ScalarType.Float32);
            return (l - latent).norm().item<float>();
        }
        string[] common = ["generate", "--model", f.ModelFile("sd15"), "--config", f.DiffusersDir("sd15"), "--prompt", "sks disc", "--width", "64", "--height", "64",
                           "--steps", "8", "--seed", "3", "--sampler", "euler", "--cfg", "3", "--quiet"];
        var plain = Cli([.. common, "--out", dir.File("plain.png"), "--save-latent", dir.File("plain.safetensors")]);
        Assert.True(plain.Code == 0, plain.Err);
        var with = Cli([.. common, "--lora", path, "--out", dir.File("lora.png"), "--save-latent", dir.File("lora.safetensors")]);
        Assert.True(with.Code == 0, with.Err);
        Assert.DoesNotContain("warning", with.Err);
        double dPlain = Distance(dir.File("plain.safetensors")), dLora = Distance(dir.File("lora.safetensors"));
        output.WriteLine($"distance to the training latent: without {dPlain:F3}, with LoRA {dLora:F3}");
        Assert.True(dLora < dPlain, $"the LoRA did not move the picture toward the training image ({dPlain:F3} -> {dLora:F3})");

        // lora info reads the metadata
        var info = Cli("lora", "info", path, "--json");
        Assert.True(info.Code == 0, info.Err);
        using var json = JsonDocument.Parse(info.Out);
        Assert.Equal("disc", json.RootElement.GetProperty("metadata").GetProperty("ss_output_name").GetString());
        Assert.Equal(1, json.RootElement.GetProperty("top_tags").GetProperty("sks disc").GetInt32());
    }

    [SkippableFact]
    public void ResumingFromACancelledRunGivesTheSameFileBitForBit()
    {
        var f = Fixture.Require();
        using var dir = new TempDir();
        var train = TrainingData.KohyaFolder(dir.Path, count: 2, folder: "2_sks disc");
        TrainingOptions Options(string outDir) => TrainingData.Options(f, train, outDir) with
        {
            MaxTrainSteps = 6, ShuffleCaption = true, FlipAug = true, CacheLatents = true, LrScheduler = "cosine", LrWarmupSteps = 2,
            Network = new LoraNetworkOptions { Dim = 2, Alpha = 1, Dropout = 0.1 }, Optimizer = OptimizerKind.AdamW8bit,
        };
        var whole = LoraTrainer.Run(Options(dir.File("whole")));

        using var cts = new CancellationTokenSource();
        var events = new Events { OnEvent = e => { if (e is TrainingStep { Step: 3 }) cts.Cancel(); } };
        var stopped = LoraTrainer.Run(Options(dir.File("parts")), events, cts.Token);
        Assert.True(stopped.Cancelled);
        Assert.Equal(3, stopped.Steps);
        Assert.Null(stopped.LoraPath);
        Assert.Equal(Path.Combine(dir.File("parts"), "disc-step00000003-state"), stopped.StateDir);
        Assert.False(File.Exists(Path.Combine(dir.File("parts"), "disc.safetensors")));

        var resumed = LoraTrainer.Run(Options(dir.File("parts")) with { Resume = stopped.StateDir });
        Assert.Equal(6, resumed.Steps);
        using var a = SafetensorsFile.Open(whole.LoraPath!);
        using var b = SafetensorsFile.Open(resumed.LoraPath!);
        Assert.Equal(a.Tensors.Select(t => t.Name), b.Tensors.Select(t => t.Name));
        foreach (var t in a.Tensors) Assert.True(a.Bytes(t.Name).SequenceEqual(b.Bytes(t.Name)), $"{t.Name} differs after resume");
        // the same metadata but for what names the run and its times (the resumed run keeps the interrupted one's)
        string[] runKeys = ["ss_session_id", "ss_training_started_at", "ss_training_finished_at", "modelspec.date"];
        foreach (var key in a.Metadata.Keys.Where(k => !runKeys.Contains(k)))
            Assert.True(a.Metadata[key] == b.Metadata.GetValueOrDefault(key), $"metadata {key}: {a.Metadata[key]} vs {b.Metadata.GetValueOrDefault(key)}");
        // the loss log continues where it stopped
        Assert.Equal(7, File.ReadAllLines(Path.Combine(dir.File("parts"), "disc_loss.csv")).Length);

        // a resume with other settings is refused, before the model loads
        var e = Assert.Throws<UserErrorException>(() => LoraTrainer.Run(Options(dir.File("parts")) with { Resume = stopped.StateDir, Network = new LoraNetworkOptions { Dim = 4 } }));
        Assert.Contains("other settings", e.Message);
    }

    [SkippableFact]
    public void NaNLossStopsAndKeepsTheLastGoodSave()
    {
        var f = Fixture.Require();
        using var dir = new TempDir();
        var train = TrainingData.KohyaFolder(dir.Path, count: 1);
        var options = TrainingData.Options(f, train, dir.File("out")) with { MaxTrainSteps = 12, LearningRate = 1e12, SaveEveryNSteps = 1, CacheLatents = true, MaxGradNorm = 0 };
        var events = new Events();
        var e = Assert.Throws<TrainingDivergedException>(() => LoraTrainer.Run(options, events));
        output.WriteLine(e.Message);
        Assert.Matches(@"the loss became (NaN|infinite) at step \d+", e.Message);
        var saved = events.All.OfType<TrainingSaved>().ToList();
        Assert.NotEmpty(saved);
        Assert.Contains(saved[^1].Path, e.Message);
        Assert.False(File.Exists(dir.File(Path.Combine("out", "disc.safetensors"))), "no final file after a NaN");
        int nanStep = int.Parse(Regex.Match(e.Message, @"at step (\d+)").Groups[1].Value);
        Assert.Equal(nanStep - 1, saved[^1].Step);
    }

    [SkippableFact]
    public void CommandLineTakesKohyaSpellingsAndChecksDataBeforeLoading()
    {
        var f = Fixture.Require();
        using var dir = new TempDir();
        Directory.CreateDirectory(dir.File("data"));
        TrainingData.WriteImage(dir.File(Path.Combine("data", "a.png")));
        var r = Cli("train", "--pretrained_model_name_or_path", f.ModelFile("sd15"), "--config", f.DiffusersDir("sd15"),
                    "--train_data_dir", dir.File("data"), "--output_dir", dir.File("out"), "--network_args", "conv_dim=2", "conv_alpha=1", "--xformers");
        Assert.Equal(2, r.Code);
        Assert.Contains("N_class", r.Err);
        Assert.Contains("ignored (no effect here): --xformers", r.Err);
        Assert.Single(r.Err.Split('\n'), l => l.StartsWith("error: ", StringComparison.Ordinal));
        Assert.DoesNotContain("loaded", r.Err);

        var ok = Cli("train", "--pretrained_model_name_or_path", f.ModelFile("sd15"), "--config", f.DiffusersDir("sd15"), "--train_data_dir", dir.File("data"),
                     "--repeats", "2", "--resolution", "64", "--output_dir", dir.File("out"), "--output_name", "flat", "--max_train_steps", "2",
                     "--network_dim", "2", "--network_args", "conv_dim=2", "conv_alpha=1", "--optimizer_type", "AdamW8bit", "--mixed_precision", "bf16",
                     "--gradient_checkpointing", "--save_every_n_steps", "1", "--seed", "1");
        Assert.True(ok.Code == 0, ok.Err);
        Assert.Equal(Path.Combine(dir.File("out"), "flat.safetensors"), ok.Out.Trim());
        Assert.True(File.Exists(Path.Combine(dir.File("out"), "flat-step00000001.safetensors")));
        Assert.Contains("training UNet and text encoder", ok.Err);
        var meta = SafetensorsHeader.Read(ok.Out.Trim()).Metadata;
        Assert.Equal("""{"conv_dim":"2","conv_alpha":"1"}""", meta["ss_network_args"]);
        Assert.Equal("bf16", meta["ss_mixed_precision"]);
        Assert.StartsWith("loracraft.AdamW8bit", meta["ss_optimizer"]);
    }

    [Fact]
    public void HelpListsTheKohyaOptions()
    {
        var r = Cli("train", "--help");
        Assert.Equal(0, r.Code);
        foreach (var option in LoraCraft.Cli.Commands.TrainCommand.Options.Concat(LoraCraft.Cli.Commands.TrainCommand.Flags))
            Assert.Contains("--" + option, r.Out);
        Assert.Contains("--network-args", r.Out);
    }
}
