using LoraCraft.Generation;

namespace LoraCraft.Server;

/// <summary>
/// A job event only the server's own job kinds publish (training progress, a tool's report): the
/// native API sends it as Server-Sent Event <see cref="Type"/> with <see cref="Data"/> (plain data,
/// snake_case JSON) as it is.
/// </summary>
public sealed record ServerEvent(string JobId, string Type, object Data) : JobEvent(JobId);
