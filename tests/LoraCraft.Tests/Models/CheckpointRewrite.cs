using LoraCraft.IO;
using TorchSharp;
using static TorchSharp.torch;

namespace LoraCraft.Tests.Models;

/// <summary>Writes a variant of a fixture checkpoint: tensors dropped or converted, extra tensors added.</summary>
static class CheckpointRewrite
{
    /// <summary>
    /// Copies <paramref name="source"/> to <paramref name="target"/>, passing each tensor through
    /// <paramref name="map"/> (null drops it), then appending <paramref name="extra"/>.
    /// </summary>
    public static void Write(string source, string target, Func<string, Tensor, Tensor?> map, params (string Name, Tensor Value)[] extra) =>
        Write(source, target, map, name => name, extra);

    /// <summary>As above, also renaming each kept tensor with <paramref name="rename"/>.</summary>
    public static void Write(string source, string target, Func<string, Tensor, Tensor?> map, Func<string, string> rename, params (string Name, Tensor Value)[] extra)
    {
        using var scope = NewDisposeScope();
        using var file = SafetensorsFile.Open(source);
        var tensors = new List<KeyValuePair<string, Tensor>>();
        foreach (var info in file.Tensors)
            if (map(info.Name, file.Load(info.Name)) is { } t) tensors.Add(new(rename(info.Name), t));
        tensors.AddRange(extra.Select(e => new KeyValuePair<string, Tensor>(e.Name, e.Value)));
        SafetensorsWriter.Write(target, tensors, file.Metadata);
    }
}
