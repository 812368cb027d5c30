using LoraCraft.Generation;
using LoraCraft.Lora;
using LoraCraft.Models;

namespace LoraCraft.Server;

/// <summary>
/// How a LoRA fits a model before anyone generates with it: modules matched per component,
/// keys that match nothing, or why it does not fit at all (made for another family). Runs on the
/// worker (it needs the model's layers).
/// </summary>
public static class Coverage
{
    public static object Of(ServerEngine engine, CheckpointEntry entry, string loraPath)
    {
        using var lease = engine.Models.Acquire(entry);
        using var file = LoraFile.Load(loraPath);
        string name = LoraLibrary.NameOf(loraPath);
        try
        {
            var plan = lease.Model.Plan(file);
            return new
            {
                lora = name, model = entry.Name, family = lease.Model.Model.Family.Id(), fits = true,
                matched = plan.Matched.Count, unet = plan.Count(LoraComponent.UNet),
                text_encoder = plan.Count(LoraComponent.TextEncoder1), text_encoder_2 = plan.Count(LoraComponent.TextEncoder2),
                unmatched = plan.Unmatched.Count, unmatched_keys = plan.Unmatched.Take(50), problem = (string?)null,
            };
        }
        catch (LoraFormatException e)
        {
            return new
            {
                lora = name, model = entry.Name, family = lease.Model.Model.Family.Id(), fits = false,
                matched = 0, unet = 0, text_encoder = 0, text_encoder_2 = 0, unmatched = file.Modules.Count,
                unmatched_keys = file.Modules.Take(50).Select(m => m.Key), problem = (string?)e.Message,
            };
        }
    }
}
