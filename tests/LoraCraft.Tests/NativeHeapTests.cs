using System.Diagnostics;
using LoraCraft.Runtime;
using Xunit;

namespace LoraCraft.Tests;

public class NativeHeapTests
{
    [Theory]
    [InlineData(null, false)]
    [InlineData("", false)]
    [InlineData("glibc.malloc.hugetlb=1", true)]
    [InlineData("glibc.malloc.hugetlb=2", true)]
    [InlineData("glibc.malloc.hugetlb=0", false)]
    [InlineData("glibc.malloc.arena_max=2:glibc.malloc.hugetlb=1", true)]
    [InlineData("glibc.malloc.hugetlb=10", false)]
    public void HugePagesAreReadFromTheTunables(string? tunables, bool expected) =>
        Assert.Equal(expected, NativeHeap.HugePagesRequested(tunables));

    /// <summary>The launcher itself, run against a stub `dotnet` that prints what it was given.</summary>
    [Theory]
    [InlineData(null, null, "glibc.malloc.hugetlb=1 10000")]
    [InlineData("glibc.malloc.arena_max=2", null, "glibc.malloc.arena_max=2:glibc.malloc.hugetlb=1 10000")]
    [InlineData("glibc.malloc.hugetlb=0", "300000", "glibc.malloc.hugetlb=0 300000")]
    public void TheLauncherAsksForHugePagesAndShortSpinsUnlessTold(string? given, string? spin, string expected)
    {
        using var dir = new TempDir();
        var script = Path.Combine(dir.Path, "loracraft");
        File.Copy(Path.Combine(FixturePaths.RepoRoot() ?? throw new InvalidOperationException("repository root not found"), "loracraft"), script);
        // a built CLI and a stamp newer than any source (there is no src/ here): no build runs
        Directory.CreateDirectory(Path.Combine(dir.Path, ".build", "cli"));
        File.WriteAllText(Path.Combine(dir.Path, ".build", "cli", "LoraCraft.Cli.dll"), "");
        File.WriteAllText(Path.Combine(dir.Path, ".build", "cli", ".stamp"), "");
        var bin = Directory.CreateDirectory(Path.Combine(dir.Path, "bin")).FullName;
        var stub = Path.Combine(bin, "dotnet");
        File.WriteAllText(stub, "#!/bin/sh\necho \"$GLIBC_TUNABLES $GOMP_SPINCOUNT\"\n");
        if (!OperatingSystem.IsWindows()) File.SetUnixFileMode(stub, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        var psi = new ProcessStartInfo("bash", [script, "--version"]) { RedirectStandardOutput = true, RedirectStandardError = true };
        psi.Environment["PATH"] = bin + ":/usr/bin:/bin";
        if (given is null) psi.Environment.Remove("GLIBC_TUNABLES"); else psi.Environment["GLIBC_TUNABLES"] = given;
        if (spin is null) psi.Environment.Remove("GOMP_SPINCOUNT"); else psi.Environment["GOMP_SPINCOUNT"] = spin;
        using var p = Process.Start(psi)!;
        string output = p.StandardOutput.ReadToEnd();
        Assert.True(p.WaitForExit(30_000), "launcher did not finish");
        Assert.True(p.ExitCode == 0, p.StandardError.ReadToEnd());
        Assert.Equal(expected, output.Trim());
    }
}
