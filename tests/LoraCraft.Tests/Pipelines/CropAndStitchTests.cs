using LoraCraft.Pipelines;
using LoraCraft.Tests.Conformance;
using TorchSharp;
using Xunit;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace LoraCraft.Tests.Pipelines;

public class CropAndStitchTests(ITestOutputHelper output)
{
    static Tensor RectMask(int width, int height, CropBox r, float value = 1)
    {
        var m = zeros(1, 1, height, width);
        m.narrow(2, r.Y, r.Height).narrow(3, r.X, r.Width).fill_(value);
        return m;
    }

    static Tensor RandomImage(int width, int height, ulong seed)
    {
        using var gen = new torch.Generator(seed);
        return rand([1, 3, height, width], generator: gen);
    }

    [SkippableFact]
    public void MaskBoundsCoverEveryNonzeroPixel()
    {
        using var scope = NewDisposeScope();
        var m = zeros(1, 1, 50, 70);
        m[0, 0, 12, 30] = tensor(0.01f);   // faint pixels count: the node's bounding box is of nonzero values
        m[0, 0, 40, 5] = tensor(1f);
        m[0, 0, 20, 66] = tensor(0.5f);
        Assert.Equal(new CropBox(5, 12, 62, 29), CropAndStitch.MaskBounds(m));
        Assert.Null(CropAndStitch.MaskBounds(zeros(1, 1, 8, 8)));
    }

    // image w, h; mask bounds x, y, w, h -> box x, y, w, h and working w, h (margin 32, feather 32 or as given, size 512, multiple 64)
    [SkippableTheory]
    // interior, short side rounds up to 512: square box grown centred
    [InlineData(640, 480, 300, 200, 40, 30, 32, 268, 163, 104, 104, 512, 512)]
    // wide: ideal short 118.2 -> 128, box height 84 -> 91 (3 px above, 4 below)
    [InlineData(640, 480, 100, 200, 300, 20, 32, 68, 165, 364, 91, 512, 128)]
    // portrait mirrors it
    [InlineData(480, 640, 200, 100, 20, 300, 32, 165, 68, 91, 364, 128, 512)]
    // top-left corner: margin clamped at 0, square growth stays inside
    [InlineData(640, 480, 0, 0, 10, 10, 32, 0, 0, 42, 42, 512, 512)]
    // top-right: growth of the height clamped at the top, so it all goes down
    [InlineData(640, 480, 600, 5, 40, 10, 32, 568, 0, 72, 54, 512, 384)]
    // no room for a taller box: the long side grows instead (short side rounds down to 128)
    [InlineData(400, 90, 60, 40, 240, 20, 32, 16, 8, 328, 82, 512, 128)]
    // no room either way: the box spans the image height, short side 230.4 -> 192, long 426.7 -> 448
    [InlineData(200, 90, 10, 40, 180, 20, 32, 0, 0, 200, 90, 448, 192)]
    // a feather wider than the margin widens the context so the ramp is never cut off
    [InlineData(640, 480, 300, 200, 40, 40, 48, 252, 152, 136, 136, 512, 512)]
    public void PlansTheBox(int iw, int ih, int mx, int my, int mw, int mh, int feather,
                            int bx, int by, int bw, int bh, int ww, int wh)
    {
        var plan = CropAndStitch.Plan(iw, ih, new CropBox(mx, my, mw, mh), new CropOptions { Feather = feather });
        Assert.Equal(new CropPlan(new CropBox(bx, by, bw, bh), ww, wh), plan);
    }

    [SkippableFact]
    public void PlansKeepTheirRulesOnRandomMasks()
    {
        var rng = new Random(7);
        int fallbacks = 0;
        for (int i = 0; i < 3000; i++)
        {
            int iw = rng.Next(16, 1200), ih = rng.Next(16, 1200);
            int mx = rng.Next(iw), my = rng.Next(ih);
            var bounds = new CropBox(mx, my, rng.Next(1, iw - mx + 1), rng.Next(1, ih - my + 1));
            var options = new CropOptions
            {
                ContextMargin = rng.Next(0, 80), Feather = rng.Next(0, 40),
                WorkingSize = rng.Next(1, 1100), Multiple = 8 * rng.Next(1, 9),
            };
            var (box, ww, wh) = CropAndStitch.Plan(iw, ih, bounds, options);
            string name = $"#{i} image {iw}x{ih} mask {bounds} {options} -> {box} {ww}x{wh}";

            Assert.True(box.X >= 0 && box.Y >= 0 && box.X + box.Width <= iw && box.Y + box.Height <= ih, $"{name}: outside the image");
            int grow = Math.Max(options.ContextMargin, options.Feather);
            Assert.True(box.X <= Math.Max(0, mx - grow) && box.Y <= Math.Max(0, my - grow)
                        && box.X + box.Width >= Math.Min(iw, mx + bounds.Width + grow)
                        && box.Y + box.Height >= Math.Min(ih, my + bounds.Height + grow), $"{name}: context lost");
            Assert.True(ww % options.Multiple == 0 && wh % options.Multiple == 0 && ww >= options.Multiple && wh >= options.Multiple, $"{name}: not multiples");
            Assert.True(box.Width.CompareTo(box.Height) * ww.CompareTo(wh) >= 0 && (box.Width != box.Height || ww == wh), $"{name}: orientation");

            // working sides (long, short) have the box's scale on both axes up to half a box pixel; or, when
            // the box already spans the image across, the long working side is the multiple nearest the aspect
            int l = options.WorkingLongSide, m = options.Multiple;
            int workLong = Math.Max(ww, wh), workShort = Math.Min(ww, wh);
            int boxLong = Math.Max(box.Width, box.Height), boxShort = Math.Min(box.Width, box.Height);
            bool sameScale = Math.Abs(boxLong / (double)workLong - boxShort / (double)workShort) <= 0.5 / workShort + 1e-12;
            if (sameScale && workLong == l) continue;
            fallbacks++;
            Assert.True(box.Width >= box.Height ? box.Height == ih : box.Width == iw, $"{name}: stretched without spanning the image");
            Assert.True(workLong <= l && (Math.Abs(workLong - workShort * boxLong / (double)boxShort) <= m / 2.0 || workLong == l && workShort == m),
                        $"{name}: long working side is not the nearest multiple");
        }
        output.WriteLine($"{fallbacks} of 3000 plans stretch because the image is too narrow");
    }

    [SkippableTheory]
    [InlineData(512, 64, 512)]
    [InlineData(500, 64, 512)]
    [InlineData(540, 64, 512)]
    [InlineData(544, 64, 576)]   // 8.5 multiples rounds away from zero
    [InlineData(100, 64, 128)]
    [InlineData(20, 64, 64)]     // never below one multiple
    [InlineData(1000, 8, 1000)]
    [InlineData(1003, 8, 1000)]
    public void WorkingSizeSnapsToTheMultiple(int size, int multiple, int expected) =>
        Assert.Equal(expected, new CropOptions { WorkingSize = size, Multiple = multiple }.WorkingLongSide);

    [SkippableTheory]
    [InlineData(-1, 512, 64, 32, "context margin")]
    [InlineData(32, 0, 64, 32, "working size")]
    [InlineData(32, 512, 12, 32, "size multiple")]
    [InlineData(32, 512, 0, 32, "size multiple")]
    [InlineData(32, 512, 64, -4, "feather")]
    public void RejectsBadOptions(int margin, int size, int multiple, int feather, string what)
    {
        var options = new CropOptions { ContextMargin = margin, WorkingSize = size, Multiple = multiple, Feather = feather };
        var e = Assert.Throws<UserErrorException>(() => CropAndStitch.Plan(100, 100, new CropBox(10, 10, 5, 5), options));
        Assert.StartsWith(what, e.Message);
    }

    [SkippableFact]
    public void FeatherIsOneOnTheMaskAndFallsMonotonicallyToZeroAtTheRadius()
    {
        using var scope = NewDisposeScope();
        const int radius = 12;
        var mask = RectMask(90, 70, new CropBox(30, 20, 25, 15));
        mask[0, 0, 60, 5] = tensor(0.3f);   // a faint pixel far away keeps its weight
        var f = CropAndStitch.Feather(mask, radius);
        var b = f[0, 0];
        Assert.Equal(1f, b.narrow(0, 20, 15).narrow(1, 30, 25).min().item<float>());
        Assert.Equal(0.3f, b[60, 5].item<float>());

        // along rays leaving the rectangle (right, down, diagonal), never rising, zero from the radius on
        foreach (var (dx, dy) in new[] { (1, 0), (0, 1), (1, 1) })
        {
            float previous = 1;
            for (int s = 1; s < 30; s++)
            {
                int x = 54 + dx * s, y = 34 + dy * s;
                float v = b[y, x].item<float>();
                Assert.True(v <= previous, $"ray ({dx},{dy}) step {s}: {v} > {previous}");
                double distance = Math.Sqrt(dx * dx * s * s + dy * dy * s * s);
                Assert.True(distance >= radius ? v == 0 : v > 0, $"ray ({dx},{dy}) step {s}: {v} at distance {distance:F2}");
                previous = v;
            }
        }
        // the support is exactly the pixels within the radius of the rectangle (or the faint pixel)
        long expected = 0;
        for (int y = 0; y < 70; y++)
            for (int x = 0; x < 90; x++)
            {
                double ddx = Math.Max(0, Math.Max(30 - x, x - 54)), ddy = Math.Max(0, Math.Max(20 - y, y - 34));
                if (Math.Sqrt(ddx * ddx + ddy * ddy) < radius || (x == 5 && y == 60)) expected++;
            }
        Assert.Equal(expected, (b > 0).sum().item<long>());
        Assert.True(f.max().item<float>() <= 1 && f.min().item<float>() >= 0);
        Assert.True(CropAndStitch.Feather(mask, 0).equal(mask).all().item<bool>());
    }

    [SkippableTheory]
    [InlineData(200, 150, 120, 40, 30, 25, 256, 16, 8)]   // interior, crop upscaled
    [InlineData(200, 150, 0, 110, 60, 40, 64, 8, 12)]     // bottom-left corner, crop downscaled, feather > margin
    [InlineData(97, 203, 40, 10, 13, 170, 128, 24, 6)]    // odd sizes, portrait
    public void StitchChangesOnlyTheFeatheredRegion(int w, int h, int mx, int my, int mw, int mh, int size, int margin, int feather)
    {
        using var scope = NewDisposeScope();
        var image = RandomImage(w, h, 11);
        var rect = new CropBox(mx, my, mw, mh);
        var mask = RectMask(w, h, rect);
        var options = new CropOptions { WorkingSize = size, ContextMargin = margin, Feather = feather };
        var colour = new[] { 0.3f, 0.55f, 0.7f };   // 255 * c is far from an integer, so resizing noise cannot flip a byte

        Tensor? seenImage = null, seenMask = null;
        using var result = CropAndStitch.Inpaint(image, mask, (crop, cropMask) =>
        {
            seenImage = crop.clone().MoveToOuterDisposeScope();
            seenMask = cropMask.clone().MoveToOuterDisposeScope();
            return tensor(colour).reshape(1, 3, 1, 1).expand(crop.shape).contiguous();
        }, options);

        var plan = CropAndStitch.Plan(w, h, rect, options);
        Assert.Equal(plan, new CropPlan(result.Box, result.WorkingWidth, result.WorkingHeight));
        Assert.Equal(new long[] { 1, 3, result.WorkingHeight, result.WorkingWidth }, seenImage!.shape);
        Assert.Equal(new long[] { 1, 1, result.WorkingHeight, result.WorkingWidth }, seenMask!.shape);
        Assert.True(seenMask.max().item<float>() > 0.99f && seenMask.min().item<float>() >= 0);
        Assert.Equal(new long[] { 1, 3, h, w }, result.Image.shape);

        var blend = CropAndStitch.Feather(mask, feather);
        byte[] before = ImageFiles.ToRgbBytes(image), after = ImageFiles.ToRgbBytes(result.Image);
        var support = blend[0, 0].data<float>().ToArray();
        var expectedColour = colour.Select(c => (byte)(255 * c)).ToArray();
        int untouched = 0, replaced = 0;
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w; x++)
            {
                int p = y * w + x;
                for (int c = 0; c < 3; c++)
                {
                    if (support[p] == 0) Assert.True(before[3 * p + c] == after[3 * p + c], $"({x},{y}) outside the blend changed");
                    else if (support[p] == 1) Assert.True(after[3 * p + c] == expectedColour[c], $"({x},{y}) inside the mask is {after[3 * p + c]}, not {expectedColour[c]}");
                    else
                    {
                        // the band mixes the two: the byte lies between them (one step of truncation either way)
                        int lo = Math.Min(before[3 * p + c], expectedColour[c]) - 1, hi = Math.Max(before[3 * p + c], expectedColour[c]) + 1;
                        Assert.True(after[3 * p + c] >= lo && after[3 * p + c] <= hi, $"({x},{y}) in the band is {after[3 * p + c]}, outside [{lo},{hi}]");
                    }
                }
                if (support[p] == 0) untouched++;
                else if (support[p] == 1) replaced++;
            }
        Assert.Equal(mw * mh, replaced);
        Assert.True(untouched > 0);
        // untouched pixels are copies: the floats themselves, not just the bytes
        var outside = (blend == 0).expand(1, 3, h, w);
        Assert.True(result.Image.masked_select(outside).equal(image.masked_select(outside)).all().item<bool>());
    }

    [SkippableFact]
    public void EmptyMaskIsAnError()
    {
        using var scope = NewDisposeScope();
        var e = Assert.Throws<UserErrorException>(() =>
            CropAndStitch.Inpaint(RandomImage(64, 48, 1), zeros(1, 1, 48, 64), (i, _) => i));
        Assert.Equal(CropAndStitch.EmptyMask, e.Message);
    }

    [SkippableFact]
    public void MaskOfAnotherSizeIsAnError()
    {
        using var scope = NewDisposeScope();
        var e = Assert.Throws<UserErrorException>(() =>
            CropAndStitch.Inpaint(RandomImage(64, 48, 1), ones(1, 1, 64, 48), (i, _) => i));
        Assert.Equal("mask is 48x64 but the image is 64x48: resize the mask to the image", e.Message);
    }

    [SkippableFact]
    public void WrongSizedInpaintResultIsReported()
    {
        using var scope = NewDisposeScope();
        var e = Assert.Throws<InvalidOperationException>(() =>
            CropAndStitch.Inpaint(RandomImage(64, 48, 1), RectMask(64, 48, new CropBox(10, 10, 5, 5)), (_, _) => zeros(1, 3, 8, 8),
                                  new CropOptions { WorkingSize = 128 }));
        Assert.Contains("expected [1,3,128,128]", e.Message);
    }

    [SkippableFact]
    public void InpaintsWithTheTinyModelAndKeepsTheRestByteIdentical()
    {
        if (Fixture.Instance is not { } f) { throw new SkipException(Fixture.MissingMessage); }
        var model = ModelCases.Model("sd15", diffusers: false);   // shared and cached: loaded outside the dispose scope
        using var scope = NewDisposeScope();
        var image = ImageFiles.LoadRgb(Path.Combine(f.Root, "images", "init.png"), 256, 192);
        var rect = new CropBox(100, 70, 50, 40);
        var mask = RectMask(256, 192, rect);
        var options = new CropOptions { WorkingSize = 128, ContextMargin = 16, Feather = 8 };
        var request = new GenerationRequest
        {
            Prompt = "a red cat", Seed = 3, Steps = 3, Cfg = 5, Sampler = "euler", InitImage = image, Mask = mask,
        };
        using var result = CropAndStitch.Inpaint(model, request, options);
        output.WriteLine($"box {result.Box}, working {result.WorkingWidth}x{result.WorkingHeight}");
        Assert.Equal(new CropBox(84, 49, 82, 82), result.Box);
        Assert.Equal((128, 128), (result.WorkingWidth, result.WorkingHeight));

        var support = CropAndStitch.Feather(mask, options.Feather)[0, 0].data<float>().ToArray();
        byte[] before = ImageFiles.ToRgbBytes(image), after = ImageFiles.ToRgbBytes(result.Image);
        long changedInside = 0, inside = 0;
        for (int p = 0; p < support.Length; p++)
            for (int c = 0; c < 3; c++)
            {
                if (support[p] == 0) Assert.True(before[3 * p + c] == after[3 * p + c], $"pixel {p % 256},{p / 256} outside the blend changed");
                else if (support[p] == 1)
                {
                    inside++;
                    if (Math.Abs(before[3 * p + c] - after[3 * p + c]) > 8) changedInside++;
                }
            }
        output.WriteLine($"{changedInside} of {inside} channel values inside the mask moved by more than 8/255");
        Assert.Equal(3L * rect.Width * rect.Height, inside);
        Assert.True(changedInside > inside / 2, $"only {changedInside} of {inside} values inside the mask changed");
    }
}
