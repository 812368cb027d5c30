using System.Globalization;
using System.Text.Encodings.Web;
using System.Text.Json;
using LoraCraft.Text;

namespace LoraCraft.Cli.Commands;

/// <summary>
/// <c>loracraft prompt schedule|and</c>: what A1111's prompt language makes of a text, without a
/// model. <c>schedule</c> prints A1111's <c>[[end_step, text], ...]</c>; <c>and</c> the
/// <c>[[text, weight], ...]</c> of its AND parts. TEXT may follow <c>--</c>.
/// </summary>
public static class PromptCommand
{
    static readonly JsonSerializerOptions Json = new() { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    public static int Run(string[] argv, TextWriter stdout)
    {
        if (argv.Length == 0) throw new UserErrorException("'prompt' needs a subcommand: schedule or and");
        var rest = argv[1..];
        return argv[0] switch
        {
            "schedule" => Schedule(rest, stdout),
            "and" => And(rest, stdout),
            var s => throw new UserErrorException($"unknown 'prompt' subcommand '{s}' (schedule or and)"),
        };
    }

    static string Text(Args a) => a.Positionals.Count > 0
        ? string.Join(' ', a.Positionals)
        : throw new UserErrorException($"'{a.Command}' needs TEXT (it may follow --)");

    static int Schedule(string[] argv, TextWriter stdout)
    {
        var a = new Args("prompt schedule", argv, flags: ["json", "old-scheduling"], options: ["steps", "hires-steps"]);
        int steps = a.GetInt("steps", 0);
        if (a.Get("steps") is null) throw new UserErrorException("'prompt schedule' needs --steps");
        if (steps < 1) throw new UserErrorException($"--steps must be 1 or more, got {a.Get("steps")}");
        int? hires = a.Get("hires-steps") is null ? null : a.GetInt("hires-steps", 0);
        if (hires is < 1) throw new UserErrorException($"--hires-steps must be 1 or more, got {a.Get("hires-steps")}");
        var schedule = PromptSchedule.For(Text(a), steps, hires, a.Flag("old-scheduling"));
        if (a.Flag("json"))
        {
            stdout.WriteLine(JsonSerializer.Serialize(schedule.Select(s => new object[] { s.EndAtStep, s.Text }), Json));
            return 0;
        }
        int from = 1;
        foreach (var s in schedule)
        {
            string range = s.EndAtStep == from ? $"{from}" : $"{from}-{s.EndAtStep}";
            stdout.WriteLine($"steps {range}: {TextFormat.Escape(s.Text)}");
            from = s.EndAtStep + 1;
        }
        return 0;
    }

    static int And(string[] argv, TextWriter stdout)
    {
        var a = new Args("prompt and", argv, flags: ["json"], options: []);
        var parts = PromptAnd.Split(Text(a));
        if (a.Flag("json"))
        {
            stdout.WriteLine(JsonSerializer.Serialize(parts.Select(p => new object[] { p.Text, p.Weight }), Json));
            return 0;
        }
        foreach (var p in parts)
            stdout.WriteLine($"{p.Weight.ToString("0.####", CultureInfo.InvariantCulture)}: {TextFormat.Escape(p.Text)}");
        return 0;
    }
}
