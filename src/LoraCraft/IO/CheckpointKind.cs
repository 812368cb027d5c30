namespace LoraCraft.IO;

/// <summary>
/// What a checkpoint is, judged from its header alone: the model family ("sd15", "sdxl", ...)
/// and whether its UNet takes the 9-channel inpainting input. The one place the inspect command
/// and the loaders ask; the rules from key names and shapes come with the model loaders, until
/// then every file reports an unknown family.
/// </summary>
public static class CheckpointKind
{
    public static (string? Family, bool Inpainting) Detect(SafetensorsHeader header) => (null, false);
}
