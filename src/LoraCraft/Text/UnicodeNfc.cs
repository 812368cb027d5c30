using System.Globalization;
using System.Text;

namespace LoraCraft.Text;

/// <summary>
/// Unicode NFC (canonical decomposition, canonical ordering, canonical composition), as the
/// reference tokenizer's normalizer applies it. Needed because string.Normalize does nothing under
/// InvariantGlobalization; tables come from <c>UnicodeNfc.Data.cs</c>.
/// </summary>
static partial class UnicodeNfc
{
    // Hangul syllables decompose and compose algorithmically (Unicode 3.12).
    const int SBase = 0xAC00, LBase = 0x1100, VBase = 0x1161, TBase = 0x11A7;
    const int LCount = 19, VCount = 21, TCount = 28, NCount = VCount * TCount, SCount = LCount * NCount;

    sealed class Tables
    {
        public readonly Dictionary<int, (int First, int Second)> Decompositions = new(); // Second = -1 for singletons
        public readonly Dictionary<long, int> Compositions = new();
        public readonly Dictionary<int, byte> CombiningClasses = new();
    }

    static readonly Lazy<Tables> Data = new(Load);

    static Tables Load()
    {
        var t = new Tables();
        foreach (var entry in Entries(DecompositionData))
        {
            int colon = entry.IndexOf(':');
            var parts = entry[(colon + 1)..].Split(' ');
            t.Decompositions[Hex(entry[..colon])] = (Hex(parts[0]), parts.Length > 1 ? Hex(parts[1]) : -1);
        }
        var excluded = Entries(ExclusionData).Select(Hex).ToHashSet();
        foreach (var (composite, (first, second)) in t.Decompositions)
            if (second >= 0 && !excluded.Contains(composite)) t.Compositions[Key(first, second)] = composite;
        foreach (var entry in Entries(CombiningClassData))
        {
            int dash = entry.IndexOf('-'), colon = entry.IndexOf(':');
            byte cls = byte.Parse(entry[(colon + 1)..], CultureInfo.InvariantCulture);
            for (int cp = Hex(entry[..dash]); cp <= Hex(entry[(dash + 1)..colon]); cp++) t.CombiningClasses[cp] = cls;
        }
        return t;
    }

    static IEnumerable<string> Entries(string data) =>
        data.Split([';', '\n', '\r'], StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);

    static int Hex(string s) => int.Parse(s, NumberStyles.HexNumber, CultureInfo.InvariantCulture);
    static long Key(int first, int second) => ((long)first << 21) | (uint)second;

    public static string Normalize(string text)
    {
        // Everything below U+0300 is a starter that stays as it is and composes with nothing before it.
        if (!text.AsSpan().ContainsAnyExceptInRange('\0', '\u02FF')) return text;

        var t = Data.Value;
        var cps = new List<int>(text.Length + 8);
        foreach (var rune in text.EnumerateRunes()) Decompose(t, rune.Value, cps);
        SortMarks(t, cps);
        Compose(t, cps);

        var sb = new StringBuilder(text.Length);
        foreach (int cp in cps) sb.Append(char.ConvertFromUtf32(cp));
        return sb.ToString();
    }

    static void Decompose(Tables t, int cp, List<int> output)
    {
        if (cp is >= SBase and < SBase + SCount)
        {
            int s = cp - SBase;
            output.Add(LBase + s / NCount);
            output.Add(VBase + s % NCount / TCount);
            if (s % TCount != 0) output.Add(TBase + s % TCount);
        }
        else if (t.Decompositions.TryGetValue(cp, out var d))
        {
            Decompose(t, d.First, output);
            if (d.Second >= 0) Decompose(t, d.Second, output);
        }
        else output.Add(cp);
    }

    static int Ccc(Tables t, int cp) => t.CombiningClasses.TryGetValue(cp, out var c) ? c : 0;

    /// <summary>Canonical ordering: a stable sort of each run of non-starters by combining class.</summary>
    static void SortMarks(Tables t, List<int> cps)
    {
        for (int i = 1; i < cps.Count; i++)
        {
            int cp = cps[i], c = Ccc(t, cp);
            if (c == 0) continue;
            int j = i;
            for (; j > 0 && Ccc(t, cps[j - 1]) > c; j--) cps[j] = cps[j - 1];
            cps[j] = cp;
        }
    }

    static void Compose(Tables t, List<int> cps)
    {
        int starter = -1, lastClass = 0, w = 0;
        for (int i = 0; i < cps.Count; i++)
        {
            int cp = cps[i], c = Ccc(t, cp);
            // A mark is blocked from the starter by anything in between of class 0 or >= its own.
            bool blocked = starter >= 0 && w - 1 != starter && (lastClass == 0 || lastClass >= c);
            if (starter >= 0 && !blocked && TryCompose(t, cps[starter], cp, out int composite))
            {
                cps[starter] = composite;
                continue;
            }
            if (c == 0) starter = w;
            lastClass = c;
            cps[w++] = cp;
        }
        cps.RemoveRange(w, cps.Count - w);
    }

    static bool TryCompose(Tables t, int first, int second, out int composite)
    {
        if (first is >= LBase and < LBase + LCount && second is >= VBase and < VBase + VCount)
        {
            composite = SBase + ((first - LBase) * VCount + second - VBase) * TCount;
            return true;
        }
        if (first is >= SBase and < SBase + SCount && (first - SBase) % TCount == 0
            && second is > TBase and < TBase + TCount)
        {
            composite = first + second - TBase;
            return true;
        }
        return t.Compositions.TryGetValue(Key(first, second), out composite);
    }
}
