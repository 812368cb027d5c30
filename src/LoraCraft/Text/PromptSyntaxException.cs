namespace LoraCraft.Text;

/// <summary>A prompt that A1111 itself cannot use (it raises on it): an infinite step number, nesting hundreds deep.</summary>
public sealed class PromptSyntaxException(string problem) : UserErrorException($"prompt: {problem}");
