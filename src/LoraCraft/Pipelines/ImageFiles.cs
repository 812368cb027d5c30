using System.Buffers.Binary;
using System.IO.Hashing;
using System.Text;
using SkiaSharp;
using TorchSharp;
using static TorchSharp.torch;

namespace LoraCraft.Pipelines;

/// <summary>
/// PNG in and out: images as float tensors [1,3,H,W] in [0,1], masks as [1,1,H,W], and the
/// A1111 `parameters` text chunk that other tools read.
/// </summary>
public static class ImageFiles
{
    public const string ParametersKey = "parameters";

    /// <summary>RGB image as [1,3,H,W] = bytes / 255, resized (high quality) to width x height when given.</summary>
    public static Tensor LoadRgb(string path, int? width = null, int? height = null) => Decode(ReadImage(path), path, width, height, Channel.Rgb);

    /// <summary>Grayscale mask as [1,1,H,W] in [0,1]; white = repaint. Uses the luma of RGB masks.</summary>
    public static Tensor LoadMask(string path, int? width = null, int? height = null) => Decode(ReadImage(path), path, width, height, Channel.Luma);

    /// <summary>The same from encoded bytes (PNG, JPEG, WebP, BMP, GIF); <paramref name="what"/> names it in errors.</summary>
    public static Tensor DecodeRgb(byte[] encoded, string what, int? width = null, int? height = null) => Decode(encoded, what, width, height, Channel.Rgb);

    public static Tensor DecodeMask(byte[] encoded, string what, int? width = null, int? height = null) => Decode(encoded, what, width, height, Channel.Luma);

    /// <summary>1 − alpha as [1,1,H,W] (ComfyUI's LoadImage MASK), or null when the image has no alpha.</summary>
    public static Tensor? DecodeAlphaMask(byte[] encoded, string what)
    {
        using var codec = Codec(encoded, what);
        if (codec.Info.AlphaType == SKAlphaType.Opaque) return null;
        return Decode(encoded, what, null, null, Channel.InverseAlpha);
    }

    /// <summary>Width and height of an image file without decoding its pixels.</summary>
    public static (int Width, int Height) Size(string path)
    {
        var bytes = ReadImage(path);
        return Size(bytes, path);
    }

    public static (int Width, int Height) Size(byte[] encoded, string what)
    {
        using var codec = Codec(encoded, what);
        return (codec.Info.Width, codec.Info.Height);
    }

    static byte[] ReadImage(string path) =>
        File.Exists(path) ? File.ReadAllBytes(path) : throw new FileNotFoundException($"image not found: {path}", path);

    static SKCodec Codec(byte[] encoded, string what)
    {
        // the codec owns the stream it reads from
        var stream = new SKMemoryStream(encoded);
        var codec = SKCodec.Create(stream);
        if (codec is null)
        {
            stream.Dispose();
            throw new UserErrorException($"{what}: not a readable image");
        }
        return codec;
    }

    enum Channel { Rgb, Luma, InverseAlpha }

    static Tensor Decode(byte[] encoded, string what, int? width, int? height, Channel channel)
    {
        // decoded straight into unpremultiplied RGBA, whatever the file holds
        using var codec = Codec(encoded, what);
        var info = new SKImageInfo(codec.Info.Width, codec.Info.Height, SKColorType.Rgba8888, SKAlphaType.Unpremul);
        using var rgba = new SKBitmap(info);
        var status = codec.GetPixels(info, rgba.GetPixels());
        if (status is not (SKCodecResult.Success or SKCodecResult.IncompleteInput))
            throw new UserErrorException($"{what}: the image cannot be decoded ({status})");
        var bitmap = rgba;
        SKBitmap? resized = null;
        if ((width ?? rgba.Width) != rgba.Width || (height ?? rgba.Height) != rgba.Height)
        {
            resized = rgba.Resize(new SKImageInfo(width!.Value, height!.Value, SKColorType.Rgba8888, SKAlphaType.Unpremul),
                                  new SKSamplingOptions(SKCubicResampler.Mitchell))
                      ?? throw new UserErrorException($"{what}: cannot resize to {width}x{height}");
            bitmap = resized;
        }
        try
        {
            int w = bitmap.Width, h = bitmap.Height;
            var px = bitmap.GetPixelSpan();
            int planes = channel == Channel.Rgb ? 3 : 1;
            var data = new float[planes * h * w];
            for (int i = 0; i < w * h; i++)
            {
                byte r = px[4 * i], g = px[4 * i + 1], b = px[4 * i + 2], a = px[4 * i + 3];
                switch (channel)
                {
                    case Channel.Rgb:
                        data[i] = r / 255f;
                        data[h * w + i] = g / 255f;
                        data[2 * h * w + i] = b / 255f;
                        break;
                    case Channel.Luma:
                        data[i] = (r == g && g == b ? r : 0.299f * r + 0.587f * g + 0.114f * b) / 255f;
                        break;
                    default:
                        data[i] = 1 - a / 255f;
                        break;
                }
            }
            return torch.tensor(data, [1, planes, h, w]);
        }
        finally
        {
            resized?.Dispose();
        }
    }

    /// <summary>
    /// [1,3,H,W] in [0,1] -> 8-bit RGB, truncating like ComfyUI and A1111 (255 * x, clipped), with
    /// one difference: 1e-4 is added first, so a value read from an 8-bit file (k / 255 in float32,
    /// which times 255 can land a hair below k) is written back as k, not k − 1 — pixels an
    /// inpainting leaves alone stay byte for byte what they were.
    /// </summary>
    public static byte[] ToRgbBytes(Tensor image)
    {
        using var scope = NewDisposeScope();
        var hwc = image[0].Clamp(0, 1).Mul(255).Add(1e-4).Clamp(0, 255).to(ScalarType.Byte).permute(1, 2, 0).contiguous();
        return hwc.data<byte>().ToArray();
    }

    /// <summary>Writes a PNG (temp file, then rename) with optional text chunks.</summary>
    public static void SavePng(string path, Tensor image, IReadOnlyDictionary<string, string>? text = null) =>
        AtomicFile.WriteAllBytes(path, EncodePng(image, text));

    /// <summary>A PNG of [1,3,H,W] in [0,1] (or [1,1,H,W], written grey) with optional text chunks.</summary>
    public static byte[] EncodePng(Tensor image, IReadOnlyDictionary<string, string>? text = null)
    {
        using var rgbImage = image.shape[1] == 1 ? image.expand(-1, 3, -1, -1) : image.alias();
        int h = (int)image.shape[2], w = (int)image.shape[3];
        var rgb = ToRgbBytes(rgbImage);
        using var bitmap = new SKBitmap(new SKImageInfo(w, h, SKColorType.Rgba8888, SKAlphaType.Opaque));
        var pixels = bitmap.GetPixelSpan();
        for (int i = 0; i < w * h; i++)
        {
            pixels[4 * i] = rgb[3 * i];
            pixels[4 * i + 1] = rgb[3 * i + 1];
            pixels[4 * i + 2] = rgb[3 * i + 2];
            pixels[4 * i + 3] = 255;
        }
        using var encoded = bitmap.Encode(SKEncodedImageFormat.Png, 100) ?? throw new InvalidOperationException("PNG encoding failed");
        var png = encoded.ToArray();
        return text is { Count: > 0 } ? InsertTextChunks(png, text) : png;
    }

    /// <summary>Adds tEXt chunks (iTXt when the value is not Latin-1, as PIL does) right after IHDR.</summary>
    public static byte[] InsertTextChunks(byte[] png, IReadOnlyDictionary<string, string> text)
    {
        const int ihdrEnd = 8 + 8 + 13 + 4;
        using var ms = new MemoryStream();
        ms.Write(png, 0, ihdrEnd);
        foreach (var (key, value) in text)
        {
            bool latin1 = value.All(ch => ch <= 0xFF);
            byte[] body = latin1
                ? [.. Encoding.Latin1.GetBytes(key), 0, .. Encoding.Latin1.GetBytes(value)]
                : [.. Encoding.Latin1.GetBytes(key), 0, 0, 0, 0, 0, .. Encoding.UTF8.GetBytes(value)];
            WriteChunk(ms, latin1 ? "tEXt" : "iTXt", body);
        }
        ms.Write(png, ihdrEnd, png.Length - ihdrEnd);
        return ms.ToArray();
    }

    static void WriteChunk(Stream s, string type, byte[] body)
    {
        Span<byte> len = stackalloc byte[4];
        BinaryPrimitives.WriteInt32BigEndian(len, body.Length);
        s.Write(len);
        var typeBytes = Encoding.ASCII.GetBytes(type);
        s.Write(typeBytes);
        s.Write(body);
        var crc = new Crc32();
        crc.Append(typeBytes);
        crc.Append(body);
        Span<byte> c = stackalloc byte[4];
        BinaryPrimitives.WriteUInt32BigEndian(c, crc.GetCurrentHashAsUInt32());
        s.Write(c);
    }

    /// <summary>Text chunks (tEXt, iTXt uncompressed, zTXt) of a PNG file.</summary>
    public static Dictionary<string, string> ReadTextChunks(string path) => ReadTextChunks(File.ReadAllBytes(path), path);

    /// <summary>Text chunks of PNG bytes; <paramref name="path"/> names them in errors.</summary>
    public static Dictionary<string, string> ReadTextChunks(byte[] bytes, string path)
    {
        var result = new Dictionary<string, string>();
        if (bytes.Length < 8 || !bytes.AsSpan(0, 8).SequenceEqual(new byte[] { 137, 80, 78, 71, 13, 10, 26, 10 }))
            throw new UserErrorException($"{path}: not a PNG file");
        int pos = 8;
        while (pos + 8 <= bytes.Length)
        {
            int len = BinaryPrimitives.ReadInt32BigEndian(bytes.AsSpan(pos));
            if (len < 0 || pos + 12 + (long)len > bytes.Length) throw new UserErrorException($"{path}: truncated PNG chunk at byte {pos}");
            string type = Encoding.ASCII.GetString(bytes, pos + 4, 4);
            var body = bytes.AsSpan(pos + 8, len);
            int nul = body.IndexOf((byte)0);
            if (nul > 0)
            {
                string key = Encoding.Latin1.GetString(body[..nul]);
                if (type == "tEXt") result[key] = Encoding.Latin1.GetString(body[(nul + 1)..]);
                else if (type == "zTXt") result[key] = Inflate(body[(nul + 2)..]);
                else if (type == "iTXt")
                {
                    bool compressed = body[nul + 1] == 1;
                    var rest = body[(nul + 3)..];
                    int langEnd = rest.IndexOf((byte)0);
                    rest = rest[(langEnd + 1)..];
                    int transEnd = rest.IndexOf((byte)0);
                    rest = rest[(transEnd + 1)..];
                    result[key] = compressed ? Inflate(rest) : Encoding.UTF8.GetString(rest);
                }
            }
            if (type == "IEND") break;
            pos += 12 + len;
        }
        return result;
    }

    static string Inflate(ReadOnlySpan<byte> data)
    {
        using var input = new MemoryStream(data.ToArray());
        using var z = new System.IO.Compression.ZLibStream(input, System.IO.Compression.CompressionMode.Decompress);
        using var reader = new StreamReader(z, Encoding.UTF8);
        return reader.ReadToEnd();
    }
}

/// <summary>Writes a file so that readers never see half of it: temp file in the same folder, then rename.</summary>
public static class AtomicFile
{
    public static void WriteAllBytes(string path, byte[] bytes)
    {
        var full = Path.GetFullPath(path);
        var dir = Path.GetDirectoryName(full)!;
        if (!Directory.Exists(dir)) throw new DirectoryNotFoundException($"output folder does not exist: {dir}");
        var tmp = Path.Combine(dir, $".{Path.GetFileName(full)}.{Guid.NewGuid():N}.tmp");
        try
        {
            File.WriteAllBytes(tmp, bytes);
            File.Move(tmp, full, overwrite: true);
        }
        finally
        {
            if (File.Exists(tmp)) File.Delete(tmp);
        }
    }
}
