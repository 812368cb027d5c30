namespace LoraCraft;

/// <summary>What kind of mistake an error is: the HTTP layer maps it to a status, the CLI to exit code 2.</summary>
public enum ErrorKind
{
    /// <summary>A malformed or out-of-range value (400).</summary>
    Invalid,
    /// <summary>A named model, LoRA, file or job that does not exist (404).</summary>
    NotFound,
    /// <summary>Valid on its own but not with what exists (an SD1 LoRA on SDXL, a file already there) (409).</summary>
    Conflict,
    /// <summary>Something we refuse to do (a pickle, an unsupported format) (422).</summary>
    Unsupported,
    /// <summary>The server is at capacity: the queue is full (503).</summary>
    Busy,
}

/// <summary>
/// Base for mistakes a user can fix (bad path, malformed file, wrong option): the CLI prints the
/// message as one line and exits with code 2, without a stack trace; HTTP answers 4xx by
/// <see cref="Kind"/>. Library messages name the setting (<see cref="Field"/>, e.g. "width"),
/// never a command-line flag: the CLI adds its own wording.
/// </summary>
public class UserErrorException : Exception
{
    public UserErrorException(string message) : base(message) { }
    public UserErrorException(string message, Exception inner) : base(message, inner) { }
    public UserErrorException(ErrorKind kind, string message) : base(message) => Kind = kind;

    public ErrorKind Kind { get; init; } = ErrorKind.Invalid;
    /// <summary>The request field the message is about (snake_case as in the APIs), when one is.</summary>
    public string? Field { get; init; }
}
