namespace LoraCraft;

/// <summary>
/// Base for mistakes a user can fix (bad path, malformed file, wrong option): the CLI prints the
/// message as one line and exits with code 2, without a stack trace.
/// </summary>
public class UserErrorException : Exception
{
    public UserErrorException(string message) : base(message) { }
    public UserErrorException(string message, Exception inner) : base(message, inner) { }
}
