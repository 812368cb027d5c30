using System.Globalization;
using System.Text;
using System.Text.RegularExpressions;

namespace LoraCraft.Text;

/// <summary>One entry of a prompt schedule: <see cref="Text"/> is used up to and including sampling step <see cref="EndAtStep"/>.</summary>
public sealed record ScheduledPrompt(int EndAtStep, string Text);

/// <summary>
/// A1111's prompt editing (`modules/prompt_parser.py`, get_learned_conditioning_prompt_schedules):
/// `[from:to:when]`, `[to:when]`, `[from::when]`, alternation `[a|b|c]`, nested in any way, with
/// A1111's step rules (a `when` with a `.` is a fraction of the steps, without one a step number;
/// int() truncation; below 1 only the second text is used; `--old-scheduling`: any value below 1 is a
/// fraction) and its hires-fix variant. The texts come back as A1111 returns them: not stripped,
/// escapes and `&lt;lora:…&gt;` tags kept, emphasis brackets kept.
/// <para>
/// A1111 parses with a lark grammar whose top level also accepts stray <c>[ ] ( ) :</c>. This parser
/// gives the same result on every case lark resolves the same way in every run: a bracket that
/// closes a well-formed construct is that construct; any other bracket, colon or a construct
/// that does not close is plain text; a <c>|</c> outside an alternation, or a backslash that
/// escapes nothing, makes the whole prompt unparseable, which A1111 answers with the prompt
/// unchanged for every step. Where lark's choice varies between runs (a stray <c>]</c> or
/// <c>:</c> right after an edit) this takes the edit.
/// </para>
/// </summary>
public static partial class PromptSchedule
{
    /// <summary>
    /// Well-formed bracket nesting beyond this depth is refused (A1111 raises RecursionError a
    /// few hundred levels deep, and works at 40).
    /// </summary>
    public const int MaxNesting = 200;

    /// <summary>The schedule of <paramref name="prompt"/> for <paramref name="steps"/> sampling steps.</summary>
    /// <param name="hiresSteps">steps of a hires-fix second pass: `when` then counts from the end of the first pass.</param>
    /// <param name="oldScheduling">A1111's "use old prompt editing timelines" option.</param>
    public static IReadOnlyList<ScheduledPrompt> For(string prompt, int steps, int? hiresSteps = null, bool oldScheduling = false)
    {
        ArgumentNullException.ThrowIfNull(prompt);
        if (steps < 1) throw new UserErrorException($"steps must be 1 or more, got {steps}");
        if (hiresSteps is < 1) throw new UserErrorException($"hires steps must be 1 or more, got {hiresSteps}");
        int intOffset = 0, total = steps;
        double floatOffset = 0;
        if (hiresSteps is int h && !oldScheduling)
        {
            intOffset = steps;
            floatOffset = 1;
            total = h;
        }

        var tree = new Parser(prompt).ParsePrompt();
        if (tree is null) return [new ScheduledPrompt(total, prompt)];

        var ends = new SortedSet<int> { total };
        CollectSteps(tree, total, intOffset, floatOffset, oldScheduling, ends);
        var result = new List<ScheduledPrompt>(ends.Count);
        foreach (int end in ends)
        {
            var text = new StringBuilder();
            Render(tree, end, text);
            result.Add(new ScheduledPrompt(end, text.ToString()));
        }
        return result;
    }

    /// <summary>The text a schedule gives at sampling step <paramref name="step"/> (1-based): the first entry ending at or after it.</summary>
    public static string At(IReadOnlyList<ScheduledPrompt> schedule, int step) => schedule[IndexAt(schedule, step)].Text;

    /// <summary>Index of the entry used at 1-based <paramref name="step"/> (the last one past the end).</summary>
    public static int IndexAt(IReadOnlyList<ScheduledPrompt> schedule, int step)
    {
        for (int i = 0; i < schedule.Count; i++)
            if (step <= schedule[i].EndAtStep) return i;
        return schedule.Count - 1;
    }

    static void CollectSteps(Node node, int steps, int intOffset, double floatOffset, bool old, SortedSet<int> ends)
    {
        switch (node)
        {
            case Sequence seq:
                foreach (var item in seq.Items) CollectSteps(item, steps, intOffset, floatOffset, old, ends);
                break;
            case Edit edit:
                if (edit.Before is not null) CollectSteps(edit.Before, steps, intOffset, floatOffset, old, ends);
                CollectSteps(edit.After, steps, intOffset, floatOffset, old, ends);
                double v = double.Parse(edit.Number, NumberStyles.Float, CultureInfo.InvariantCulture);
                if (old) v = v < 1 ? v * steps : v;
                else v = edit.Number.Contains('.') ? (v - floatOffset) * steps : v - intOffset;
                // Python's int() of an infinite float raises OverflowError, and so does A1111
                if (double.IsInfinity(v)) throw new PromptSyntaxException($"the step '{edit.Number}' of a prompt edit is not a finite number");
                double truncated = Math.Truncate(v);
                edit.When = truncated >= steps ? steps : truncated <= int.MinValue ? int.MinValue : (int)truncated;
                if (edit.When >= 1) ends.Add(edit.When);
                break;
            case Alternation alt:
                foreach (var option in alt.Options)
                    if (option is not null) CollectSteps(option, steps, intOffset, floatOffset, old, ends);
                for (int s = 1; s <= steps; s++) ends.Add(s);
                break;
        }
    }

    static void Render(Node node, int step, StringBuilder text)
    {
        switch (node)
        {
            case Literal lit:
                text.Append(lit.Text);
                break;
            case Sequence seq:
                foreach (var item in seq.Items) Render(item, step, text);
                break;
            case Edit edit:
                var chosen = step <= edit.When ? edit.Before : edit.After;
                if (chosen is not null) Render(chosen, step, text);
                break;
            case Alternation alt:
                var option = alt.Options[(step - 1) % alt.Options.Count];
                if (option is not null) Render(option, step, text);
                break;
        }
    }

    abstract class Node;
    sealed class Literal(string text) : Node { public string Text { get; } = text; }
    sealed class Sequence(List<Node> items) : Node { public List<Node> Items { get; } = items; }
    sealed class Edit(Sequence? before, Sequence after, string number) : Node
    {
        public Sequence? Before { get; } = before;
        public Sequence After { get; } = after;
        public string Number { get; } = number;
        public int When { get; set; }
    }
    sealed class Alternation(List<Sequence?> options) : Node { public List<Sequence?> Options { get; } = options; }

    // lark's common.SIGNED_NUMBER (ASCII digits), with the optional WHITESPACE around it
    [GeneratedRegex(@"^\s*([+-]?(?:[0-9]+\.[0-9]*|\.[0-9]+|[0-9]+)(?:[eE][+-]?[0-9]+)?)\s*$", RegexOptions.CultureInvariant)]
    private static partial Regex NumberRx();

    /// <summary>
    /// The grammar's structure: at the top level, each opening bracket either starts a construct
    /// that is well formed all the way to its closing bracket (inside a construct nothing is
    /// stray) or is plain text; see the class remarks.
    /// </summary>
    sealed class Parser
    {
        readonly string _s;
        readonly int[] _match; // closing index of a bracket whose content nests properly, else -1

        public Parser(string s)
        {
            _s = s;
            _match = MatchBrackets(s, out int depth);
            if (depth > MaxNesting) throw new PromptSyntaxException($"brackets nest {depth} deep (more than {MaxNesting})");
        }

        /// <summary>The whole prompt, or null when A1111's grammar cannot parse it.</summary>
        public Sequence? ParsePrompt()
        {
            var items = new List<Node>();
            var text = new StringBuilder();
            int i = 0;
            while (i < _s.Length)
            {
                char c = _s[i];
                if (c is '[' or '(')
                {
                    if (TryConstruct(i, out var node, out int end))
                    {
                        Flush(text, items);
                        items.Add(node);
                        i = end;
                    }
                    else text.Append(_s[i++]);
                }
                else if (c is ']' or ')' or ':') text.Append(_s[i++]);
                else if (c == '|') return null;
                else if (c == '\\')
                {
                    if (!IsEscape(i)) return null;
                    text.Append(_s, i, 2);
                    i += 2;
                }
                else text.Append(_s[i++]);
            }
            Flush(text, items);
            return new Sequence(items);
        }

        bool IsEscape(int i) => i + 1 < _s.Length && _s[i + 1] != '\n';

        static void Flush(StringBuilder text, List<Node> items)
        {
            if (text.Length == 0) return;
            items.Add(new Literal(text.ToString()));
            text.Clear();
        }

        /// <summary>Items up to the next <c>: | ] )</c> at this level; null when something inside is not well formed.</summary>
        Sequence? ParseInner(ref int i)
        {
            var items = new List<Node>();
            var text = new StringBuilder();
            while (i < _s.Length)
            {
                char c = _s[i];
                if (c is ':' or '|' or ']' or ')') break;
                if (c is '[' or '(')
                {
                    if (!TryConstruct(i, out var node, out int end)) return null;
                    Flush(text, items);
                    items.Add(node);
                    i = end;
                }
                else if (c == '\\')
                {
                    if (!IsEscape(i)) return null;
                    text.Append(_s, i, 2);
                    i += 2;
                }
                else text.Append(_s[i++]);
            }
            Flush(text, items);
            return new Sequence(items);
        }

        /// <summary>Emphasis `(p)`, `(p:p)`, `[p]`, an edit `[p:p:N]` / `[p:N]`, or an alternation `[p|p…]` at <paramref name="start"/>.</summary>
        bool TryConstruct(int start, out Node node, out int end)
        {
            node = null!;
            end = -1;
            if (_match[start] < 0) return false;
            char open = _s[start];
            var parts = new List<Sequence>();
            var starts = new List<int>();
            var separators = new List<char>();
            int i = start + 1;
            char close;
            while (true)
            {
                starts.Add(i);
                var part = ParseInner(ref i);
                if (part is null || i >= _s.Length) return false;
                parts.Add(part);
                char c = _s[i++];
                if (c is ':' or '|') separators.Add(c);
                else { close = c; break; }
            }
            end = i;
            bool pipes = separators.Contains('|'), colons = separators.Contains(':');
            if (open == '(')
            {
                if (close != ')' || pipes || separators.Count > 1) return false;
                node = separators.Count == 0
                    ? new Sequence([new Literal("("), parts[0], new Literal(")")])
                    : new Sequence([new Literal("("), parts[0], new Literal(":"), parts[1], new Literal(")")]);
                return true;
            }
            if (close != ']' || (pipes && colons)) return false;
            if (pipes)
            {
                // an empty option is lark's missing [prompt]: it renders as nothing either way
                node = new Alternation(parts.Select(p => p.Items.Count == 0 ? null : p).ToList());
                return true;
            }
            if (separators.Count == 0)
            {
                node = new Sequence([new Literal("["), parts[0], new Literal("]")]);
                return true;
            }
            if (separators.Count > 2) return false;
            var number = NumberRx().Match(_s[starts[^1]..(end - 1)]);
            if (!number.Success) return false;
            node = separators.Count == 1
                ? new Edit(null, parts[0], number.Groups[1].Value)
                : new Edit(parts[0], parts[1], number.Groups[1].Value);
            return true;
        }

        /// <summary>
        /// For each <c>[</c> / <c>(</c>, where its matching closing bracket is when everything in
        /// between nests properly (escaped brackets do not count), and the deepest such nesting.
        /// A closing bracket of the wrong kind spoils every bracket still open.
        /// </summary>
        static int[] MatchBrackets(string s, out int maxDepth)
        {
            var match = new int[s.Length];
            Array.Fill(match, -1);
            var open = new List<int>();
            var depthOf = new Dictionary<int, int>();
            maxDepth = 0;
            for (int i = 0; i < s.Length; i++)
            {
                char c = s[i];
                if (c == '\\') { i++; continue; }
                if (c is '[' or '(') open.Add(i);
                else if (c is ']' or ')')
                {
                    if (open.Count == 0) continue;
                    int top = open[^1];
                    if ((c == ']') != (s[top] == '['))
                    {
                        open.Clear();
                        continue;
                    }
                    open.RemoveAt(open.Count - 1);
                    match[top] = i;
                    // depth of a matched pair: one more than the deepest pair it encloses
                    int inner = depthOf.TryGetValue(top, out int d) ? d : 0;
                    int depth = inner + 1;
                    maxDepth = Math.Max(maxDepth, depth);
                    if (open.Count > 0)
                    {
                        int parent = open[^1];
                        depthOf[parent] = Math.Max(depthOf.GetValueOrDefault(parent), depth);
                    }
                }
            }
            return match;
        }
    }
}
