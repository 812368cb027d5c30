using LoraCraft.Pipelines;
using LoraCraft.Tests.Conformance;
using LoraCraft.Training;
using static TorchSharp.torch;

namespace LoraCraft.Tests.Training;

/// <summary>Small training sets made in the test: 64 px images with a clear pattern, and options on the tiny SD1.5 fixture.</summary>
public static class TrainingData
{
    /// <summary>A 64x64 image: a bright disc (red by default) on a dark blue background, shifted by <paramref name="variant"/>.</summary>
    public static void WriteImage(string path, int variant = 0, int width = 64, int height = 64, (float R, float G, float B)? disc = null)
    {
        var (r, g, b) = disc ?? (0.95f, 0.2f, 0.1f);
        var data = new float[3 * width * height];
        float cx = width / 2f + (variant % 3 - 1) * 4, cy = height / 2f + (variant / 3 % 3 - 1) * 4, rad = Math.Min(width, height) / 3f;
        for (int y = 0; y < height; y++)
            for (int x = 0; x < width; x++)
            {
                bool inside = (x - cx) * (x - cx) + (y - cy) * (y - cy) < rad * rad;
                int i = y * width + x;
                data[i] = inside ? r : 0.05f;
                data[width * height + i] = inside ? g : 0.08f;
                data[2 * width * height + i] = inside ? b : 0.35f;
            }
        using var t = tensor(data, [1, 3, height, width]);
        ImageFiles.SavePng(path, t);
    }

    /// <summary>DIR/10_sks disc/ with <paramref name="count"/> images and .txt captions; returns DIR.</summary>
    public static string KohyaFolder(string root, int count = 3, string folder = "10_sks disc", string? caption = "sks disc, red, circle")
    {
        var train = Path.Combine(root, "train");
        var sub = Path.Combine(train, folder);
        Directory.CreateDirectory(sub);
        for (int i = 0; i < count; i++)
        {
            WriteImage(Path.Combine(sub, $"img{i}.png"), i);
            if (caption is not null) File.WriteAllText(Path.Combine(sub, $"img{i}.txt"), caption + "\nsecond line is ignored");
        }
        return train;
    }

    public static TrainingOptions Options(Fixture f, string trainDir, string outputDir) => new()
    {
        ModelPath = f.ModelFile("sd15"),
        ConfigDir = f.DiffusersDir("sd15"),
        TrainDataDir = trainDir,
        OutputDir = outputDir,
        OutputName = "disc",
        Width = 64,
        Height = 64,
        MaxTrainSteps = 4,
        LearningRate = 1e-3,
        Seed = 7,
        Network = new LoraNetworkOptions { Dim = 4, Alpha = 4 },
        ChartEverySteps = 1000,
    };
}
