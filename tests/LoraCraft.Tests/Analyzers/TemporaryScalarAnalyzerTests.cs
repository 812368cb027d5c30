using System.Collections.Immutable;
using LoraCraft.Analyzers;
using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.CSharp;
using Microsoft.CodeAnalysis.Diagnostics;
using Xunit;

namespace LoraCraft.Tests.Analyzers;

/// <summary>LC0001 flags every way our code could hand libtorch a Scalar nobody holds, and nothing else.</summary>
public class TemporaryScalarAnalyzerTests
{
    static string[] Flagged(string body)
    {
        string source = $$"""
            using TorchSharp;
            using static TorchSharp.torch;
            using LoraCraft;
            static class C
            {
                static readonly Scalar Kept = 2.0;
                static void M(Tensor a, Tensor b, double v)
                {
                    {{body}}
                }
            }
            """;
        var refs = new[] { typeof(object), typeof(TorchSharp.torch), typeof(TensorMath), typeof(Enumerable) }
            .Select(t => t.Assembly.Location)
            .Concat(Directory.EnumerateFiles(Path.GetDirectoryName(typeof(object).Assembly.Location)!, "System.*.dll"))
            .Distinct().Select(p => (MetadataReference)MetadataReference.CreateFromFile(p));
        var compilation = CSharpCompilation.Create("t", [CSharpSyntaxTree.ParseText(source)], refs,
            new CSharpCompilationOptions(OutputKind.DynamicallyLinkedLibrary));
        var errors = compilation.GetDiagnostics().Where(d => d.Severity == DiagnosticSeverity.Error).ToList();
        Assert.True(errors.Count == 0, string.Join("\n", errors));
        var diagnostics = compilation.WithAnalyzers(ImmutableArray.Create<DiagnosticAnalyzer>(new TemporaryScalarAnalyzer()))
            .GetAnalyzerDiagnosticsAsync().Result;
        return diagnostics.Where(d => d.Id == "LC0001").Select(d => d.Location.SourceTree!.ToString()[d.Location.SourceSpan.Start..d.Location.SourceSpan.End]).ToArray();
    }

    [Theory]
    [InlineData("var c = a + b;", "a + b")]
    [InlineData("var c = a * 0.5;", "a * 0.5")]
    [InlineData("var c = 1 - a;", "1 - a")]
    [InlineData("a.add_(b);", "a.add_(b)")]
    [InlineData("var c = a.clamp(0, 1);", "0")]
    [InlineData("var c = a.mul(v);", "v")]
    [InlineData("var c = torch.full(3, 1.5f);", "1.5f")]
    [InlineData("float f = (float)a;", "(float)a")]
    [InlineData("var c = a.square();", "a.square()")]
    [InlineData("using var s = v.ToScalar(); var c = torch.arange(s);", "torch.arange(s)")]
    public void FlagsTemporaryScalars(string body, string expected) => Assert.Contains(expected, Flagged(body));

    [Theory]
    [InlineData("var c = a.Add(b); var d = a.Mul(0.5).Sub(1).Clamp(0, 1); var e = a.RSub(1);")]
    [InlineData("var c = a - b; var d = a * b; var e = a / b; var f = -a;")]
    [InlineData("using var s = v.ToScalar(); var c = a.mul(s); var d = a.add(b, Kept);")]
    [InlineData("var c = a.item<float>(); var d = TensorMath.Arange(4); var e = TensorMath.Full([2], 0.5);")]
    public void AcceptsHeldScalars(string body) => Assert.Empty(Flagged(body));
}
