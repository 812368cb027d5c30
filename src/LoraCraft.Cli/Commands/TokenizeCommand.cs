using System.Globalization;
using LoraCraft.Text;

namespace LoraCraft.Cli.Commands;

/// <summary>
/// <c>tokenize --tokenizer DIR [--json] TEXT...</c>: the CLIP ids of TEXT with start and end tokens.
/// <c>--bench FILE|-</c> instead times the tokenizer on prompts read one per line.
/// </summary>
public static class TokenizeCommand
{
    public static int Run(string[] argv, TextWriter stdout)
    {
        var args = new Args("tokenize", argv, flags: ["json"], options: ["tokenizer", "bench", "seconds"]);
        var tokenizer = ClipTokenizer.FromDirectory(args.Require("tokenizer"));

        if (args.Get("bench") is { } source)
        {
            if (args.Positionals.Count > 0) throw new UserErrorException("'tokenize --bench' takes no TEXT");
            double seconds = args.GetDouble("seconds", 4);
            if (!(seconds > 0)) throw new UserErrorException($"--seconds must be positive, got {seconds}");
            var prompts = ReadPrompts(source);
            var r = ClipTokenizerBenchmark.Run(tokenizer, prompts, TimeSpan.FromSeconds(seconds));
            stdout.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"{r.Prompts} prompts, {r.DistinctWords} distinct words, one thread\ncold: {r.ColdPromptsPerSecond:F0} prompts/s (word cache emptied before each pass; median of {r.ColdPasses} passes)\nwarm: {r.WarmPromptsPerSecond:F0} prompts/s (median of {r.WarmPasses} passes)"));
            return 0;
        }

        if (args.Positionals.Count == 0) throw new UserErrorException("'tokenize' needs TEXT");
        var ids = tokenizer.EncodeWithSpecials(string.Join(' ', args.Positionals));
        stdout.WriteLine(args.Flag("json") ? "[" + string.Join(",", ids) + "]" : string.Join(' ', ids));
        return 0;
    }

    static List<string> ReadPrompts(string source)
    {
        var lines = source == "-" ? ReadAll(Console.In) : File.ReadLines(source);
        var prompts = lines.Where(l => l.Length > 0).ToList();
        return prompts.Count > 0 ? prompts : throw new UserErrorException($"no prompts in {(source == "-" ? "standard input" : source)}");
    }

    static IEnumerable<string> ReadAll(TextReader reader)
    {
        while (reader.ReadLine() is { } line) yield return line;
    }
}
