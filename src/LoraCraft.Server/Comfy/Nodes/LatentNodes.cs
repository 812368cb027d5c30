using LoraCraft.Pipelines;
using TorchSharp;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace LoraCraft.Server.Comfy.Nodes;

/// <summary>Latents, the VAE and the inpainting helpers (ComfyUI's latent and latent/inpaint nodes).</summary>
public static class LatentNodes
{
    public const int MaxResolution = 16384;

    public static IEnumerable<NodeDefinition> All(ComfyEnvironment env)
    {
        yield return new NodeDefinition
        {
            Name = "EmptyLatentImage", DisplayName = "Empty Latent Image", Category = "latent",
            Description = "Create a new batch of empty latent images to be denoised via sampling.",
            Required =
            [
                NodeInput.Int("width", 512, 16, MaxResolution, 8, new() { ["tooltip"] = "The width of the latent images in pixels." }),
                NodeInput.Int("height", 512, 16, MaxResolution, 8, new() { ["tooltip"] = "The height of the latent images in pixels." }),
                NodeInput.Int("batch_size", 1, 1, 4096, extra: new() { ["tooltip"] = "The number of latent images in the batch." }),
            ],
            Outputs = ["LATENT"],
            OutputTooltips = ["The empty latent image batch."],
            Run = call =>
            {
                long width = call.Int("width"), height = call.Int("height"), batch = call.Int("batch_size");
                CheckSize(env, width, height);
                return NodeResult.Of(new LatentValue(zeros([batch, 4, height / 8, width / 8])));
            },
        };
        yield return new NodeDefinition
        {
            Name = "LatentUpscale", DisplayName = "Upscale Latent", Category = "latent",
            Required =
            [
                NodeInput.Link("samples", "LATENT"),
                NodeInput.Combo("upscale_method", ["nearest-exact", "bilinear", "area", "bicubic", "bislerp"]),
                NodeInput.Int("width", 512, 0, MaxResolution, 8),
                NodeInput.Int("height", 512, 0, MaxResolution, 8),
                NodeInput.Combo("crop", ["disabled", "center"]),
            ],
            Outputs = ["LATENT"],
            Run = call =>
            {
                var latent = call.Value<LatentValue>("samples");
                long width = call.Int("width"), height = call.Int("height");
                if (width == 0 && height == 0) return NodeResult.Of(latent.With(latent.Samples.Handle()));
                var s = latent.Samples;
                if (width == 0) (height, width) = (Math.Max(64, height), Math.Max(64, (long)Math.Round(s.shape[3] * (double)height / s.shape[2], MidpointRounding.ToEven)));
                else if (height == 0) (width, height) = (Math.Max(64, width), Math.Max(64, (long)Math.Round(s.shape[2] * (double)width / s.shape[3], MidpointRounding.ToEven)));
                else (width, height) = (Math.Max(64, width), Math.Max(64, height));
                CheckSize(env, width, height);
                return NodeResult.Of(latent.With(Resize.Common(s, width / 8, height / 8, call.Text("upscale_method"), call.Text("crop"))));
            },
        };
        yield return new NodeDefinition
        {
            Name = "VAEDecode", DisplayName = "VAE Decode", Category = "latent",
            Description = "Decodes latent images back into pixel space images.",
            Required = [NodeInput.Link("samples", "LATENT", "The latent to be decoded."), NodeInput.Link("vae", "VAE", "The VAE model used for decoding the latent.")],
            Outputs = ["IMAGE"],
            OutputTooltips = ["The decoded image."],
            Run = call =>
            {
                var model = call.Run.Model(call.Value<VaeValue>("vae").Entry).Model;
                var samples = call.Value<LatentValue>("samples").Samples;
                using var noGrad = no_grad();
                return NodeResult.Of(new ImageValue(PerItem(samples, one => StableDiffusionPipeline.DecodeLatent(model, one))));
            },
        };
        yield return new NodeDefinition
        {
            Name = "VAEEncode", DisplayName = "VAE Encode", Category = "latent",
            Required = [NodeInput.Link("pixels", "IMAGE"), NodeInput.Link("vae", "VAE")],
            Outputs = ["LATENT"],
            Run = call =>
            {
                var model = call.Run.Model(call.Value<VaeValue>("vae").Entry).Model;
                using var scope = NewDisposeScope();
                var pixels = CropToMultiple(call.Value<ImageValue>("pixels").Pixels, 8);
                return NodeResult.Of(new LatentValue(Encode(model, pixels).MoveToOuterDisposeScope()));
            },
        };
        yield return new NodeDefinition
        {
            Name = "VAEEncodeForInpaint", DisplayName = "VAE Encode (for Inpainting)", Category = "latent/inpaint",
            Required = [NodeInput.Link("pixels", "IMAGE"), NodeInput.Link("vae", "VAE"), NodeInput.Link("mask", "MASK"), NodeInput.Int("grow_mask_by", 6, 0, 64)],
            Outputs = ["LATENT"],
            Run = call =>
            {
                var model = call.Run.Model(call.Value<VaeValue>("vae").Entry).Model;
                using var noGrad = no_grad();
                using var scope = NewDisposeScope();
                var pixels = call.Value<ImageValue>("pixels").Pixels;
                long ph = pixels.shape[2], pw = pixels.shape[3];
                var mask = F.interpolate(call.Value<MaskValue>("mask").Mask.to(ScalarType.Float32), [ph, pw], mode: InterpolationMode.Bilinear);
                // crop both to a multiple of 8, centred, as ComfyUI does
                pixels = CropToMultiple(pixels, 8);
                mask = CropToMultiple(mask, 8);
                int grow = (int)call.Int("grow_mask_by");
                var rounded = mask.round();
                var grown = grow == 0 ? mask
                    : F.conv2d(rounded, ones(1, 1, grow, grow), padding: [(long)Math.Ceiling((grow - 1) / 2.0), (long)Math.Ceiling((grow - 1) / 2.0)]).Clamp(0, 1);
                var keep = rounded.RSub(1);
                var grey = (pixels.to(ScalarType.Float32).Sub(0.5) * keep).Add(0.5);
                var latent = Encode(model, grey);
                var noiseMask = grown.narrow(2, 0, pixels.shape[2]).narrow(3, 0, pixels.shape[3]).round();
                return NodeResult.Of(new LatentValue(latent.MoveToOuterDisposeScope(), noiseMask.MoveToOuterDisposeScope()));
            },
        };
        yield return new NodeDefinition
        {
            Name = "SetLatentNoiseMask", DisplayName = "Set Latent Noise Mask", Category = "latent/inpaint",
            Required = [NodeInput.Link("samples", "LATENT"), NodeInput.Link("mask", "MASK")],
            Outputs = ["LATENT"],
            Run = call =>
            {
                var latent = call.Value<LatentValue>("samples");
                return NodeResult.Of(new LatentValue(latent.Samples.Handle(), call.Value<MaskValue>("mask").Mask.Handle()));
            },
        };
        yield return new NodeDefinition
        {
            Name = "InpaintModelConditioning", Category = "conditioning/inpaint",
            Required =
            [
                NodeInput.Link("positive", "CONDITIONING"), NodeInput.Link("negative", "CONDITIONING"), NodeInput.Link("vae", "VAE"),
                NodeInput.Link("pixels", "IMAGE"), NodeInput.Link("mask", "MASK"),
                NodeInput.Bool("noise_mask", true, new() { ["tooltip"] = "Add a noise mask to the latent so sampling will only happen within the mask. Might improve results or completely break things depending on the model." }),
            ],
            Outputs = ["CONDITIONING", "CONDITIONING", "LATENT"],
            OutputNames = ["positive", "negative", "latent"],
            Run = call =>
            {
                var model = call.Run.Model(call.Value<VaeValue>("vae").Entry).Model;
                using var noGrad = no_grad();
                using var scope = NewDisposeScope();
                var pixels = call.Value<ImageValue>("pixels").Pixels.to(ScalarType.Float32);
                long ph = pixels.shape[2], pw = pixels.shape[3];
                var mask = F.interpolate(call.Value<MaskValue>("mask").Mask.to(ScalarType.Float32), [ph, pw], mode: InterpolationMode.Bilinear);
                var cropped = CropToMultiple(pixels, 8);
                var croppedMask = CropToMultiple(mask, 8);
                // the conditionings carry the inpainting model's input (grey-masked image's latent, mask); the latent encodes the original
                var concat = InpaintConcat.Prepare(model, cropped.narrow(0, 0, 1), croppedMask.narrow(0, 0, 1), cropped.shape[2] / 8, cropped.shape[3] / 8);
                var original = Encode(model, cropped);
                var latent = new LatentValue(original.MoveToOuterDisposeScope(), call.Bool("noise_mask") ? croppedMask.MoveToOuterDisposeScope() : null);
                var c = new InpaintConcat(concat.Mask.MoveToOuterDisposeScope(), concat.MaskedLatent.MoveToOuterDisposeScope());
                ConditioningValue With(ConditioningValue v) => new(v.Entries.Select(e => e.Alias(new InpaintConcat(c.Mask.Handle(), c.MaskedLatent.Handle()))).ToList());
                var result = NodeResult.Of(With(call.Value<ConditioningValue>("positive")), With(call.Value<ConditioningValue>("negative")), latent);
                c.Mask.Dispose();
                c.MaskedLatent.Dispose();
                return result;
            },
        };
    }

    static void CheckSize(ComfyEnvironment env, long width, long height)
    {
        int max = env.Options.MaxImageSide;
        if (width > max || height > max) throw new UserErrorException($"{width}x{height} is larger than this server allows ({max}x{max})");
    }

    /// <summary>[B,C,H,W] pixels in [0,1] -> latents [B,4,H/8,W/8], one image at a time.</summary>
    static Tensor Encode(Models.StableDiffusionModel model, Tensor pixels)
    {
        using var noGrad = no_grad();
        return PerItem(pixels, one => StableDiffusionPipeline.EncodeImage(model, one));
    }

    static Tensor PerItem(Tensor batch, Func<Tensor, Tensor> each)
    {
        using var scope = NewDisposeScope();
        var parts = Enumerable.Range(0, (int)batch.shape[0]).Select(i => each(batch.narrow(0, i, 1))).ToList();
        return (parts.Count == 1 ? parts[0] : torch.cat(parts, 0)).MoveToOuterDisposeScope();
    }

    /// <summary>The centred crop whose sides are multiples of <paramref name="m"/> (ComfyUI's VAE input crop).</summary>
    public static Tensor CropToMultiple(Tensor x, int m)
    {
        long h = x.shape[2], w = x.shape[3], nh = h / m * m, nw = w / m * m;
        if (nh == h && nw == w) return x.alias();
        if (nh == 0 || nw == 0) throw new UserErrorException($"the image is {w}x{h}; it needs at least {m}x{m} pixels");
        return x.narrow(2, (h % m) / 2, nh).narrow(3, (w % m) / 2, nw);
    }
}

/// <summary>ComfyUI's common_upscale: an interpolation method and an optional centre crop to the new aspect.</summary>
public static class Resize
{
    public static Tensor Common(Tensor x, long width, long height, string method, string crop)
    {
        using var scope = NewDisposeScope();
        var s = x.to(ScalarType.Float32);
        if (crop == "center")
        {
            long ow = s.shape[3], oh = s.shape[2];
            double oldAspect = (double)ow / oh, newAspect = (double)width / height;
            long cx = 0, cy = 0;
            if (oldAspect > newAspect) cx = (long)Math.Round((ow - ow * (newAspect / oldAspect)) / 2, MidpointRounding.ToEven);
            else if (oldAspect < newAspect) cy = (long)Math.Round((oh - oh * (oldAspect / newAspect)) / 2, MidpointRounding.ToEven);
            s = s.narrow(2, cy, oh - 2 * cy).narrow(3, cx, ow - 2 * cx);
        }
        var size = new long[] { height, width };
        var result = method switch
        {
            "nearest-exact" => F.interpolate(s, size, mode: InterpolationMode.NearestExact),
            "area" => F.interpolate(s, size, mode: InterpolationMode.Area),
            "bicubic" => F.interpolate(s, size, mode: InterpolationMode.Bicubic, align_corners: false),
            // lanczos (PIL's) and bislerp have no torch kernel: the nearest smooth ones
            "lanczos" => F.interpolate(s, size, mode: InterpolationMode.Bicubic, align_corners: false, antialias: true),
            _ => F.interpolate(s, size, mode: InterpolationMode.Bilinear, align_corners: false),
        };
        return result.MoveToOuterDisposeScope();
    }
}
