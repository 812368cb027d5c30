namespace LoraCraft.Models;

public enum ModelFamily { Sd1, Sd2, Sdxl }

/// <summary>What the UNet predicts: the added noise (eps) or the velocity (v, SD2 768-v models).</summary>
public enum Prediction { Epsilon, V }

public static class ModelFamilies
{
    public static string Id(this ModelFamily f) => f switch { ModelFamily.Sd1 => "sd1", ModelFamily.Sd2 => "sd2", _ => "sdxl" };

    /// <summary>VAE latent scale factor of each family.</summary>
    public static double LatentScale(this ModelFamily f) => f == ModelFamily.Sdxl ? 0.13025 : 0.18215;

    /// <summary>Default image side in pixels.</summary>
    public static int DefaultSize(this ModelFamily f) => f == ModelFamily.Sdxl ? 1024 : f == ModelFamily.Sd2 ? 768 : 512;
}
