using System.Collections.Concurrent;
using System.Text;
using System.Text.Json;

namespace LoraCraft.Text;

/// <summary>
/// CLIP's byte-level BPE tokenizer, giving the ids transformers' CLIPTokenizer gives: text is
/// normalized and split by <see cref="ClipPreTokenizer"/>, each piece's UTF-8 bytes become GPT-2
/// byte symbols, <c>&lt;/w&gt;</c> marks the last symbol of a piece, and merges apply by rank.
/// Thread-safe; BPE results are cached per piece.
/// </summary>
public sealed class ClipTokenizer
{
    public const string StartToken = "<|startoftext|>";
    public const string EndToken = "<|endoftext|>";

    // The reference stops caching at a bound too: arbitrary input must not grow memory forever.
    const int CacheCapacity = 100_000;

    readonly Dictionary<int, string> _tokens = new();
    readonly Dictionary<long, (int Rank, int Merged)> _merges;
    readonly int[] _byteIds, _byteEndIds; // id of each byte's symbol, alone and with </w>
    readonly ConcurrentDictionary<string, int[]> _cache = new(StringComparer.Ordinal);
    readonly ConcurrentDictionary<string, int[]>.AlternateLookup<ReadOnlySpan<char>> _cacheBySpan;
    int _cacheCount;

    public int StartId { get; }
    public int EndId { get; }
    public int VocabSize { get; }

    ClipTokenizer(Dictionary<string, int> vocab, IEnumerable<(string Left, string Right, string Where)> merges, string source)
    {
        VocabSize = vocab.Count;
        StartId = vocab.TryGetValue(StartToken, out int s) ? s : throw new UserErrorException($"{source}: vocabulary has no {StartToken}");
        EndId = vocab.TryGetValue(EndToken, out int e) ? e : throw new UserErrorException($"{source}: vocabulary has no {EndToken}");
        foreach (var (token, id) in vocab) _tokens[id] = token;

        _merges = new();
        foreach (var (left, right, where) in merges)
        {
            if (!vocab.TryGetValue(left, out int l) || !vocab.TryGetValue(right, out int r) || !vocab.TryGetValue(left + right, out int m))
                throw new UserErrorException($"{where}: merge '{left} {right}' uses a token missing from the vocabulary");
            _merges.TryAdd(Pair(l, r), (_merges.Count, m)); // a repeated merge keeps its first rank
        }

        // Symbols the vocabulary lacks become the unknown token, which CLIP sets to <|endoftext|>.
        _byteIds = new int[256];
        _byteEndIds = new int[256];
        for (int b = 0; b < 256; b++)
        {
            string symbol = ByteSymbols[b].ToString();
            _byteIds[b] = vocab.GetValueOrDefault(symbol, EndId);
            _byteEndIds[b] = vocab.GetValueOrDefault(symbol + "</w>", EndId);
        }
        _cacheBySpan = _cache.GetAlternateLookup<ReadOnlySpan<char>>();
    }

    /// <summary>
    /// Loads <c>vocab.json</c> + <c>merges.txt</c> from <paramref name="dir"/>, or else a Hugging Face
    /// <c>tokenizer.json</c>.
    /// </summary>
    public static ClipTokenizer FromDirectory(string dir)
    {
        if (!Directory.Exists(dir)) throw new UserErrorException($"tokenizer folder not found: {dir}");
        string vocab = Path.Combine(dir, "vocab.json"), merges = Path.Combine(dir, "merges.txt"), json = Path.Combine(dir, "tokenizer.json");
        if (File.Exists(vocab) && File.Exists(merges)) return FromFiles(vocab, merges);
        if (File.Exists(json)) return FromTokenizerJson(json);
        throw new UserErrorException($"no CLIP tokenizer in {dir}: expected vocab.json and merges.txt, or tokenizer.json");
    }

    public static ClipTokenizer FromFiles(string vocabJson, string mergesTxt)
    {
        var vocab = ReadJson(vocabJson, root => root.Deserialize<Dictionary<string, int>>()
            ?? throw new JsonException("null"));
        return new ClipTokenizer(vocab, ReadMergesTxt(mergesTxt), vocabJson);
    }

    static ClipTokenizer FromTokenizerJson(string path)
    {
        var (vocab, merges) = ReadJson(path, root =>
        {
            var model = root.GetProperty("model");
            var vocab = model.GetProperty("vocab").Deserialize<Dictionary<string, int>>() ?? throw new JsonException("null vocab");
            // Specials usually sit in model.vocab too; older exports keep them only in added_tokens.
            if (root.TryGetProperty("added_tokens", out var added) && added.ValueKind == JsonValueKind.Array)
                foreach (var t in added.EnumerateArray())
                    vocab.TryAdd(Text(t.GetProperty("content")), t.GetProperty("id").GetInt32());
            var merges = new List<(string, string, string)>();
            int n = 0;
            foreach (var m in model.GetProperty("merges").EnumerateArray())
            {
                string where = $"{path}: model.merges[{n++}]";
                var pair = m.ValueKind == JsonValueKind.Array
                    ? m.EnumerateArray().Select(Text).ToArray()
                    : Text(m).Split(' ');
                if (pair.Length != 2) throw new UserErrorException($"{where}: expected two tokens");
                merges.Add((pair[0], pair[1], where));
            }
            return (vocab, merges);
        });
        return new ClipTokenizer(vocab, merges, path);
    }

    static string Text(JsonElement e) => e.GetString() ?? throw new JsonException("expected a string, got null");

    static T ReadJson<T>(string path, Func<JsonElement, T> read)
    {
        try
        {
            using var doc = JsonDocument.Parse(File.ReadAllBytes(path));
            return read(doc.RootElement);
        }
        catch (Exception e) when (e is JsonException or KeyNotFoundException or InvalidOperationException or FormatException)
        {
            throw new UserErrorException($"{path}: not a valid tokenizer file ({e.Message})", e);
        }
    }

    static List<(string, string, string)> ReadMergesTxt(string path)
    {
        var merges = new List<(string, string, string)>();
        int lineNo = 0;
        foreach (var line in File.ReadLines(path))
        {
            lineNo++;
            if (line.Length == 0 || (lineNo == 1 && line.StartsWith("#version", StringComparison.Ordinal))) continue;
            var parts = line.Split(' ');
            if (parts.Length != 2) throw new UserErrorException($"{path}:{lineNo}: expected two tokens separated by one space");
            merges.Add((parts[0], parts[1], $"{path}:{lineNo}"));
        }
        return merges;
    }

    /// <summary>BPE ids of <paramref name="text"/>, without start and end tokens.</summary>
    public IReadOnlyList<int> Encode(string text)
    {
        var ids = new List<int>();
        EncodeInto(text, ids);
        return ids;
    }

    /// <summary>Start token, the ids of <paramref name="text"/>, end token; no truncation or padding.</summary>
    public int[] EncodeWithSpecials(string text)
    {
        var ids = new List<int> { StartId };
        EncodeInto(text, ids);
        ids.Add(EndId);
        return ids.ToArray();
    }

    /// <summary>
    /// Exactly <paramref name="maxLength"/> ids: start token, the text's ids cut to maxLength - 2, end token,
    /// then <paramref name="padId"/> (default: the end token), as the text encoders are fed.
    /// </summary>
    public int[] EncodeForModel(string text, int maxLength = 77, int? padId = null)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(maxLength, 2);
        var ids = new List<int>();
        EncodeInto(text, ids);
        var result = new int[maxLength];
        Array.Fill(result, padId ?? EndId);
        result[0] = StartId;
        int n = Math.Min(ids.Count, maxLength - 2);
        ids.CopyTo(0, result, 1, n);
        result[n + 1] = EndId;
        return result;
    }

    /// <summary>The vocabulary entry of <paramref name="id"/> in its byte-symbol spelling, e.g. <c>cat&lt;/w&gt;</c>.</summary>
    public string TokenString(int id) =>
        _tokens.TryGetValue(id, out var t) ? t : throw new ArgumentOutOfRangeException(nameof(id), id, "not in the vocabulary");

    internal int CachedWordCount => Volatile.Read(ref _cacheCount);

    /// <summary>Forgets cached BPE results, so that a benchmark can measure a cold tokenizer.</summary>
    internal void ClearCache()
    {
        _cache.Clear();
        Interlocked.Exchange(ref _cacheCount, 0);
    }

    void EncodeInto(string text, List<int> ids)
    {
        string normalized = ClipPreTokenizer.Normalize(text);
        var pieces = new List<Range>();
        // Special tokens are cut out first, as transformers does with added tokens; the reference
        // normalizes before matching them, so they are recognised in any letter case.
        int pos = 0;
        while (pos <= normalized.Length)
        {
            var (at, special, id) = NextSpecial(normalized, pos);
            ClipPreTokenizer.Split(normalized.AsSpan(pos, at - pos), pos, pieces);
            foreach (var piece in pieces) AppendPiece(normalized.AsSpan(piece), ids);
            pieces.Clear();
            if (special == 0) break;
            ids.Add(id);
            pos = at + special;
        }
    }

    (int At, int Length, int Id) NextSpecial(string text, int from)
    {
        int start = text.IndexOf(StartToken, from, StringComparison.Ordinal);
        int end = text.IndexOf(EndToken, from, StringComparison.Ordinal);
        if (start < 0 && end < 0) return (text.Length, 0, 0);
        return start >= 0 && (end < 0 || start < end) ? (start, StartToken.Length, StartId) : (end, EndToken.Length, EndId);
    }

    void AppendPiece(ReadOnlySpan<char> piece, List<int> ids)
    {
        if (!_cacheBySpan.TryGetValue(piece, out var cached))
        {
            cached = Bpe(piece);
            // Count is approximate under races; it only has to bound the cache.
            if (Volatile.Read(ref _cacheCount) < CacheCapacity && _cacheBySpan.TryAdd(piece, cached))
                Interlocked.Increment(ref _cacheCount);
        }
        ids.AddRange(cached);
    }

    /// <summary>Merges the piece's byte symbols: always the lowest-ranked adjacent pair, all its occurrences left to right.</summary>
    int[] Bpe(ReadOnlySpan<char> piece)
    {
        var bytes = new byte[Encoding.UTF8.GetByteCount(piece)];
        Encoding.UTF8.GetBytes(piece, bytes);
        var word = new int[bytes.Length];
        for (int i = 0; i < bytes.Length; i++) word[i] = (i == bytes.Length - 1 ? _byteEndIds : _byteIds)[bytes[i]];
        int n = word.Length;
        while (n > 1)
        {
            int best = -1, bestRank = int.MaxValue, merged = 0;
            for (int i = 0; i < n - 1; i++)
                if (_merges.TryGetValue(Pair(word[i], word[i + 1]), out var m) && m.Rank < bestRank)
                    (best, bestRank, merged) = (i, m.Rank, m.Merged);
            if (best < 0) break;
            int left = word[best], right = word[best + 1], w = best;
            for (int i = best; i < n;)
            {
                if (i < n - 1 && word[i] == left && word[i + 1] == right) { word[w++] = merged; i += 2; }
                else word[w++] = word[i++];
            }
            n = w;
        }
        return word[..n];
    }

    static long Pair(int left, int right) => ((long)left << 32) | (uint)right;

    /// <summary>
    /// GPT-2's byte-to-symbol table: printable Latin-1 bytes stand for themselves, the other 68 bytes
    /// map to U+0100 onwards in byte order, so every byte has a visible, non-space symbol.
    /// </summary>
    static readonly char[] ByteSymbols = BuildByteSymbols();

    /// <summary>The symbol standing for byte <paramref name="b"/> in vocabularies (for writing one).</summary>
    internal static char ByteSymbol(byte b) => ByteSymbols[b];

    static char[] BuildByteSymbols()
    {
        var table = new char[256];
        int next = 256;
        for (int b = 0; b < 256; b++)
        {
            bool printable = b is >= '!' and <= '~' or >= 0xA1 and <= 0xAC or >= 0xAE and <= 0xFF;
            table[b] = (char)(printable ? b : next++);
        }
        return table;
    }
}
