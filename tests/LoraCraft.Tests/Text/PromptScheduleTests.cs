using System.Text.Json;
using LoraCraft.Text;
using Xunit;
using Xunit.Abstractions;

namespace LoraCraft.Tests.Text;

/// <summary>
/// Every case of more/prompt-schedules.json (A1111's prompt_parser.py run as reference):
/// schedules, the ambiguous ones (any variant A1111 produced), hires-fix and AND cases.
/// </summary>
public class PromptScheduleTests(ITestOutputHelper output)
{
    static JsonElement Data()
    {
        var root = FixturePaths.Root ?? throw new SkipException(Conformance.Fixture.MissingMessage);
        var path = Path.Combine(root, "more", "prompt-schedules.json");
        if (!File.Exists(path)) throw new SkipException($"{path} not found: skipped");
        using var doc = JsonDocument.Parse(File.ReadAllBytes(path));
        return doc.RootElement.Clone();
    }

    static List<(int, string)> Read(JsonElement schedule) =>
        schedule.EnumerateArray().Select(e => (e[0].GetInt32(), e[1].GetString()!)).ToList();

    static List<(int, string)> Ours(string prompt, int steps, int? hires, bool old) =>
        PromptSchedule.For(prompt, steps, hires, old).Select(s => (s.EndAtStep, s.Text)).ToList();

    static string Show(IEnumerable<(int, string)> s) => "[" + string.Join(", ", s.Select(e => $"[{e.Item1}, {JsonSerializer.Serialize(e.Item2)}]")) + "]";

    [SkippableFact]
    public void EveryScheduleCase()
    {
        var failures = new List<string>();
        int n = 0;
        foreach (var c in Data().GetProperty("cases").EnumerateArray())
        {
            n++;
            string prompt = c.GetProperty("prompt").GetString()!;
            int steps = c.GetProperty("steps").GetInt32();
            bool old = c.GetProperty("use_old_scheduling").GetBoolean();
            string label = $"{JsonSerializer.Serialize(prompt)[..Math.Min(80, JsonSerializer.Serialize(prompt).Length)]} steps {steps}{(old ? " old" : "")}";
            if (c.TryGetProperty("error", out var error))
            {
                // A1111 raises (OverflowError, RecursionError): a clear user error here
                try
                {
                    var got = Ours(prompt, steps, null, old);
                    failures.Add($"{label}: expected {error.GetString()}, got {Show(got)}");
                }
                catch (PromptSyntaxException) { }
                continue;
            }
            var expected = Read(c.GetProperty("schedule"));
            var ours = Ours(prompt, steps, null, old);
            if (!ours.SequenceEqual(expected)) failures.Add($"{label}: expected {Show(expected)}, got {Show(ours)}");
        }
        output.WriteLine($"{n} cases, {failures.Count} failing");
        Assert.True(n >= 400, $"only {n} cases read");
        Assert.True(failures.Count == 0, string.Join("\n", failures));
    }

    [SkippableFact]
    public void AmbiguousCasesGiveOneOfA1111sVariants()
    {
        var failures = new List<string>();
        int n = 0;
        foreach (var c in Data().GetProperty("ambiguous_cases").EnumerateArray())
        {
            n++;
            string prompt = c.GetProperty("prompt").GetString()!;
            int steps = c.GetProperty("steps").GetInt32();
            var ours = Ours(prompt, steps, null, c.GetProperty("use_old_scheduling").GetBoolean());
            var variants = c.GetProperty("schedule_variants").EnumerateArray().Select(Read).ToList();
            if (!variants.Any(v => v.SequenceEqual(ours))) failures.Add($"{prompt} steps {steps}: got {Show(ours)}");
        }
        Assert.True(n > 0);
        Assert.True(failures.Count == 0, string.Join("\n", failures));
    }

    [SkippableFact]
    public void HiresCases()
    {
        int n = 0;
        foreach (var c in Data().GetProperty("hires_cases").EnumerateArray())
        {
            n++;
            var ours = Ours(c.GetProperty("prompt").GetString()!, c.GetProperty("steps").GetInt32(), c.GetProperty("hires_steps").GetInt32(),
                            c.GetProperty("use_old_scheduling").GetBoolean());
            Assert.Equal(Show(Read(c.GetProperty("schedule"))), Show(ours));
        }
        Assert.True(n > 0);
    }

    [SkippableFact]
    public void AndCases()
    {
        int n = 0;
        foreach (var c in Data().GetProperty("and_cases").EnumerateArray())
        {
            n++;
            var expected = c.GetProperty("prompts").EnumerateArray().Select(e => (e[0].GetString()!, e[1].GetDouble())).ToList();
            var ours = PromptAnd.Split(c.GetProperty("prompt").GetString()!).Select(p => (p.Text, p.Weight)).ToList();
            Assert.Equal(expected, ours);
        }
        Assert.True(n > 0);
    }

    [Theory]
    [InlineData("a [cat:dog:0.5] c", 10, 3, "a cat c")]
    [InlineData("a [cat:dog:0.5] c", 10, 5, "a cat c")]
    [InlineData("a [cat:dog:0.5] c", 10, 6, "a dog c")]
    [InlineData("a [cat|dog] c", 4, 3, "a cat c")]
    [InlineData("a [cat|dog] c", 4, 4, "a dog c")]
    public void AtStepPicksTheFirstEntryEndingAtOrAfterIt(string prompt, int steps, int step, string expected)
    {
        Assert.Equal(expected, PromptSchedule.At(PromptSchedule.For(prompt, steps), step));
    }

    // A1111's own doctests of get_learned_conditioning_prompt_schedules (10 steps)
    [Theory]
    [InlineData("a [b:3]", "[[3, \"a \"], [10, \"a b\"]]")]
    [InlineData("a [b: 3]", "[[3, \"a \"], [10, \"a b\"]]")]
    [InlineData("a [[[b]]:2]", "[[2, \"a \"], [10, \"a [[b]]\"]]")]
    [InlineData("[(a:2):3]", "[[3, \"\"], [10, \"(a:2)\"]]")]
    [InlineData("a [b : c : 1] d", "[[1, \"a b  d\"], [10, \"a  c  d\"]]")]
    [InlineData("a[b:[c:d:2]:1]e", "[[1, \"abe\"], [2, \"ace\"], [10, \"ade\"]]")]
    [InlineData("a [unbalanced", "[[10, \"a [unbalanced\"]]")]
    [InlineData("a [b:.5] c", "[[5, \"a  c\"], [10, \"a b c\"]]")]
    [InlineData("((a][:b:c [d:3]", "[[3, \"((a][:b:c \"], [10, \"((a][:b:c d\"]]")]
    [InlineData("[fe|||]male", "[[1, \"female\"], [2, \"male\"], [3, \"male\"], [4, \"male\"], [5, \"female\"], [6, \"male\"], [7, \"male\"], [8, \"male\"], [9, \"female\"], [10, \"male\"]]")]
    public void A1111Doctests(string prompt, string expected)
    {
        Assert.Equal(expected, Show(Ours(prompt, 10, null, false)));
    }

    [Fact]
    public void UnclosedBracketsOfAnyDepthAreText()
    {
        // many unclosed brackets nest nothing: plain text, no recursion (A1111 keeps them too)
        string prompt = new string('[', 5000) + "a [b:c:0.5]";
        var s = PromptSchedule.For(prompt, 10);
        Assert.Equal(new string('[', 5000) + "a b", s[0].Text);
        Assert.Equal(new string('[', 5000) + "a c", s[1].Text);
    }
}
