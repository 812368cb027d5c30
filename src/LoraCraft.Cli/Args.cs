using LoraCraft;

namespace LoraCraft.Cli;

/// <summary>
/// A small declarative argument parser: each command declares its flags and valued options,
/// anything else starting with "--" is a user error. Hand-written rather than System.CommandLine
/// because the contract is strict (one stderr line, exit code 2) and the grammar is tiny.
/// </summary>
public sealed class Args
{
    readonly Dictionary<string, List<string>> _values = new();
    readonly HashSet<string> _flags = new();
    public List<string> Positionals { get; } = new();
    public string Command { get; }

    public Args(string command, IEnumerable<string> tokens, IReadOnlyCollection<string> flags, IReadOnlyCollection<string> options)
    {
        Command = command;
        var list = tokens.ToList();
        for (int i = 0; i < list.Count; i++)
        {
            var t = list[i];
            if (t == "--") { Positionals.AddRange(list.Skip(i + 1)); break; }
            if (t.StartsWith("--", StringComparison.Ordinal) && t.Length > 2)
            {
                string name = t[2..];
                string? inline = null;
                int eq = name.IndexOf('=');
                if (eq >= 0) { inline = name[(eq + 1)..]; name = name[..eq]; }
                if (flags.Contains(name))
                {
                    if (inline != null) throw new UserErrorException($"option --{name} takes no value");
                    _flags.Add(name);
                }
                else if (options.Contains(name))
                {
                    string value = inline ?? (i + 1 < list.Count ? list[++i] : throw new UserErrorException($"option --{name} needs a value"));
                    if (!_values.TryGetValue(name, out var vs)) _values[name] = vs = new();
                    vs.Add(value);
                }
                else throw new UserErrorException($"unknown option --{name} for '{command}' (see 'loracraft {command} --help')");
            }
            else Positionals.Add(t);
        }
    }

    public bool Flag(string name) => _flags.Contains(name);
    public string? Get(string name) => _values.TryGetValue(name, out var v) ? v[^1] : null;
    public IReadOnlyList<string> GetAll(string name) => _values.TryGetValue(name, out var v) ? v : [];
    public string Require(string name) => Get(name) ?? throw new UserErrorException($"'{Command}' needs --{name}");

    public int GetInt(string name, int fallback) => Get(name) is { } s ? ParseInt(name, s) : fallback;
    public long? GetLong(string name) => Get(name) is { } s
        ? (long.TryParse(s, out var v) ? v : throw new UserErrorException($"--{name} must be an integer, got '{s}'"))
        : null;
    public double GetDouble(string name, double fallback) => Get(name) is { } s
        ? (double.TryParse(s, System.Globalization.NumberStyles.Float, System.Globalization.CultureInfo.InvariantCulture, out var v) ? v
            : throw new UserErrorException($"--{name} must be a number, got '{s}'"))
        : fallback;

    static int ParseInt(string name, string s) =>
        int.TryParse(s, out var v) ? v : throw new UserErrorException($"--{name} must be an integer, got '{s}'");

    public string Positional(int index, string what) =>
        index < Positionals.Count ? Positionals[index] : throw new UserErrorException($"'{Command}' needs {what}");
}
