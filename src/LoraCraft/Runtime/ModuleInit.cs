using System.Runtime.CompilerServices;

namespace LoraCraft.Runtime;

static class ModuleInit
{
    // Every torch call in this library happens after this assembly is loaded, so this is the one
    // place that guarantees the native library is loadable first. Failures surface at the first
    // torch call with TorchSharp's own message plus ours (see TorchNative.LoadError).
#pragma warning disable CA2255 // deliberate: the native library must be fixed before any torch call
    [ModuleInitializer]
#pragma warning restore CA2255
    internal static void Init()
    {
        try { TorchNative.Ensure(); }
        catch (Exception e) { TorchNative.LoadError = e; }
    }
}
