using System.Text.Json.Nodes;
using LoraCraft.Pipelines;
using TorchSharp;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace LoraCraft.Server.Comfy.Nodes;

/// <summary>
/// lquesada's Inpaint Crop and Stitch nodes (ComfyUI-Inpaint-CropAndStitch) with their inputs as
/// that pack declares them, done by the engine's <see cref="CropAndStitch"/>: the crop around the
/// mask grown by the context setting, resized to the target size (a multiple of the padding), the
/// mask feathered by the blend setting; the stitch pastes the result back so that pixels outside
/// the feather stay the original's. The crop's exact box and feather are the engine's, not the pack's.
/// </summary>
public static class InpaintCropNodes
{
    static readonly string[] Algorithms = ["nearest", "bilinear", "bicubic", "lanczos", "box", "hamming"];
    const string Module = "custom_nodes.comfyui-inpaint-cropandstitch";

    public static IEnumerable<NodeDefinition> All(ComfyEnvironment env)
    {
        int max = LatentNodes.MaxResolution;
        yield return new NodeDefinition
        {
            Name = "InpaintCropImproved", DisplayName = "✂️ Inpaint Crop", Category = "inpaint", PythonModule = Module,
            Description = "Crops an image around a mask for inpainting, the optional context mask defines an extra area to keep for the context.",
            Required =
            [
                NodeInput.Link("image", "IMAGE"),
                NodeInput.Combo("downscale_algorithm", Algorithms, "bilinear"),
                NodeInput.Combo("upscale_algorithm", Algorithms, "bicubic"),
                NodeInput.Bool("preresize", false, new() { ["tooltip"] = "Resize the original image before processing." }),
                NodeInput.Combo("preresize_mode", ["ensure minimum resolution", "ensure maximum resolution", "ensure minimum and maximum resolution"], "ensure minimum resolution"),
                NodeInput.Int("preresize_min_width", 1024, 0, max),
                NodeInput.Int("preresize_min_height", 1024, 0, max),
                NodeInput.Int("preresize_max_width", max, 0, max),
                NodeInput.Int("preresize_max_height", max, 0, max),
                NodeInput.Bool("mask_fill_holes", true, new() { ["tooltip"] = "Mark as masked any areas fully enclosed by mask." }),
                NodeInput.Int("mask_expand_pixels", 0, 0, max, extra: new() { ["tooltip"] = "Expand the mask by a certain amount of pixels before processing." }),
                NodeInput.Bool("mask_invert", false, new() { ["tooltip"] = "Invert mask so that anything masked will be kept." }),
                NodeInput.Int("mask_blend_pixels", 32, 0, 64, extra: new() { ["tooltip"] = "How many pixels to blend into the original image." }),
                NodeInput.Float("mask_hipass_filter", 0.1, 0, 1, 0.01, new() { ["tooltip"] = "Ignore mask values lower than this value." }),
                NodeInput.Bool("extend_for_outpainting", false, new() { ["tooltip"] = "Extend the image for outpainting." }),
                NodeInput.Float("extend_up_factor", 1.0, 0.01, 100.0, 0.01),
                NodeInput.Float("extend_down_factor", 1.0, 0.01, 100.0, 0.01),
                NodeInput.Float("extend_left_factor", 1.0, 0.01, 100.0, 0.01),
                NodeInput.Float("extend_right_factor", 1.0, 0.01, 100.0, 0.01),
                NodeInput.Float("context_from_mask_extend_factor", 1.2, 1.0, 100.0, 0.01, new() { ["tooltip"] = "Grow the context area from the mask by a certain factor in every direction. For example, 1.5 grabs extra 50% up, down, left, and right as context." }),
                NodeInput.Bool("output_resize_to_target_size", true, new() { ["tooltip"] = "Force a specific resolution for sampling." }),
                NodeInput.Int("output_target_width", 512, 64, max),
                NodeInput.Int("output_target_height", 512, 64, max),
                NodeInput.Combo("output_padding", ["0", "8", "16", "32", "64", "128", "256", "512"], "32"),
                NodeInput.Combo("device_mode", ["cpu (compatible)", "gpu (much faster)"], "cpu (compatible)"),
            ],
            Optional = [NodeInput.Link("mask", "MASK"), NodeInput.Link("optional_context_mask", "MASK")],
            Outputs = ["STITCHER", "IMAGE", "MASK"],
            OutputNames = ["stitcher", "cropped_image", "cropped_mask"],
            Run = call =>
            {
                if (call.Bool("extend_for_outpainting"))
                    throw new UserErrorException(ErrorKind.Unsupported, "Inpaint Crop: extend_for_outpainting is not supported by LoraCraft") { Field = "extend_for_outpainting" };
                if (call.Bool("preresize"))
                    throw new UserErrorException(ErrorKind.Unsupported, "Inpaint Crop: preresize is not supported by LoraCraft; scale the image first (Upscale Image)") { Field = "preresize" };
                var image = call.Value<ImageValue>("image").Pixels;
                var mask = call.Optional<MaskValue>("mask")?.Mask;
                var context = call.Optional<MaskValue>("optional_context_mask")?.Mask;
                double factor = call.Double("context_from_mask_extend_factor");
                int padding = int.Parse(call.Text("output_padding"), System.Globalization.CultureInfo.InvariantCulture);
                bool resize = call.Bool("output_resize_to_target_size");
                long targetLong = Math.Max(call.Int("output_target_width"), call.Int("output_target_height"));
                return Crop(image, mask, context, call.Bool("mask_invert"), (int)call.Int("mask_expand_pixels"), call.Double("mask_hipass_filter"),
                    bounds => new CropOptions
                    {
                        ContextMargin = (int)Math.Round(Math.Max(bounds.Width, bounds.Height) * (factor - 1) / 2, MidpointRounding.ToEven),
                        WorkingSize = (int)(resize ? targetLong : Math.Max(bounds.Width, bounds.Height) * factor),
                        Multiple = Math.Max(8, padding / 8 * 8),
                        Feather = (int)call.Int("mask_blend_pixels"),
                    });
            },
        };
        yield return new NodeDefinition
        {
            Name = "InpaintStitchImproved", DisplayName = "✂️ Inpaint Stitch", Category = "inpaint", PythonModule = Module,
            Description = "Stitches an image cropped with Inpaint Crop back into the original image",
            Required = [NodeInput.Link("stitcher", "STITCHER"), NodeInput.Link("inpainted_image", "IMAGE")],
            Outputs = ["IMAGE"],
            OutputNames = ["image"],
            Run = call => NodeResult.Of(Stitch(call.Value<StitcherValue>("stitcher"), call.Value<ImageValue>("inpainted_image").Pixels)),
        };

        string[] oldAlgorithms = ["nearest", "bilinear", "bicubic", "bislerp", "lanczos", "box", "hamming"];
        yield return new NodeDefinition
        {
            Name = "InpaintCrop", DisplayName = "(OLD 💀, use the new ✂️ Inpaint Crop node)", Category = "inpaint", PythonModule = Module,
            Required =
            [
                NodeInput.Link("image", "IMAGE"),
                NodeInput.Link("mask", "MASK"),
                NodeInput.Int("context_expand_pixels", 20, 0, max),
                NodeInput.Float("context_expand_factor", 1.0, 1.0, 100.0, 0.01),
                NodeInput.Bool("fill_mask_holes", true),
                NodeInput.Float("blur_mask_pixels", 16.0, 0.0, 256.0, 0.1),
                NodeInput.Bool("invert_mask", false),
                NodeInput.Float("blend_pixels", 16.0, 0.0, 32.0, 0.1),
                NodeInput.Combo("rescale_algorithm", oldAlgorithms, "bicubic"),
                NodeInput.Combo("mode", ["ranged size", "forced size", "free size"], "ranged size"),
                NodeInput.Int("force_width", 1024, 0, max),
                NodeInput.Int("force_height", 1024, 0, max),
                NodeInput.Float("rescale_factor", 1.0, 0.01, 100.0, 0.01),
                NodeInput.Int("min_width", 512, 0, max),
                NodeInput.Int("min_height", 512, 0, max),
                NodeInput.Int("max_width", 768, 0, max),
                NodeInput.Int("max_height", 768, 0, max),
                NodeInput.Combo("padding", ["8", "16", "32", "64", "128", "256", "512"], "32"),
            ],
            Optional = [NodeInput.Link("optional_context_mask", "MASK")],
            Outputs = ["STITCH", "IMAGE", "MASK"],
            OutputNames = ["stitch", "cropped_image", "cropped_mask"],
            Run = call =>
            {
                var image = call.Value<ImageValue>("image").Pixels;
                int padding = int.Parse(call.Text("padding"), System.Globalization.CultureInfo.InvariantCulture);
                double factor = call.Double("context_expand_factor");
                long pixels = call.Int("context_expand_pixels");
                string mode = call.Text("mode");
                return Crop(image, call.Value<MaskValue>("mask").Mask, call.Optional<MaskValue>("optional_context_mask")?.Mask,
                    call.Bool("invert_mask"), 0, 0,
                    bounds =>
                    {
                        int side = Math.Max(bounds.Width, bounds.Height);
                        int margin = (int)Math.Max(pixels / 2, Math.Round(side * (factor - 1) / 2));
                        int box = side + 2 * margin;
                        long working = mode switch
                        {
                            "forced size" => Math.Max(call.Int("force_width"), call.Int("force_height")),
                            "free size" => (long)Math.Round(box * call.Double("rescale_factor")),
                            _ => Math.Clamp(box, Math.Max(call.Int("min_width"), call.Int("min_height")), Math.Max(1, Math.Max(call.Int("max_width"), call.Int("max_height")))),
                        };
                        return new CropOptions
                        {
                            ContextMargin = margin, WorkingSize = (int)Math.Max(8, working), Multiple = Math.Max(8, padding / 8 * 8),
                            Feather = (int)Math.Round(call.Double("blend_pixels") + call.Double("blur_mask_pixels") / 2),
                        };
                    });
            },
        };
        yield return new NodeDefinition
        {
            Name = "InpaintStitch", DisplayName = "(OLD 💀, use the new ✂️ Inpaint Stitch node)", Category = "inpaint", PythonModule = Module,
            Required = [NodeInput.Link("stitch", "STITCH"), NodeInput.Link("inpainted_image", "IMAGE"), NodeInput.Combo("rescale_algorithm", oldAlgorithms, "bicubic")],
            Outputs = ["IMAGE"],
            OutputNames = ["image"],
            Run = call => NodeResult.Of(Stitch(call.Value<StitcherValue>("stitch"), call.Value<ImageValue>("inpainted_image").Pixels)),
        };
    }

    /// <summary>Prepares the mask (invert, expand, high-pass, the context mask added) and crops each batch image with the options its mask bounds give.</summary>
    static NodeResult Crop(Tensor image, Tensor? mask, Tensor? context, bool invert, int expand, double hipass, Func<CropBox, CropOptions> options)
    {
        using var noGrad = no_grad();
        using var scope = NewDisposeScope();
        long b = image.shape[0], h = image.shape[2], w = image.shape[3];
        var crops = new List<CropState>();
        var images = new List<Tensor>();
        var masks = new List<Tensor>();
        try
        {
            for (long i = 0; i < b; i++)
            {
                var m = mask is null || mask.shape[2] != h || mask.shape[3] != w
                    ? zeros(1, 1, h, w) // a missing (or LoadImage's 64x64 empty) mask: the whole image
                    : mask.narrow(0, Math.Min(i, mask.shape[0] - 1), 1).to(ScalarType.Float32);
                if (invert) m = m.RSub(1);
                if (expand > 0) m = F.max_pool2d(m, [2 * expand + 1, 2 * expand + 1], [1, 1], [expand, expand]);
                if (hipass >= 0.01) m = m * m.Greater(hipass - 1e-7).to(ScalarType.Float32);
                var bounds = CropAndStitch.MaskBounds(m);
                if (bounds is null)
                {
                    m = ones(1, 1, h, w);
                    bounds = new CropBox(0, 0, (int)w, (int)h);
                }
                // the context mask widens the box: cropping uses the union, blending the mask alone
                var region = m;
                if (context is not null && context.shape[2] == h && context.shape[3] == w)
                {
                    var c = context.narrow(0, Math.Min(i, context.shape[0] - 1), 1).to(ScalarType.Float32);
                    if (CropAndStitch.MaskBounds(c) is { } cb)
                    {
                        int x0 = Math.Min(bounds.Value.X, cb.X), y0 = Math.Min(bounds.Value.Y, cb.Y);
                        int x1 = Math.Max(bounds.Value.X + bounds.Value.Width, cb.X + cb.Width), y1 = Math.Max(bounds.Value.Y + bounds.Value.Height, cb.Y + cb.Height);
                        bounds = new CropBox(x0, y0, x1 - x0, y1 - y0);
                    }
                }
                var crop = CropAndStitch.Crop(image.narrow(0, i, 1), region, options(bounds.Value), bounds);
                foreach (var t in new[] { crop.Source, crop.Blend, crop.Image, crop.Mask }) t.DetachFromDisposeScope();
                crops.Add(crop);
                images.Add(crop.Image.alias());
                masks.Add(crop.Mask.alias());
            }
            var croppedImages = images.Count == 1 ? images[0] : torch.cat(images, 0);
            var croppedMasks = masks.Count == 1 ? masks[0] : torch.cat(masks, 0);
            return NodeResult.Of(new StitcherValue(crops), new ImageValue(croppedImages.MoveToOuterDisposeScope()), new MaskValue(croppedMasks.MoveToOuterDisposeScope()));
        }
        catch
        {
            foreach (var c in crops) c.Dispose();
            throw;
        }
    }

    static ImageValue Stitch(StitcherValue stitcher, Tensor inpainted)
    {
        using var noGrad = no_grad();
        using var scope = NewDisposeScope();
        var parts = new List<Tensor>();
        for (int i = 0; i < inpainted.shape[0]; i++)
        {
            var crop = stitcher.Crops[Math.Min(i, stitcher.Crops.Count - 1)];
            parts.Add(CropAndStitch.Stitch(crop, inpainted.narrow(0, i, 1)));
        }
        var result = parts.Count == 1 ? parts[0] : torch.cat(parts, 0);
        return new ImageValue(result.MoveToOuterDisposeScope());
    }
}
