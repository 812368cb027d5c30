using LoraCraft.IO;
using LoraCraft.Tests.Conformance;
using LoraCraft.Text;
using LoraCraft.Text.Embeddings;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace LoraCraft.Tests.Text;

/// <summary>Textual-inversion files: reading, listing, refusing pickles, wrong widths, bundles in LoRA files, both prompts.</summary>
public class EmbeddingTests
{
    static void WriteEmbedding(string path, params (string Name, long[] Shape)[] tensors)
    {
        var list = tensors.Select((t, i) => new KeyValuePair<string, Tensor>(t.Name, torch.randn(t.Shape, generator: new Generator((ulong)(7 + i))))).ToList();
        SafetensorsWriter.Write(path, list);
        foreach (var t in list) t.Value.Dispose();
    }

    [Fact]
    public void ReadsSd1AndSdxlFilesAndListsThem()
    {
        using var dir = new TempDir();
        WriteEmbedding(dir.File("style.safetensors"), ("emb_params", [3, 768]));
        WriteEmbedding(dir.File("xl.safetensors"), ("clip_l", [2, 768]), ("clip_g", [2, 1280]));
        Directory.CreateDirectory(dir.File("sub"));
        WriteEmbedding(dir.File("sub/one.safetensors"), ("anything", [1024]));
        var list = new EmbeddingLibrary(dir.Path).List().ToDictionary(e => e.Name);
        Assert.Equal((3, 768, "sd1"), (list["style"].Vectors, list["style"].Shape, list["style"].Family));
        Assert.Equal((2, 2048, "sdxl"), (list["xl"].Vectors, list["xl"].Shape, list["xl"].Family));
        Assert.Equal((1, 1024, "sd2"), (list["one"].Vectors, list["one"].Shape, list["one"].Family));
        Assert.All(list.Values, e => Assert.Null(e.Problem));
    }

    [Fact]
    public void APickleEmbeddingIsRefusedAndNeverExecuted()
    {
        using var dir = new TempDir();
        string marker = dir.File("pwned");
        // protocol-2 pickle calling os.system("touch <marker>") when unpickled
        var command = System.Text.Encoding.ASCII.GetBytes($"touch {marker}");
        var pickle = new List<byte> { 0x80, 0x02 };
        pickle.AddRange(System.Text.Encoding.ASCII.GetBytes("cposix\nsystem\n"));
        pickle.Add((byte)'X');
        pickle.AddRange(BitConverter.GetBytes(command.Length));
        pickle.AddRange(command);
        pickle.AddRange([(byte)'\x85', (byte)'R', (byte)'.']);
        File.WriteAllBytes(dir.File("evil.pt"), pickle.ToArray());
        File.WriteAllBytes(dir.File("evil2.bin"), pickle.ToArray());

        var library = new EmbeddingLibrary(dir.Path);
        var listed = library.List();
        Assert.Equal(2, listed.Count);
        Assert.All(listed, e => Assert.Contains("pickle", e.Problem));
        var tokenizer = ClipTokenizer.FromDirectory(new TinyClipVocab().Dir);
        var matcher = library.ToSet().MatcherFor(tokenizer);
        var error = Assert.Throws<UserErrorException>(() => A1111Chunker.Chunk("a photo of evil", tokenizer, matcher));
        Assert.Contains("pickle", error.Message);
        Assert.Contains("evil.pt", error.Message);
        Assert.False(File.Exists(marker), "the pickle ran");
    }

    [Fact]
    public void MalformedFilesAreListedWithTheirProblem()
    {
        using var dir = new TempDir();
        File.WriteAllBytes(dir.File("broken.safetensors"), [1, 2, 3]);
        WriteEmbedding(dir.File("two.safetensors"), ("a", [1, 768]), ("b", [1, 768]));
        var list = new EmbeddingLibrary(dir.Path).List().ToDictionary(e => e.Name);
        Assert.Contains("not a valid safetensors", list["broken"].Problem);
        Assert.Contains("2 tensors", list["two"].Problem);
    }

    [SkippableFact]
    public void AWrongWidthIsAClearError()
    {
        Fixture.Require();
        var model = ModelCases.Model("sd15", diffusers: false); // text width 32
        using var dir = new TempDir();
        WriteEmbedding(dir.File("wide.safetensors"), ("emb_params", [2, 768]));
        var set = new EmbeddingLibrary(dir.Path).ToSet();
        using var encoder = new ChunkEncoder(model, 1);
        var e = Assert.Throws<UserErrorException>(() => A1111PromptEncoder.Encode(encoder, "a wide cat", set));
        Assert.Contains("wide", e.Message);
        Assert.Contains("768", e.Message);
        Assert.Contains("32", e.Message);
        Assert.NotNull(set.Find("wide")!.MismatchFor(model));
    }

    [SkippableFact]
    public void EmbeddingsWorkInBothPromptsWithEmphasis()
    {
        // positive and negative each match A1111's own context for that text (cases-m2.json 6 and 7)
        string more = A1111ConditioningCases.More();
        var model = ModelCases.Model("sd15", diffusers: false);
        using var expected = SafetensorsFile.Open(Path.Combine(more, "expected-m2.safetensors"));
        var set = new EmbeddingLibrary(Path.Combine(more, "embeddings")).ToSet();
        using var prompts = PromptConditioning.Encode(model, "a photo of tinyemb on a table", "(tinyemb:1.3) portrait, [soft light]", 20,
                                                      new PromptOptions { Embeddings = set });
        using var wantPositive = expected.Load("a1111.6.context", ScalarType.Float32);
        using var wantNegative = expected.Load("a1111.7.context", ScalarType.Float32);
        Assert.True(Fixture.RelL2(prompts.Positive[0].Schedule.At(1).Context, wantPositive) < 1e-4);
        Assert.True(Fixture.RelL2(prompts.Negative!.At(1).Context, wantNegative) < 1e-4);
        // without the embedding the name is just text
        using var noEmbedding = PromptConditioning.Encode(model, "a photo of tinyemb on a table", null, 20, new PromptOptions());
        Assert.True(Fixture.RelL2(noEmbedding.Positive[0].Schedule.At(1).Context, wantPositive) > 1e-3);
    }

    [SkippableFact]
    public void ComfyStyleNamesEmbeddingsWithThePrefix()
    {
        string more = A1111ConditioningCases.More();
        var model = ModelCases.Model("sd15", diffusers: false);
        var set = new EmbeddingLibrary(Path.Combine(more, "embeddings")).ToSet();
        using var encoder = new ChunkEncoder(model, 1);
        // ComfyUI's embedding:NAME is the A1111 word NAME: same vectors in the same place
        using var comfy = ComfyPromptEncoder.Encode(encoder, "a photo of embedding:tinyemb on a table", set).Conditioning;
        using var a1111 = A1111PromptEncoder.Encode(encoder, "a photo of tinyemb on a table", set);
        Assert.True(A1111ConditioningCases.Same(a1111.Context, comfy.Context));
        var missing = ComfyPromptEncoder.Encode(encoder, "a photo of embedding:nosuch on a table", set);
        using (missing.Conditioning) Assert.Equal(["nosuch"], missing.Missing);
    }

    [SkippableFact]
    public void EmbeddingsBundledInALoraFile()
    {
        string more = A1111ConditioningCases.More();
        var f = Fixture.Require();
        var model = ModelCases.Model("sd15", diffusers: false);
        using var dir = new TempDir();
        // a copy of a fixture LoRA with tinyemb's vectors bundled as `bundle_emb.mybundle.string_to_param.*`
        string lora = dir.File("withbundle.safetensors");
        using (var src = SafetensorsFile.Open(Path.Combine(f.Root, "loras", "sd15-attn.safetensors")))
        using (var emb = SafetensorsFile.Open(Path.Combine(more, "embeddings", "tinyemb.safetensors")))
        {
            var tensors = src.Tensors.Select(t => new KeyValuePair<string, Tensor>(t.Name, src.Load(t.Name))).ToList();
            tensors.Add(new("bundle_emb.mybundle.string_to_param.*", emb.Load("emb_params")));
            SafetensorsWriter.Write(lora, tensors, src.Metadata);
            foreach (var t in tensors) t.Value.Dispose();
        }
        var bundled = TextualInversion.FromLora(lora);
        var one = Assert.Single(bundled);
        Assert.Equal(("mybundle", 2, true), (one.Name, one.Vectors, one.Bundled));
        // the LoRA loader does not count the bundle as keys that match no layer
        using (var file = LoraCraft.Lora.LoraFile.Load(lora)) Assert.False(file.UnknownKeys.Any(k => k.Contains("bundle_emb")), string.Join(", ", file.UnknownKeys));

        using var encoder = new ChunkEncoder(model, 1);
        using var viaBundle = A1111PromptEncoder.Encode(encoder, "a photo of mybundle on a table", new EmbeddingSet(bundled));
        using var expected = SafetensorsFile.Open(Path.Combine(more, "expected-m2.safetensors"));
        using var want = expected.Load("a1111.6.context", ScalarType.Float32);
        Assert.True(Fixture.RelL2(viaBundle.Context, want) < 1e-4, "the bundled vectors are tinyemb's: A1111's context for 'a photo of tinyemb on a table'");
    }

    [SkippableFact]
    public void SdxlEmbeddingsGiveEachEncoderItsOwnVectors()
    {
        Fixture.Require();
        var model = ModelCases.Model("sdxl", diffusers: false); // two encoders, 32 wide each
        using var dir = new TempDir();
        WriteEmbedding(dir.File("xlstyle.safetensors"), ("clip_l", [2, 32]), ("clip_g", [2, 32]));
        WriteEmbedding(dir.File("sd1only.safetensors"), ("emb_params", [2, 32]));
        var set = new EmbeddingLibrary(dir.Path).ToSet();
        Assert.Null(set.Find("xlstyle")!.MismatchFor(model));
        using var encoder = new ChunkEncoder(model, 1);
        using var with = A1111PromptEncoder.Encode(encoder, "a xlstyle cat", set);
        using var without = A1111PromptEncoder.Encode(encoder, "a xlstyle cat");
        Assert.Equal([1L, 77, 64], with.Context.shape);
        Assert.True(Fixture.RelL2(with.Context, without.Context) > 1e-3);
        Assert.NotNull(with.Pooled);
        var e = Assert.Throws<UserErrorException>(() => A1111PromptEncoder.Encode(encoder, "a sd1only cat", set));
        Assert.Contains("clip_l", e.Message);
    }
}
