using System.Collections.Concurrent;

namespace LoraCraft.Text.Embeddings;

/// <summary>
/// The embeddings one generation can use: the library's, plus those bundled in the LoRAs it
/// applies (a bundled one replaces a library one of the same name, as in A1111). Immutable;
/// the token matchers are built once per tokenizer.
/// </summary>
public sealed class EmbeddingSet
{
    public static EmbeddingSet Empty { get; } = new([]);

    readonly Dictionary<string, TextualInversion> _byName = new(StringComparer.Ordinal);
    readonly ConcurrentDictionary<ClipTokenizer, EmbeddingMatcher> _matchers = new();

    /// <summary>Later entries replace earlier ones of the same name.</summary>
    public EmbeddingSet(IEnumerable<TextualInversion> embeddings)
    {
        foreach (var e in embeddings) _byName[e.Name] = e;
    }

    public IReadOnlyCollection<TextualInversion> All => _byName.Values;
    public int Count => _byName.Count;

    public EmbeddingSet With(IEnumerable<TextualInversion> more) => new(_byName.Values.Concat(more));

    /// <summary>By exact name, else ignoring case (ComfyUI's `embedding:NAME`); a trailing extension is allowed.</summary>
    public TextualInversion? Find(string name)
    {
        foreach (var ext in EmbeddingLibrary.Extensions)
            if (name.EndsWith(ext, StringComparison.OrdinalIgnoreCase) && name.Length > ext.Length)
            {
                name = name[..^ext.Length];
                break;
            }
        if (_byName.TryGetValue(name, out var e)) return e;
        return _byName.Values.Where(v => string.Equals(v.Name, name, StringComparison.OrdinalIgnoreCase)).OrderBy(v => v.Name, StringComparer.Ordinal).FirstOrDefault();
    }

    /// <summary>A1111's lookup of embedding names among a prompt's tokens, for one tokenizer.</summary>
    public EmbeddingMatcher MatcherFor(ClipTokenizer tokenizer) => _matchers.GetOrAdd(tokenizer, t => new EmbeddingMatcher(_byName.Values, t));
}

/// <summary>
/// A1111's `find_embedding_at_position`: each name is tokenized; at a position of a prompt's
/// tokens the longest name whose tokens follow there matches. A matched refused embedding (a
/// pickle) is a clear error.
/// </summary>
public sealed class EmbeddingMatcher
{
    readonly Dictionary<int, List<(int[] Ids, TextualInversion Embedding)>> _byFirstId = new();

    public EmbeddingMatcher(IEnumerable<TextualInversion> embeddings, ClipTokenizer tokenizer)
    {
        foreach (var e in embeddings.OrderBy(e => e.Name, StringComparer.Ordinal))
        {
            var ids = tokenizer.Encode(e.Name).ToArray();
            if (ids.Length == 0) continue;
            if (!_byFirstId.TryGetValue(ids[0], out var list)) _byFirstId[ids[0]] = list = new();
            list.Add((ids, e));
        }
        foreach (var first in _byFirstId.Keys.ToList())
            _byFirstId[first] = _byFirstId[first].OrderByDescending(c => c.Ids.Length).ToList(); // stable: longest first, then by name
    }

    /// <summary>The embedding whose name's tokens start at <paramref name="position"/>, and how many tokens the name takes.</summary>
    public (TextualInversion Embedding, int NameTokens)? At(IReadOnlyList<int> tokens, int position)
    {
        if (!_byFirstId.TryGetValue(tokens[position], out var candidates)) return null;
        foreach (var (ids, embedding) in candidates)
        {
            if (position + ids.Length > tokens.Count) continue;
            bool same = true;
            for (int i = 1; i < ids.Length && same; i++) same = tokens[position + i] == ids[i];
            if (!same) continue;
            if (embedding.Problem is not null) throw new UserErrorException($"embedding '{embedding.Name}' ({embedding.Path}) {embedding.Problem}");
            if (embedding.Vectors > PromptChunk.Length)
                throw new UserErrorException($"embedding '{embedding.Name}' ({embedding.Path}) has {embedding.Vectors} vectors; at most {PromptChunk.Length} fit in a prompt chunk");
            return (embedding, ids.Length);
        }
        return null;
    }
}
