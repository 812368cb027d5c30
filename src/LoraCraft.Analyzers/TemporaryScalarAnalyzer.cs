using System.Collections.Immutable;
using System.Linq;
using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.Diagnostics;
using Microsoft.CodeAnalysis.Operations;

namespace LoraCraft.Analyzers;

/// <summary>
/// LC0001. A TorchSharp <c>Scalar</c> owns native memory and has a finalizer. One made on the fly
/// (<c>t * 0.5</c>, <c>t.clamp(0, 1)</c>, and TorchSharp's own <c>a + b</c>, which passes a fresh
/// alpha of 1) is unreachable once its handle has been read, so a garbage collection started by
/// another thread during the native call may free it while libtorch still reads it (seen as
/// "Expected false to be true" from c10::Scalar::toDouble, or silently wrong numbers). A Scalar
/// must live in a <c>using</c> variable or a static field for the whole call; LoraCraft's
/// <c>TensorMath</c> helpers do exactly that.
/// </summary>
[DiagnosticAnalyzer(LanguageNames.CSharp)]
public sealed class TemporaryScalarAnalyzer : DiagnosticAnalyzer
{
    public static readonly DiagnosticDescriptor Rule = new(
        "LC0001", "Temporary TorchSharp Scalar",
        "{0} makes a temporary TorchSharp Scalar that a garbage collection on another thread can free during the native call; use TensorMath ({1}) or hold the Scalar in a using variable",
        "Reliability", DiagnosticSeverity.Warning, isEnabledByDefault: true);

    public override ImmutableArray<DiagnosticDescriptor> SupportedDiagnostics => ImmutableArray.Create(Rule);

    /// <summary>Tensor methods whose overloads without alpha/value pass a temporary Scalar of 1.</summary>
    static readonly ImmutableDictionary<string, int> ImplicitAlpha = new[]
    {
        ("add", 1), ("add_", 1), ("addcdiv", 2), ("addcdiv_", 2), ("addcmul", 2), ("addcmul_", 2),
    }.ToImmutableDictionary(p => p.Item1, p => p.Item2);

    /// <summary>Tensor-to-number conversions that go through a temporary Scalar.</summary>
    static readonly ImmutableHashSet<string> ViaScalar = ImmutableHashSet.Create(
        "ToSingle", "ToDouble", "ToHalf", "ToBFloat16", "ToSByte", "ToByte", "ToInt16", "ToInt32", "ToInt64", "ToBoolean",
        "ToComplexFloat32", "ToComplexFloat64", "ToScalar");

    /// <summary>
    /// TorchSharp 0.107 members that make a temporary Scalar inside (found by running this analyzer
    /// over TorchSharp's decompiled source): calling them is flagged too. "*" = every member of the type.
    /// </summary>
    static readonly ImmutableDictionary<string, ImmutableHashSet<string>> InsideTorchSharp = new (string Type, string[] Members)[]
    {
        ("Tensor", new[] { "celu", "celu_", "elu", "elu_", "softplus", "square" }),
        ("functional", new[] { "celu", "hardtanh", "leaky_relu", "softsign", "threshold" }),
        ("torch", new[] { "normal", "add", "add_" }),
        ("BatchNorm", new[] { "forward" }), ("PReLU", new[] { ".ctor" }), ("GaussianNLLLoss", new[] { "forward" }),
        ("ASGD", new[] { "step" }), ("Adadelta", new[] { "step" }), ("Adagrad", new[] { "step" }), ("Adam", new[] { "step" }),
        ("AdamW", new[] { "step" }), ("Adamax", new[] { "step" }), ("NAdam", new[] { "step" }), ("RAdam", new[] { "step" }),
        ("RMSProp", new[] { "step" }), ("Rprop", new[] { "step" }), ("SGD", new[] { "step" }),
    }.ToImmutableDictionary(p => p.Type, p => p.Members.ToImmutableHashSet());

    public override void Initialize(AnalysisContext context)
    {
        context.EnableConcurrentExecution();
        context.ConfigureGeneratedCodeAnalysis(GeneratedCodeAnalysisFlags.None);
        context.RegisterCompilationStartAction(start =>
        {
            var scalar = start.Compilation.GetTypeByMetadataName("TorchSharp.Scalar");
            var tensor = start.Compilation.GetTypeByMetadataName("TorchSharp.torch+Tensor");
            if (scalar is null || tensor is null) return;
            bool IsTensor(ITypeSymbol? t) => SymbolEqualityComparer.Default.Equals(t, tensor);
            bool IsScalar(ITypeSymbol? t) => SymbolEqualityComparer.Default.Equals(t, scalar);

            start.RegisterOperationAction(ctx =>
            {
                var op = (IConversionOperation)ctx.Operation;
                if (op.OperatorMethod is not null && IsTensor(op.Operand.Type) && !IsTensor(op.Type))
                {
                    ctx.ReportDiagnostic(Diagnostic.Create(Rule, op.Syntax.GetLocation(), $"converting tensor '{op.Operand.Syntax}' to {op.Type}", "item<T>()"));
                    return;
                }
                if (!IsScalar(op.Type) || op.OperatorMethod is null || Held(op)) return;
                ctx.ReportDiagnostic(Diagnostic.Create(Rule, op.Syntax.GetLocation(), $"converting '{op.Operand.Syntax}' to Scalar", "e.g. Mul, Add, Clamp"));
            }, OperationKind.Conversion);

            start.RegisterOperationAction(ctx =>
            {
                var (method, left, right) = ctx.Operation switch
                {
                    IBinaryOperation b => (b.OperatorMethod, b.LeftOperand.Type, b.RightOperand.Type),
                    ICompoundAssignmentOperation c => (c.OperatorMethod, c.Target.Type, c.Value.Type),
                    _ => (null, null, null),
                };
                if (method is null || !IsTensor(method.ContainingType)) return;
                bool bothTensors = IsTensor(left) && IsTensor(right);
                bool numberOperand = !IsTensor(left) && !IsScalar(left) || !IsTensor(right) && !IsScalar(right);
                if (numberOperand || bothTensors && method.Name == "op_Addition")
                    ctx.ReportDiagnostic(Diagnostic.Create(Rule, ctx.Operation.Syntax.GetLocation(), $"'{ctx.Operation.Syntax}'",
                        bothTensors ? "a.Add(b)" : "Add, Sub, Mul, Div, RSub"));
            }, OperationKind.Binary, OperationKind.CompoundAssignment);

            start.RegisterOperationAction(ctx =>
            {
                var op = (IInvocationOperation)ctx.Operation;
                var m = op.TargetMethod;
                bool onTensor = IsTensor(m.ContainingType) || m.IsExtensionMethod && IsTensor(m.Parameters.FirstOrDefault()?.Type);
                int own = m.IsExtensionMethod ? m.Parameters.Length - 1 : m.Parameters.Length;
                if (m.ContainingNamespace?.ToDisplayString().StartsWith("TorchSharp") == true
                    && (InsideTorchSharp.TryGetValue(m.ContainingType.Name, out var members) && members.Contains(m.Name)
                        || m.Name == "arange" && m.ContainingType.Name == "torch" && m.Parameters.Count(p => IsScalar(p.Type)) < 3
                        || m.ContainingNamespace.ToDisplayString() == "TorchSharp.Modules" && m.ContainingType.BaseType?.Name == "Distribution"))
                    ctx.ReportDiagnostic(Diagnostic.Create(Rule, op.Syntax.GetLocation(), $"TorchSharp's '{m.ContainingType.Name}.{m.Name}' (inside)", "TensorMath or an explicit formula"));
                else if (!onTensor) return;
                else if (ImplicitAlpha.TryGetValue(m.Name, out int n) && own == n && !m.IsStatic)
                    ctx.ReportDiagnostic(Diagnostic.Create(Rule, op.Syntax.GetLocation(), $"'{m.Name}' without alpha", "Add / AddInPlace"));
                else if (m.IsExtensionMethod && ViaScalar.Contains(m.Name) && m.ContainingNamespace?.ToDisplayString() == "TorchSharp")
                    ctx.ReportDiagnostic(Diagnostic.Create(Rule, op.Syntax.GetLocation(), $"'{m.Name}()'", "item<T>()"));
            }, OperationKind.Invocation);
        });
    }

    /// <summary>A conversion whose result lands in a `using` local or a static field lives as long as it is used.</summary>
    static bool Held(IOperation op)
    {
        var parent = op.Parent;
        if (parent is IFieldInitializerOperation field) return field.InitializedFields.All(x => x.IsStatic);
        if (parent is IVariableInitializerOperation init)
        {
            if (init.Parent is IFieldInitializerOperation f) return f.InitializedFields.All(x => x.IsStatic);
            if (init.Parent is IVariableDeclaratorOperation { Parent: IVariableDeclarationOperation { Parent: IVariableDeclarationGroupOperation { Parent: IUsingDeclarationOperation or IUsingOperation } } }) return true;
        }
        return false;
    }
}
