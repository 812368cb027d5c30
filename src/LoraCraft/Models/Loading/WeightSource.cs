using LoraCraft.IO;
using TorchSharp;
using static TorchSharp.torch;

namespace LoraCraft.Models.Loading;

/// <summary>How a stored tensor becomes one of our weights.</summary>
public enum WeightTransform
{
    None,
    /// <summary>OpenCLIP stores text_projection as a matrix applied as x @ P; we hold a Linear weight.</summary>
    Transpose,
    /// <summary>Thirds of a fused in_proj (q, k, v) along the first dimension.</summary>
    ThirdQ, ThirdK, ThirdV,
    /// <summary>Diffusers VAE attention uses linear layers where LDM files hold 1x1 convolutions.</summary>
    LinearToConv1x1,
}

public sealed record WeightRecipe(string SourceKey, WeightTransform Transform = WeightTransform.None)
{
    /// <summary>Which third (0, 1, 2) of a fused in_proj this weight is; null for the other transforms.</summary>
    public int? Third => Transform switch { WeightTransform.ThirdQ => 0, WeightTransform.ThirdK => 1, WeightTransform.ThirdV => 2, _ => null };

    /// <summary>The stored tensor <paramref name="t"/> as our weight (a view where the transform allows).</summary>
    public Tensor Apply(Tensor t) => Transform switch
    {
        WeightTransform.None => t,
        WeightTransform.Transpose => t.t(),
        WeightTransform.ThirdQ => t.chunk(3, 0)[0],
        WeightTransform.ThirdK => t.chunk(3, 0)[1],
        WeightTransform.ThirdV => t.chunk(3, 0)[2],
        WeightTransform.LinearToConv1x1 => t.dim() == 2 ? t.unsqueeze(-1).unsqueeze(-1) : t,
        _ => throw new ArgumentOutOfRangeException(nameof(Transform)),
    };
}

/// <summary>
/// Where the weights of one network come from: a safetensors file plus, for each of our
/// parameter names, the stored key and how to transform it. Tensors are read from the memory
/// map one at a time and converted straight to the compute dtype, so no second copy stays alive.
/// </summary>
public sealed class WeightSource
{
    readonly SafetensorsFile _file;
    readonly Func<string, WeightRecipe?> _recipe;

    public WeightSource(SafetensorsFile file, Func<string, WeightRecipe?> recipe)
    {
        _file = file;
        _recipe = recipe;
    }

    public string FilePath => _file.Path;

    /// <summary>Our names are the stored names under a key prefix (single-file checkpoints).</summary>
    public static WeightSource Prefixed(SafetensorsFile file, string prefix) =>
        new(file, name => new WeightRecipe(prefix + name));

    /// <summary>The stored key a name would come from, for error messages.</summary>
    public string ExpectedKey(string name) => _recipe(name)?.SourceKey ?? name;

    public WeightRecipe? RecipeFor(string name) => _recipe(name) is { } r && _file.Contains(r.SourceKey) ? r : null;

    /// <summary>The stored tensor with the recipe applied, in the file's dtype, contiguous (no layout change).</summary>
    public Tensor LoadStored(string name, WeightRecipe recipe, StoredScratch? scratch = null)
    {
        // stored as used, or a third of a fused in_proj (a contiguous run of rows): read straight into the scratch
        bool asStored = recipe.Transform == WeightTransform.None;
        if (scratch is not null && (asStored || recipe.Third is not null) && _file.Info(recipe.SourceKey) is var info
            && SafeDTypes.ToTorch(info.DType) is { } stored && (asStored || info.Shape.Length >= 1 && info.Shape[0] % 3 == 0))
        {
            long count = info.Shape.Aggregate(1L, (a, b) => a * b);
            var view = scratch.Get(stored, asStored ? count : count / 3);
            var bytes = view.bytes;
            _file.ReadInto(recipe.SourceKey, bytes, (recipe.Third ?? 0) * (long)bytes.Length);
            return view;
        }
        using var scope = NewDisposeScope();
        var t = recipe.Apply(_file.Load(recipe.SourceKey)).contiguous();
        return t.MoveToOuterDisposeScope();
    }

    public Tensor Load(string name, WeightRecipe recipe, ScalarType dtype)
    {
        using var scope = NewDisposeScope();
        var t = _file.Load(recipe.SourceKey);
        t = recipe.Apply(t);
        var result = t.to(dtype).contiguous();
        // Reduced-precision kernels are stored channels-last, oneDNN's fastest layout on CPU.
        // float32 is the reference path and keeps the reference's layout (and so its rounding).
        if (result.dim() == 4 && Layout.PrefersChannelsLast(dtype)) result = Layout.ChannelsLast(result);
        // a third of a fused in_proj is a view: copy it so the whole fused tensor can be freed
        if (ReferenceEquals(result, t) && recipe.Transform != WeightTransform.None) result = result.clone();
        return result.MoveToOuterDisposeScope();
    }
}

/// <summary>Fills every weight of a network from a source, checking shapes; names what is missing.</summary>
public static class WeightLoader
{
    static Tensor OnDevice(Tensor t, Device? device)
    {
        if (device is null || device.type == DeviceType.CPU) return t;
        var moved = t.to(device);
        t.Dispose();
        return moved;
    }

    public static void Load(Net net, WeightSource source, ScalarType dtype, string component, Device? device = null)
    {
        var missing = new List<string>();
        foreach (var (name, weight) in net.Weights())
        {
            var recipe = source.RecipeFor(name);
            if (recipe is null) { missing.Add(name); continue; }
            var dt = weight.KeepFloat32 ? ScalarType.Float32 : dtype;
            var t = source.Load(name, recipe, dt);
            if (!t.shape.SequenceEqual(weight.Shape))
            {
                var got = string.Join("x", t.shape);
                t.Dispose();
                throw new ModelLoadException(source.FilePath,
                    $"{component} weight '{recipe.SourceKey}' has shape [{got}], expected [{string.Join("x", weight.Shape)}]");
            }
            weight.Value?.Dispose();
            weight.Value = OnDevice(t, device).DetachFromDisposeScope(); // weights live as long as the model, not a caller's scope
            weight.Reload = () => OnDevice(source.Load(name, recipe, dt), device);
            weight.ReloadStored = device is null || device.type == DeviceType.CPU ? scratch => source.LoadStored(name, recipe, scratch) : null;
        }
        if (missing.Count > 0)
        {
            var examples = string.Join(", ", missing.Take(3).Select(source.ExpectedKey));
            throw new ModelLoadException(source.FilePath,
                $"{component}: {missing.Count} weights missing (e.g. {examples}) — not a complete {component} checkpoint");
        }
    }
}

public sealed class ModelLoadException(string path, string problem) : UserErrorException($"{path}: {problem}")
{
    public string Path { get; } = path;
}

/// <summary>Memory layouts TorchSharp has no API for, made with permute + contiguous.</summary>
public static class Layout
{
    public static bool PrefersChannelsLast(ScalarType dtype) => dtype is ScalarType.BFloat16 or ScalarType.Float16;

    /// <summary>The same NCHW tensor stored NHWC (what torch calls channels_last).</summary>
    public static Tensor ChannelsLast(Tensor t)
    {
        using var nhwc = t.permute(0, 2, 3, 1).contiguous();
        return nhwc.permute(0, 3, 1, 2);
    }

    /// <summary>Whether a 4-d NCHW tensor is stored NHWC (what the bf16 path keeps everywhere).</summary>
    public static bool IsChannelsLast(Tensor t)
    {
        using var nhwc = t.permute(0, 2, 3, 1);
        return nhwc.is_contiguous();
    }
}
