using System.Diagnostics;
using System.Net;
using System.Net.Sockets;

namespace LoraCraft.Tests.Distributed;

/// <summary>
/// Debian's redis-server on a free loopback port with its data in a temp folder, AOF on (as the
/// README's setup), killed at the end. Missing redis-server is a failure, not a skip: CI installs it.
/// </summary>
public sealed class RedisProcess : IDisposable
{
    public const string Binary = "/usr/bin/redis-server";
    Process? _process;

    public RedisProcess()
    {
        if (!File.Exists(Binary))
            throw new InvalidOperationException($"{Binary} is not installed: apt-get install redis-server (.ci/run does) — the queue tests need a real Redis");
        Port = FreePort();
        Start();
    }

    public TempDir Dir { get; } = new();
    public int Port { get; }
    public string Url(string prefix) => $"redis://127.0.0.1:{Port}/0?prefix={prefix}";

    public void Start()
    {
        var info = new ProcessStartInfo(Binary)
        {
            RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false, WorkingDirectory = Dir.Path,
        };
        foreach (var a in new[] { "--port", Port.ToString(), "--bind", "127.0.0.1", "--dir", Dir.Path, "--appendonly", "yes",
                     "--appendfsync", "always", "--save", "", "--daemonize", "no", "--protected-mode", "yes", "--loglevel", "warning" })
            info.ArgumentList.Add(a);
        _process = Process.Start(info)!;
        _process.BeginOutputReadLine();
        _process.BeginErrorReadLine();
        var deadline = DateTime.UtcNow.AddSeconds(20);
        while (true)
        {
            try
            {
                using var c = new TcpClient();
                c.Connect(IPAddress.Loopback, Port);
                using var s = c.GetStream();
                s.Write("PING\r\n"u8);
                var buffer = new byte[64];
                int n = s.Read(buffer);
                if (n > 0 && System.Text.Encoding.ASCII.GetString(buffer, 0, n).StartsWith("+PONG", StringComparison.Ordinal)) return;
            }
            catch (SocketException) { }
            catch (IOException) { }
            if (_process.HasExited) throw new InvalidOperationException($"redis-server exited with {_process.ExitCode}");
            if (DateTime.UtcNow > deadline) throw new TimeoutException("redis-server did not answer within 20 s");
            Thread.Sleep(50);
        }
    }

    /// <summary>Stops Redis as a crash would (SIGKILL): what AOF has is what comes back.</summary>
    public void Kill()
    {
        if (_process is { HasExited: false } p)
        {
            p.Kill();
            p.WaitForExit(10_000);
        }
    }

    static int FreePort()
    {
        var l = new TcpListener(IPAddress.Loopback, 0);
        l.Start();
        int port = ((IPEndPoint)l.LocalEndpoint).Port;
        l.Stop();
        return port;
    }

    public void Dispose()
    {
        Kill();
        _process?.Dispose();
        Dir.Dispose();
    }
}

/// <summary>A `loracraft worker` process (the built CLI), its log kept; killed at the end.</summary>
public sealed class WorkerProcess : IDisposable
{
    readonly Process _process;
    readonly System.Collections.Concurrent.ConcurrentQueue<string> _log = new();

    public WorkerProcess(string name, string queueUrl, string checkpoints, string loras, params string[] extra)
    {
        Name = name;
        var cli = CliDll();
        var info = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in new[] { cli, "worker", "--queue", queueUrl, "--ckpt-dir", checkpoints, "--lora-dir", loras, "--name", name, "--threads", TorchSharp.torch.get_num_threads().ToString(), "--dtype", "fp32" }.Concat(extra))
            info.ArgumentList.Add(a);
        info.Environment["TORCH_CPP_LOG_LEVEL"] = "ERROR";
        _process = Process.Start(info)!;
        _process.OutputDataReceived += (_, e) => { if (e.Data is not null) _log.Enqueue(e.Data); };
        _process.ErrorDataReceived += (_, e) => { if (e.Data is not null) _log.Enqueue(e.Data); };
        _process.BeginOutputReadLine();
        _process.BeginErrorReadLine();
    }

    /// <summary>
    /// The CLI as its own project built it (the test folder's copy lacks packages the test host gets
    /// from ASP.NET Core): src/LoraCraft.Cli/bin/CONFIG/TFM beside the tests' bin/CONFIG/TFM.
    /// </summary>
    static string CliDll()
    {
        var bin = new DirectoryInfo(AppContext.BaseDirectory.TrimEnd(Path.DirectorySeparatorChar));
        string tfm = bin.Name, config = bin.Parent!.Name;
        for (var dir = bin; dir != null; dir = dir.Parent)
        {
            var dll = Path.Combine(dir.FullName, "src", "LoraCraft.Cli", "bin", config, tfm, "LoraCraft.Cli.dll");
            if (File.Exists(dll)) return dll;
        }
        throw new FileNotFoundException($"LoraCraft.Cli.dll (bin/{config}/{tfm}) not found above {bin.FullName}");
    }

    public string Name { get; }
    public string Log => string.Join("\n", _log);
    public bool Exited => _process.HasExited;

    public void Kill()
    {
        if (!_process.HasExited)
        {
            _process.Kill(entireProcessTree: true);
            _process.WaitForExit(10_000);
        }
    }

    public void Dispose()
    {
        Kill();
        _process.Dispose();
    }
}
