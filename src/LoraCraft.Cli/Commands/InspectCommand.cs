namespace LoraCraft.Cli.Commands;

public static class InspectCommand
{
    public static int Run(string[] args, TextWriter stdout) => throw new NotImplementedException("inspect is being written");
}
