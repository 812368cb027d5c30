using System.Text.Json;
using LoraCraft.IO;
using LoraCraft.Text;
using LoraCraft.Text.Embeddings;
using TorchSharp;
using Xunit;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace LoraCraft.Tests.Conformance;

/// <summary>
/// Every `a1111_conditioning` case of more/cases-m2.json (A1111's own tokenize_line,
/// parse_prompt_attention and "Original" emphasis): the chunks (tokens, multipliers, embedding
/// offsets), the token count and the final context, from both file layouts.
/// </summary>
public class A1111ConditioningCases(ITestOutputHelper output)
{
    const double Tolerance = 1e-4;

    public static string More()
    {
        var f = Fixture.Require();
        var more = Path.Combine(f.Root, "more");
        if (!File.Exists(Path.Combine(more, "cases-m2.json"))) throw new SkipException($"{more}/cases-m2.json not found: skipped");
        return more;
    }

    static List<JsonElement> Cases(string more)
    {
        using var doc = JsonDocument.Parse(File.ReadAllBytes(Path.Combine(more, "cases-m2.json")));
        return doc.RootElement.GetProperty("cases").EnumerateArray()
            .Where(c => c.GetProperty("kind").GetString() == "a1111_conditioning").Select(c => c.Clone()).ToList();
    }

    [SkippableFact]
    public void ChunksMatchA1111()
    {
        string more = More();
        var model = ModelCases.Model("sd15", diffusers: false);
        var slot = model.TextEncoders[0];
        int n = 0;
        foreach (var c in Cases(more))
        {
            n++;
            string prompt = c.GetProperty("prompt").GetString()!;
            var set = new EmbeddingLibrary(Path.Combine(more, c.GetProperty("embeddings_dir").GetString()!)).ToSet();
            var chunks = A1111Chunker.Chunk(prompt, slot.Tokenizer, set.MatcherFor(slot.Tokenizer), out int tokenCount);
            var expected = c.GetProperty("chunks").EnumerateArray().ToList();
            Assert.True(expected.Count == chunks.Count, $"'{prompt}': {chunks.Count} chunks, A1111 {expected.Count}");
            Assert.True(c.GetProperty("token_count").GetInt32() == tokenCount, $"'{prompt}': token count {tokenCount}, A1111 {c.GetProperty("token_count").GetInt32()}");
            for (int i = 0; i < chunks.Count; i++)
            {
                var e = expected[i];
                Assert.Equal(e.GetProperty("tokens").EnumerateArray().Select(t => t.GetInt32()), chunks[i].Tokens);
                var mult = e.GetProperty("multipliers").EnumerateArray().Select(m => m.GetDouble()).ToArray();
                for (int j = 0; j < mult.Length; j++)
                    Assert.True(Math.Abs(mult[j] - chunks[i].Multipliers[j]) < 1e-6, $"'{prompt}' chunk {i} position {j}: multiplier {chunks[i].Multipliers[j]}, A1111 {mult[j]}");
                var fixes = e.GetProperty("fixes").EnumerateArray().Select(f => (f[0].GetInt32(), f[1].GetString()!)).ToList();
                Assert.Equal(fixes, chunks[i].Fixes.Select(f => (f.Offset, f.Embedding.Name)).ToList());
            }
        }
        Assert.True(n >= 11, $"only {n} cases");
    }

    [SkippableTheory]
    [InlineData(false)]
    [InlineData(true)]
    public void ContextMatchesA1111(bool diffusers)
    {
        string more = More();
        var model = ModelCases.Model("sd15", diffusers);
        using var expected = SafetensorsFile.Open(Path.Combine(more, "expected-m2.safetensors"));
        var report = new Fixture.Report(Tolerance);
        foreach (var c in Cases(more))
        {
            string prompt = c.GetProperty("prompt").GetString()!;
            int clipSkip = c.GetProperty("clip_skip").GetInt32();
            var set = new EmbeddingLibrary(Path.Combine(more, c.GetProperty("embeddings_dir").GetString()!)).ToSet();
            using var encoder = new ChunkEncoder(model, clipSkip);
            using var cond = A1111PromptEncoder.Encode(encoder, prompt, set);
            using var want = expected.Load(c.GetProperty("context").GetString()!, ScalarType.Float32);
            report.Check($"'{prompt}' clip skip {clipSkip}", cond.Context, want);
        }
        report.Assert(output);
    }

    [SkippableTheory]
    [InlineData("sd15")]
    [InlineData("sd2v")]
    [InlineData("sdxl")]
    public void APlainPromptGivesExactlyTodaysConditioning(string kind)
    {
        // the txt2img cases use plain prompts: A1111 parsing must not change a bit of them
        Fixture.Require();
        var model = ModelCases.Model(kind, diffusers: false);
        foreach (var prompt in new[] { "a photo of a cat sitting on a wooden table, soft light", "", "low quality, blurry, watermark" })
            foreach (int clipSkip in new[] { 1, 2 })
            {
                using var plain = TextConditioner.Encode(model, prompt, clipSkip);
                using var encoder = new ChunkEncoder(model, clipSkip);
                using var a1111 = A1111PromptEncoder.Encode(encoder, prompt);
                using var comfy = ComfyPromptEncoder.Encode(encoder, prompt).Conditioning;
                foreach (var (name, got) in new[] { ("a1111", a1111), ("comfy", comfy) })
                {
                    Assert.True(Same(plain.Context, got.Context), $"{kind} {name} '{prompt}' clip skip {clipSkip}: context differs");
                    if (plain.Pooled is not null) Assert.True(Same(plain.Pooled, got.Pooled!), $"{kind} {name} '{prompt}': pooled differs");
                }
            }
    }

    /// <summary>Same shape and bit-identical values.</summary>
    public static bool Same(Tensor a, Tensor b) => a.shape.SequenceEqual(b.shape) && a.eq(b).all().item<bool>();
}
