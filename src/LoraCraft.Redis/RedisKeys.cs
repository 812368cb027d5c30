using System.Security.Cryptography;
using System.Text;
using LoraCraft.Generation;

namespace LoraCraft.Redis;

/// <summary>
/// The keys one deployment uses (all under its prefix):
/// <list type="bullet">
/// <item><c>P:jobs:MODEL:LORAS</c> one stream of waiting jobs per checkpoint and LoRA set (consumer group <c>workers</c>), listed in the set <c>P:queues</c>;</item>
/// <item><c>P:where</c> job id → its stream and entry (so a waiting job can be taken back);</item>
/// <item><c>P:events</c> one stream of every job's events (trimmed), read by the front ends;</item>
/// <item><c>P:result:ID</c> a finished job's output (JSON with base64 PNGs) and <c>P:done:ID</c> its one completion, both with a TTL;</item>
/// <item><c>P:control:ID</c> cancel / interrupt / skip requests (a hash of counters);</item>
/// <item><c>P:workers</c> worker name → what it has loaded and when it was last seen.</item>
/// </list>
/// </summary>
public sealed record RedisKeys(string Prefix)
{
    public const string Group = "workers";
    public string Queues => Prefix + ":queues";
    public string Where => Prefix + ":where";
    public string Events => Prefix + ":events";
    public string Workers => Prefix + ":workers";
    public string Result(string id) => $"{Prefix}:result:{id}";
    public string Done(string id) => $"{Prefix}:done:{id}";
    public string Control(string id) => $"{Prefix}:control:{id}";

    /// <summary>The stream of jobs with this affinity; jobs of one checkpoint share <see cref="ModelPrefix"/>.</summary>
    public string Stream(JobAffinity a) => ModelPrefix(a.Model) + Short(a.LoraSet);
    public string ModelPrefix(string model) => $"{Prefix}:jobs:{Short(model)}:";

    static string Short(string text) => Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(text)))[..12];
}
