using LoraCraft.Models.Loading;
using LoraCraft.Text;

namespace LoraCraft.Cli.Commands;

/// <summary>
/// <c>tokenizer download [--to DIR] [--base-url URL]</c>: fetches the CLIP vocabulary that
/// single-file checkpoints need, into DIR or the Hugging Face cache (where loading finds it).
/// </summary>
public static class TokenizerCommand
{
    public static int Run(string[] argv, TextWriter stdout)
    {
        var args = new Args("tokenizer", argv, flags: ["quiet"], options: ["to", "base-url"]);
        if (args.Positionals is not ["download"])
            throw new UserErrorException("usage: loracraft tokenizer download [--to DIR] [--base-url URL]");
        var to = args.Get("to");
        var dir = TokenizerDownload.DownloadAsync(to, TokenizerDownload.Endpoint(args.Get("base-url")), TokenizerLocator.HubCacheRoot)
            .GetAwaiter().GetResult();
        stdout.WriteLine(to is null ? $"CLIP tokenizer saved in the Hugging Face cache: {dir}" : $"CLIP tokenizer saved in {dir} (use it with --tokenizer {dir})");
        return 0;
    }
}
