using System.Globalization;
using System.Text;

namespace LoraCraft.Text;

/// <summary>
/// The text side of CLIP tokenization, as transformers' CLIPTokenizer does it: NFC, lower case,
/// then the CLIP split pattern
/// <c>'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+</c> with whitespace dropped.
/// </summary>
/// <remarks>
/// The pattern is matched by hand rather than with .NET Regex because Regex classifies UTF-16
/// code units: a letter outside the BMP (CJK extension B, mathematical letters) would be two
/// surrogates of category Cs and land in the punctuation class instead of <c>\p{L}</c>.
/// The reference also collapses whitespace runs to one space; that changes no token because the
/// pattern never matches whitespace, so it is not done here.
/// </remarks>
static class ClipPreTokenizer
{
    public static string Normalize(string text)
    {
        var lower = UnicodeNfc.Normalize(text).ToLowerInvariant();
        // The reference lowercases with full case mapping; U+0130 is the one character whose
        // lower case is two code points, and .NET leaves it as it is.
        return lower.Contains('\u0130') ? lower.Replace("\u0130", "i\u0307", StringComparison.Ordinal) : lower;
    }

    enum CharClass { Space, Letter, Number, Other }

    /// <summary>Appends the pieces of <paramref name="text"/> (offsets relative to <paramref name="offset"/>).</summary>
    public static void Split(ReadOnlySpan<char> text, int offset, List<Range> pieces)
    {
        int i = 0;
        while (i < text.Length)
        {
            if (text[i] == '\'' && ContractionLength(text[(i + 1)..]) is > 0 and var contraction)
            {
                pieces.Add(new Range(offset + i, offset + i + contraction));
                i += contraction;
                continue;
            }
            var cls = Classify(text[i..], out int width);
            int start = i;
            i += width;
            switch (cls)
            {
                case CharClass.Space:
                    continue;
                case CharClass.Number:
                    break; // one digit per piece
                default:
                    while (i < text.Length && Classify(text[i..], out width) == cls) i += width;
                    break;
            }
            pieces.Add(new Range(offset + start, offset + i));
        }
    }

    /// <summary>Length of the apostrophe contraction ('s 't 're 've 'm 'll 'd) whose letters start <paramref name="rest"/>, or 0.</summary>
    static int ContractionLength(ReadOnlySpan<char> rest)
    {
        if (rest.IsEmpty) return 0;
        switch (rest[0])
        {
            case 's' or 't' or 'm' or 'd':
                return 2;
            case 'r' or 'v' when rest.Length > 1 && rest[1] == 'e':
            case 'l' when rest.Length > 1 && rest[1] == 'l':
                return 3;
            default:
                return 0;
        }
    }

    static CharClass Classify(ReadOnlySpan<char> text, out int width)
    {
        // A lone surrogate decodes to U+FFFD (a symbol), as UTF-8 encoding will turn it into.
        Rune.DecodeFromUtf16(text, out var rune, out width);
        int cp = rune.Value;
        if (cp < 0x80)
        {
            if (char.IsAsciiLetter((char)cp)) return CharClass.Letter;
            if (char.IsAsciiDigit((char)cp)) return CharClass.Number;
            return cp is ' ' or (>= '\t' and <= '\r') ? CharClass.Space : CharClass.Other;
        }
        return Rune.GetUnicodeCategory(rune) switch
        {
            UnicodeCategory.UppercaseLetter or UnicodeCategory.LowercaseLetter or UnicodeCategory.TitlecaseLetter
                or UnicodeCategory.ModifierLetter or UnicodeCategory.OtherLetter => CharClass.Letter,
            UnicodeCategory.DecimalDigitNumber or UnicodeCategory.LetterNumber or UnicodeCategory.OtherNumber => CharClass.Number,
            // \s of the reference's regex engine: separators plus NEL (U+0085).
            UnicodeCategory.SpaceSeparator or UnicodeCategory.LineSeparator or UnicodeCategory.ParagraphSeparator => CharClass.Space,
            _ => cp == 0x85 ? CharClass.Space : CharClass.Other,
        };
    }
}
