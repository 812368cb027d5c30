using System.Diagnostics;
using System.Text.Json;
using LoraCraft.Pipelines;
using Xunit;
using Xunit.Abstractions;

namespace LoraCraft.Tests.Server;

/// <summary>
/// An A1111 client written by someone else, used unchanged: the npm package a1111-webui-api
/// (tests/a1111-client: package.json pins it, check.mjs drives it as a Node bot would) against
/// a real server on loopback. Needs Node and `npm ci` in tests/a1111-client (test.sh and .ci/run
/// do it); without them the test FAILS, saying so, rather than skipping.
/// </summary>
public sealed class A1111ClientTests(ServerFixture server, ITestOutputHelper output) : IClassFixture<ServerFixture>
{
    static string ClientDir()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir != null; dir = dir.Parent)
        {
            var candidate = Path.Combine(dir.FullName, "tests", "a1111-client");
            if (File.Exists(Path.Combine(candidate, "check.mjs"))) return candidate;
        }
        throw new InvalidOperationException("tests/a1111-client not found above " + AppContext.BaseDirectory);
    }

    static (int Code, string Out, string Err) Node(string dir, params string[] args)
    {
        var start = new ProcessStartInfo("node") { WorkingDirectory = dir, RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in args) start.ArgumentList.Add(a);
        Process p;
        try
        {
            p = Process.Start(start)!;
        }
        catch (System.ComponentModel.Win32Exception e)
        {
            throw new InvalidOperationException($"this test needs Node.js: apt-get install -y nodejs npm, then npm ci in {dir} (.ci/run and test.sh do it) ({e.Message})");
        }
        using (p)
        {
            var stdout = p.StandardOutput.ReadToEndAsync();
            var stderr = p.StandardError.ReadToEndAsync();
            if (!p.WaitForExit(TimeSpan.FromMinutes(4)))
            {
                p.Kill(entireProcessTree: true);
                throw new TimeoutException("the A1111 client did not finish within 4 minutes");
            }
            return (p.ExitCode, stdout.Result, stderr.Result);
        }
    }

    static double MaxPixelDifference(byte[] a, byte[] b)
    {
        using var x = ImageFiles.DecodeRgb(a, "a");
        using var y = ImageFiles.DecodeRgb(b, "b");
        Assert.Equal(x.shape, y.shape);
        using var d = (x - y).abs().max();
        return d.item<float>() * 255;
    }

    [SkippableFact]
    public void AThirdPartyClientListsGeneratesWithALoraAndInpaints()
    {
        _ = server.Http; // skips without the fixtures
        string dir = ClientDir();
        if (!Directory.Exists(Path.Combine(dir, "node_modules", "a1111-webui-api")))
            throw new InvalidOperationException($"run `npm ci` in {dir} first (test.sh and .ci/run do)");
        using var outDir = new TempDir();
        var (code, stdout, stderr) = Node(dir, "check.mjs", server.BaseUrl, outDir.Path, "sd15-attn");
        output.WriteLine(stdout);
        output.WriteLine(stderr);
        Assert.True(code == 0, $"the client failed ({code}): {stderr}");
        var report = JsonDocument.Parse(stdout.Trim().Split('\n')[^1]).RootElement;

        // listings as the client reads them
        Assert.Contains("tiny-sd15", report.GetProperty("models").EnumerateArray().Select(m => m.GetString()));
        Assert.StartsWith("tiny-sd15", report.GetProperty("current").GetString());
        Assert.Contains("Euler", report.GetProperty("samplers").EnumerateArray().Select(m => m.GetString()));
        Assert.Contains("sd15-attn", report.GetProperty("loras").EnumerateArray().Select(m => m.GetString()));

        // txt2img with a LoRA tag: the pixels `loracraft generate` gives for the same settings
        Assert.Equal(1, report.GetProperty("txt2img").GetProperty("images").GetInt32());
        Assert.Equal(77, report.GetProperty("txt2img").GetProperty("seed").GetInt64());
        var fromClient = File.ReadAllBytes(outDir.File("txt2img.png"));
        using var cliDir = new TempDir();
        var o = new StringWriter();
        var e = new StringWriter();
        int cli = LoraCraft.Cli.Cli.Run(["generate", "--model", Path.Combine(server.CheckpointsDir, "tiny-sd15.safetensors"), "--dtype", "fp32",
            "--lora-dir", server.LoraDir, "--prompt", "a lighthouse at dusk <lora:sd15-attn:0.8>", "--negative", "blurry", "--seed", "77",
            "--steps", "2", "--cfg", "5", "--sampler", "Euler", "--width", "64", "--height", "64", "--out", cliDir.File("cli.png"), "--quiet"], o, e);
        Assert.True(cli == 0, e.ToString());
        Assert.Equal(0, MaxPixelDifference(fromClient, File.ReadAllBytes(cliDir.File("cli.png"))));

        // inpainting through img2img with a mask: an image of the init's size, changed inside the mask
        Assert.Equal(1, report.GetProperty("inpaint").GetProperty("images").GetInt32());
        using var init = ImageFiles.DecodeRgb(fromClient, "init");
        using var painted = ImageFiles.DecodeRgb(File.ReadAllBytes(outDir.File("inpaint.png")), "inpaint");
        Assert.Equal(init.shape, painted.shape);
        using var inside = (painted[.., .., 28..36, 28..36] - init[.., .., 28..36, 28..36]).abs().max();
        Assert.True(inside.item<float>() > 0.02, "the masked square was not repainted");

        // the server is idle again when the client asks
        Assert.Equal(0, report.GetProperty("progress").GetProperty("job_count").GetInt32());
    }
}
