using LoraCraft.Pipelines;

namespace LoraCraft.Cli.Commands;

/// <summary>`loracraft png-info FILE`: the generation parameters stored in a PNG.</summary>
public static class PngInfoCommand
{
    public static int Run(string[] argv, TextWriter stdout)
    {
        var a = new Args("png-info", argv, ["quiet"], []);
        var path = a.Positional(0, "a PNG file");
        var text = ImageFiles.ReadTextChunks(path);
        if (!text.TryGetValue(ImageFiles.ParametersKey, out var parameters))
            throw new UserErrorException($"{path}: no generation parameters in this PNG");
        stdout.WriteLine(parameters);
        return 0;
    }
}
