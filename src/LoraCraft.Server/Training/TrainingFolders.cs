using LoraCraft.Training;

namespace LoraCraft.Server.Training;

/// <summary>One image folder of a dataset as the Train tab lists it.</summary>
public sealed record DatasetSubset(string Folder, int? Repeats, string ClassTokens, int Images, int Captions);

/// <summary>A dataset folder of the training-data root: kohya layout (`N_class` subfolders) or flat (images in it).</summary>
public sealed record DatasetListing(string Name, string Layout, int Images, IReadOnlyList<DatasetSubset> Subsets, string? Problem);

/// <summary>
/// The server's training-data root (`--train-dir`, default DATA-DIR/train): each folder directly
/// in it is a dataset, named by its folder name. Requests name datasets, never paths; a name is
/// one folder name (no separators, no `..`, no hidden folders) and resolves inside the root only.
/// </summary>
public sealed class TrainingFolders(string root)
{
    public string Root { get; } = Path.GetFullPath(root);

    /// <summary>The datasets, by name; each with its image folders and counts (nothing is decoded).</summary>
    public IReadOnlyList<DatasetListing> List()
    {
        if (!Directory.Exists(Root)) return [];
        return Directory.EnumerateDirectories(Root).Select(Path.GetFileName).OfType<string>()
            .Where(n => !n.StartsWith('.')).Order(StringComparer.OrdinalIgnoreCase).Select(Describe).ToList();
    }

    /// <summary>The folder of dataset <paramref name="name"/>; refuses paths and unknown names (404).</summary>
    public string Resolve(string? name, string field = "dataset")
    {
        if (string.IsNullOrWhiteSpace(name)) throw new UserErrorException("no dataset named: give a folder of the training-data root") { Field = field };
        if (name.Contains('/') || name.Contains('\\') || name.Contains("..", StringComparison.Ordinal) || name.StartsWith('.') || Path.IsPathRooted(name)
            || name.IndexOfAny(Path.GetInvalidFileNameChars()) >= 0)
            throw new UserErrorException($"dataset '{name}' must be the name of a folder in the training-data root, not a path") { Field = field };
        var dir = Path.GetFullPath(Path.Combine(Root, name));
        if (!string.Equals(Path.GetDirectoryName(dir), Root, StringComparison.Ordinal) || !Directory.Exists(dir))
        {
            var known = List().Select(d => d.Name).Take(8).ToList();
            throw new UserErrorException(ErrorKind.NotFound, $"dataset '{name}' not found in the training-data root" +
                (known.Count > 0 ? $" (there: {string.Join(", ", known)})" : " (it has no folders: put one folder of images per dataset there)")) { Field = field };
        }
        return dir;
    }

    DatasetListing Describe(string name)
    {
        var dir = Path.Combine(Root, name);
        var subsets = new List<DatasetSubset>();
        string? problem = null;
        var (images, captions) = Count(dir);
        if (images > 0) subsets.Add(new DatasetSubset("", null, "", images, captions));
        foreach (var sub in Directory.EnumerateDirectories(dir).Order(StringComparer.Ordinal))
        {
            string folder = Path.GetFileName(sub);
            if (folder.StartsWith('.')) continue;
            var (n, c) = Count(sub);
            if (n == 0) continue;
            int us = folder.IndexOf('_');
            int? repeats = us > 0 && int.TryParse(folder[..us], System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out int r) && r >= 1 ? r : null;
            if (repeats is null) problem ??= $"'{folder}' has images but no repeat count: name it N_class (e.g. '10_{folder}')";
            subsets.Add(new DatasetSubset(folder, repeats, repeats is null ? "" : folder[(us + 1)..], n, c));
        }
        if (subsets.Count == 0) problem = "no images in it or in its N_class subfolders";
        string layout = images > 0 ? (subsets.Count > 1 ? "mixed" : "flat") : "kohya";
        return new DatasetListing(name, layout, subsets.Sum(s => s.Images), subsets, problem);
    }

    static (int Images, int Captions) Count(string dir)
    {
        var files = Directory.EnumerateFiles(dir).ToList();
        var images = files.Where(DatasetFolders.IsImage).ToList();
        var stems = files.Where(f => f.EndsWith(".txt", StringComparison.OrdinalIgnoreCase) || f.EndsWith(".caption", StringComparison.OrdinalIgnoreCase))
            .Select(Path.GetFileNameWithoutExtension).ToHashSet(StringComparer.Ordinal);
        return (images.Count, images.Count(i => stems.Contains(Path.GetFileNameWithoutExtension(i))));
    }
}
