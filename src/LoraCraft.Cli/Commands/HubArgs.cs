using LoraCraft.Lora.Hub;
using LoraCraft.Text;

namespace LoraCraft.Cli.Commands;

/// <summary>The options the hub commands share: `--civitai-url`, `--hf-url` (else HF_ENDPOINT) and `--token`.</summary>
internal static class HubArgs
{
    public static readonly string[] Options = ["civitai-url", "hf-url", "token"];

    /// <summary>Base URLs from the options; tokens from the environment, and `--token` for <paramref name="tokenSite"/>.</summary>
    public static HubOptions Build(Args a, HubSite? tokenSite)
    {
        var options = Urls(a);
        if (a.Get("token") is { } token)
        {
            token = token.Trim();
            if (token.Length == 0) throw new UserErrorException("--token is empty");
            options = tokenSite switch
            {
                HubSite.Civitai => options with { CivitaiToken = token },
                HubSite.HuggingFace => options with { HuggingFaceToken = token },
                HubSite.Url => options with { UrlToken = token },
                // a token for one site must not go to the other
                _ => throw new UserErrorException($"'{a.Command}' searches two sites: --token needs --source civitai or --source hf"),
            };
        }
        return options.WithEnvironmentTokens();
    }

    /// <summary>Only the base URLs (enough to understand what the user pasted).</summary>
    public static HubOptions Urls(Args a)
    {
        var options = new HubOptions
        {
            CivitaiUrl = a.Get("civitai-url") ?? HubOptions.DefaultCivitaiUrl,
            HuggingFaceUrl = a.Get("hf-url") ?? TokenizerDownload.Endpoint(null),
        };
        foreach (var (name, url) in new[] { ("civitai-url", options.CivitaiUrl), ("hf-url", options.HuggingFaceUrl) })
            if (!Uri.TryCreate(url, UriKind.Absolute, out var u) || u.Scheme is not ("http" or "https"))
                throw new UserErrorException($"--{name} '{url}' is not an http(s) URL");
        return options;
    }

    /// <summary>Runs <paramref name="work"/> with Ctrl-C cancelling it.</summary>
    public static T Cancellable<T>(Func<CancellationToken, Task<T>> work)
    {
        using var cts = new CancellationTokenSource();
        ConsoleCancelEventHandler handler = (_, e) => { e.Cancel = true; cts.Cancel(); };
        Console.CancelKeyPress += handler;
        try { return work(cts.Token).GetAwaiter().GetResult(); }
        finally { Console.CancelKeyPress -= handler; }
    }
}
