using System.Text.Json.Nodes;

namespace LoraCraft.Tests.Server;

/// <summary>API-format prompts for the tests: ComfyUI's default graph at 64x64 on the tiny model, and variants.</summary>
public static class ComfyPrompts
{
    public static JsonObject Txt2Img(ulong seed, int steps = 2, string sampler = "euler", string scheduler = "normal", double cfg = 8,
                                     string positive = "a red apple", string negative = "blurry", int size = 64, string prefix = "ComfyUI")
    {
        var json = $$$"""
        {
          "3": {"class_type": "KSampler", "inputs": {"cfg": {{{cfg.ToString(System.Globalization.CultureInfo.InvariantCulture)}}}, "denoise": 1, "latent_image": ["5", 0], "model": ["4", 0],
                "negative": ["7", 0], "positive": ["6", 0], "sampler_name": "{{{sampler}}}", "scheduler": "{{{scheduler}}}", "seed": {{{seed}}}, "steps": {{{steps}}}}},
          "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "{{{ComfyServer.Checkpoint}}}"}},
          "5": {"class_type": "EmptyLatentImage", "inputs": {"batch_size": 1, "height": {{{size}}}, "width": {{{size}}}}},
          "6": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["4", 1], "text": "{{{positive}}}"}},
          "7": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["4", 1], "text": "{{{negative}}}"}},
          "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
          "9": {"class_type": "SaveImage", "inputs": {"filename_prefix": "{{{prefix}}}", "images": ["8", 0]}}
        }
        """;
        return (JsonObject)JsonNode.Parse(json)!;
    }

    public static JsonObject Body(JsonObject prompt, string? clientId = null)
    {
        var body = new JsonObject { ["prompt"] = prompt.DeepClone() };
        if (clientId is not null) body["client_id"] = clientId;
        return body;
    }
}
