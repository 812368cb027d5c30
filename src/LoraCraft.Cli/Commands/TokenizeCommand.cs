namespace LoraCraft.Cli.Commands;

public static class TokenizeCommand
{
    public static int Run(string[] args, TextWriter stdout) => throw new NotImplementedException("tokenize is being written");
}
