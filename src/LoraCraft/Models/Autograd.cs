using static TorchSharp.torch;

namespace LoraCraft.Models;

/// <summary>
/// Whether the forward pass may be recorded for backward. Inference always runs under
/// `torch.no_grad()` and keeps the memory tricks (in-place adds and activations, banded
/// convolutions); with grad enabled (training) the blocks take the plain out-of-place path, whose
/// values are identical — autograd cannot follow a tensor changed in place after an op saved it.
/// </summary>
public static class Autograd
{
    public static bool Recording => is_grad_enabled();

    /// <summary><paramref name="x"/> + <paramref name="y"/>, in place into x when nothing can record it.</summary>
    public static Tensor AddInPlaceUnlessRecording(Tensor x, Tensor y) => Recording ? x.Add(y) : x.AddInPlace(y);
}
