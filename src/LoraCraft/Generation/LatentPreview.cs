using LoraCraft.Models;
using LoraCraft.Pipelines;
using TorchSharp;
using static TorchSharp.torch;

namespace LoraCraft.Generation;

/// <summary>
/// A cheap look at a latent while it is sampled: one linear map from the 4 latent channels to RGB
/// per pixel of the latent (A1111's "Approx cheap", ComfyUI's latent2rgb previewer), no VAE.
/// The factors are ComfyUI's `latent_rgb_factors` (comfy/latent_formats.py, SD15 and SDXL, with
/// SDXL's bias), themselves a least-squares fit of decoded images to latents.
/// </summary>
public static class LatentPreview
{
    static readonly float[,] Sd1 =
    {
        { 0.3512f, 0.2297f, 0.3227f },
        { 0.3250f, 0.4974f, 0.2350f },
        { -0.2829f, 0.1762f, 0.2721f },
        { -0.2120f, -0.2616f, -0.7177f },
    };

    static readonly float[,] Sdxl =
    {
        { 0.3920f, 0.4054f, 0.4549f },
        { -0.2634f, -0.0196f, 0.0653f },
        { 0.0568f, 0.1687f, -0.0755f },
        { -0.3112f, -0.2359f, -0.2076f },
    };

    static readonly float[] SdxlBias = [0.1084f, -0.0175f, -0.0011f];

    /// <summary>Latent [1,4,h,w] in model space -> image [1,3,h,w] in [0,1].</summary>
    public static Tensor ToImage(Tensor latent, ModelFamily family)
    {
        using var scope = NewDisposeScope();
        var factors = family == ModelFamily.Sdxl ? Sdxl : Sd1;
        var m = torch.tensor(Flatten(factors), [4, 3]);
        var rgb = torch.einsum("chw,cr->rhw", latent[0].to(ScalarType.Float32, CPU), m);
        if (family == ModelFamily.Sdxl) rgb = rgb.Add(torch.tensor(SdxlBias).view(3, 1, 1));
        return rgb.Add(1).Div(2).Clamp(0, 1).unsqueeze(0).MoveToOuterDisposeScope();
    }

    /// <summary>The preview as PNG bytes.</summary>
    public static byte[] Png(Tensor latent, ModelFamily family)
    {
        using var image = ToImage(latent, family);
        return ImageFiles.EncodePng(image);
    }

    static float[] Flatten(float[,] a)
    {
        var r = new float[a.Length];
        int k = 0;
        foreach (var v in a) r[k++] = v;
        return r;
    }
}
