using LoraCraft.Tests.Conformance;
using LoraCraft.Text;
using Xunit;
using static TorchSharp.torch;

namespace LoraCraft.Tests.Text;

/// <summary>A1111's and ComfyUI's emphasis parsers, against the examples their own code documents.</summary>
public class PromptWeightingTests
{
    static List<(string, double)> A1111(string s) => PromptAttention.Parse(s).Select(w => (w.Text, w.Weight)).ToList();

    // parse_prompt_attention's doctests
    [Fact]
    public void A1111Doctests()
    {
        Assert.Equal([("normal text", 1.0)], A1111("normal text"));
        Assert.Equal([("an ", 1.0), ("important", 1.1), (" word", 1.0)], A1111("an (important) word"));
        Assert.Equal([("unbalanced", 1.1)], A1111("(unbalanced"));
        Assert.Equal([("(literal]", 1.0)], A1111("\\(literal\\]"));
        Assert.Equal([("unnecessaryparens", 1.1)], A1111("(unnecessary)(parens)"));
        var house = A1111("a (((house:1.3)) [on] a (hill:0.5), sun, (((sky))).");
        Assert.Equal(["a ", "house", " ", "on", " a ", "hill", ", sun, ", "sky", "."], house.Select(h => h.Item1));
        double[] weights = [1.0, 1.5730000000000004, 1.1, 1.0, 1.1, 0.55, 1.1, 1.4641000000000006, 1.1];
        for (int i = 0; i < weights.Length; i++) Assert.Equal(weights[i], house[i].Item2, 12);
    }

    [Fact]
    public void BreakIsAMarkerOnlyAsAWordOutsideBrackets()
    {
        var parts = PromptAttention.Parse("a cat BREAK a dog");
        Assert.Equal(["a cat", "BREAK", "a dog"], parts.Select(p => p.Text));
        Assert.True(parts[1].IsBreak);
        Assert.DoesNotContain(PromptAttention.Parse("BREAKING news"), p => p.IsBreak);
        // inside emphasis A1111 multiplies the marker's weight too, so it is no longer a break
        Assert.DoesNotContain(PromptAttention.Parse("(a BREAK b)"), p => p.IsBreak);
    }

    [Fact]
    public void ALoneBackslashDisappearsAndADoubleOneStays()
    {
        Assert.Equal([("ab\\c", 1.0)], A1111("a\\b\\\\c"));
    }

    [Fact]
    public void AnInvalidWeightIsAClearError()
    {
        Assert.Throws<PromptSyntaxException>(() => PromptAttention.Parse("(cat:1.2.3)"));
    }

    // token_weights' doctests in comfy/sd1_clip.py
    [Theory]
    [InlineData("(foo)", "foo=1.1")]
    [InlineData("(foo)(bar)", "foo=1.1|bar=1.1")]
    [InlineData("(foo:2.0)", "foo=2")]
    [InlineData("((foo))", "foo=1.21")]
    [InlineData("((foo):1.1)", "foo=1.21")]
    [InlineData("((foo:1.1))", "foo=1.1")]
    [InlineData("(foo:0.0)", "foo=0")]
    [InlineData("((foo:1.0):0.0)", "foo=1")]
    [InlineData("foo ((((lol (cat:666) attack:100)))) baz", "foo =1|lol =100|cat=666| attack=100| baz=1")]
    [InlineData("foo ((((lol (cat:666) attack):100))) baz", "foo =1|lol =110|cat=666| attack=110| baz=1")]
    [InlineData("\\(foo\\)(bar)", "(foo)=1|bar=1.1")]
    [InlineData("[foo] (a:b)", "[foo] =1|a:b=1.1")]
    public void ComfyDoctests(string prompt, string expected)
    {
        var parsed = ComfyPromptEncoder.ParseWeights(prompt);
        Assert.Equal(expected, string.Join("|", parsed.Select(p => $"{p.Text}={Math.Round(p.Weight, 10).ToString(System.Globalization.CultureInfo.InvariantCulture)}")));
    }

    [SkippableFact]
    public void ComfyWeightingMovesOnlyTheWeightedTokensTowardsTheEmptyPrompt()
    {
        Fixture.Require();
        var model = ModelCases.Model("sd15", diffusers: false);
        using var encoder = new ChunkEncoder(model, 1);
        using var plain = ComfyPromptEncoder.Encode(encoder, "a cat on a table").Conditioning;
        using var weighted = ComfyPromptEncoder.Encode(encoder, "a (cat:1.5) on a table").Conditioning;
        // "a cat on a table" tokenizes the same in pieces; position 2 is "cat" (after start and "a")
        var slot = model.TextEncoders[0];
        var emptyIds = new int[77];
        Array.Fill(emptyIds, slot.PadId);
        emptyIds[0] = slot.Tokenizer.StartId;
        emptyIds[1] = slot.Tokenizer.EndId;
        var empty = encoder.Encode(0, emptyIds, []).Z;
        int catTokens = slot.Tokenizer.Encode("cat").Count;
        for (int j = 0; j < 77; j++)
        {
            using var got = weighted.Context[0, j];
            using var raw = plain.Context[0, j];
            if (j >= 2 && j < 2 + catTokens)
            {
                using var want = (raw - empty[0, j]) * 1.5 + empty[0, j];
                Assert.True(A1111ConditioningCases.Same(want, got), $"position {j}: not (z - z_empty) * 1.5 + z_empty");
            }
            else Assert.True(A1111ConditioningCases.Same(raw, got), $"position {j} changed");
        }
    }

    [SkippableFact]
    public void ComfyKeepsShortWeightedPiecesInOneChunk()
    {
        Fixture.Require();
        var tokenizer = ModelCases.Model("sd15", diffusers: false).TextEncoders[0].Tokenizer;
        // 74 tokens of filler, then a 3-token weighted piece: it does not fit and moves whole to chunk 2
        string filler = string.Join(" ", Enumerable.Repeat("a", 74));
        var chunks = ComfyPromptEncoder.Tokenize(filler + " (a a a:1.2)", tokenizer, tokenizer.EndId, null);
        Assert.Equal(2, chunks.Count);
        Assert.All(chunks, c => Assert.Equal(77, c.Length));
        Assert.Equal(tokenizer.EndId, chunks[0][75].Token);
        Assert.Equal(1.2, chunks[1][1].Weight);
        Assert.Equal(1.2, chunks[1][3].Weight);
        Assert.Equal(tokenizer.EndId, chunks[1][4].Token);
        // a long unweighted run is split at 75 tokens
        var long1 = ComfyPromptEncoder.Tokenize(string.Join(" ", Enumerable.Repeat("a", 80)), tokenizer, tokenizer.EndId, null);
        Assert.Equal(2, long1.Count);
        Assert.Equal(tokenizer.EndId, long1[0][76].Token);
        Assert.NotEqual(tokenizer.EndId, long1[0][75].Token);
    }
}
