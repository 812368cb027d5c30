namespace LoraCraft.Server;

/// <summary>Images as JSON carries them: base64, with or without a `data:image/…;base64,` prefix.</summary>
public static class Base64Image
{
    public static byte[] Decode(string? text, string field)
    {
        if (string.IsNullOrWhiteSpace(text)) throw new UserErrorException($"{field}: no image data") { Field = field };
        string t = text.Trim();
        if (t.StartsWith("data:", StringComparison.OrdinalIgnoreCase))
        {
            int comma = t.IndexOf(',');
            if (comma < 0 || !t[..comma].EndsWith(";base64", StringComparison.OrdinalIgnoreCase))
                throw new UserErrorException($"{field}: a data URL must be base64 (data:image/png;base64,…)") { Field = field };
            t = t[(comma + 1)..];
        }
        if (t.StartsWith("http://", StringComparison.OrdinalIgnoreCase) || t.StartsWith("https://", StringComparison.OrdinalIgnoreCase))
            throw new UserErrorException($"{field}: images are taken as data, not fetched from URLs") { Field = field };
        try
        {
            var bytes = Convert.FromBase64String(t);
            Pipelines.ImageFiles.Size(bytes, field); // a readable image, or a clear error now
            return bytes;
        }
        catch (FormatException)
        {
            throw new UserErrorException($"{field}: not valid base64") { Field = field };
        }
    }

    public static string Encode(byte[] png) => Convert.ToBase64String(png);
}
