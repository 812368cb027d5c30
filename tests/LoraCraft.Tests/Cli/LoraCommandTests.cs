using System.Text.Json;
using LoraCraft.Runtime;
using LoraCraft.Tests.Lora;
using Xunit;
using Xunit.Abstractions;

namespace LoraCraft.Tests.Cli;

public class LoraCommandTests(ITestOutputHelper output)
{
    static LoraCommandTests() => TorchNative.Ensure();

    static (int Code, string Out, string Err) Run(params string[] args)
    {
        var stdout = new StringWriter();
        var stderr = new StringWriter();
        int code = LoraCraft.Cli.Cli.Run(args, stdout, stderr);
        return (code, stdout.ToString().ReplaceLineEndings("\n"), stderr.ToString());
    }

    bool NoFixtures()
    {
        if (FixturePaths.Root is not null) return false;
        throw new SkipException("fixtures not found (../shared/fixtures or LORACRAFT_FIXTURES): skipped");
    }

    static string Fixture(params string[] parts) => Path.Combine([FixturePaths.Root!, .. parts]);

    /// <summary>The fixture LoRAs, a sidecar with trigger words, a subfolder and a file that is not a LoRA.</summary>
    static TempDir LoraFolder()
    {
        var dir = new TempDir();
        Directory.CreateDirectory(dir.File("xl"));
        foreach (var name in new[] { "sd15-attn", "sd15-locon", "sd15-peft" })
            File.Copy(Fixture("loras", name + ".safetensors"), dir.File(name + ".safetensors"));
        File.Copy(Fixture("loras", "sdxl-attn.safetensors"), dir.File(Path.Combine("xl", "sdxl-attn.safetensors")));
        File.WriteAllText(dir.File("sd15-attn.civitai.info"), """{"trainedWords": ["sd15_attn_style", "cloud"]}""");
        File.WriteAllText(dir.File("broken.safetensors"), "nope");
        return dir;
    }

    [SkippableFact]
    public void ListShowsEveryFileWithItsSummaryAndKeepsGoingPastABadOne()
    {
        if (NoFixtures()) return;
        using var dir = LoraFolder();
        var (code, text, err) = Run("lora", "list", "--dir", dir.Path);
        output.WriteLine(text);
        Assert.Equal(0, code);
        Assert.Equal("", err);
        var lines = text.TrimEnd('\n').Split('\n');
        Assert.StartsWith("NAME ", lines[0]);
        Assert.Matches(@"^sd15-attn\s+sd1\s+lora\s+4\s+2\s+128\s+16\s+152\.7 KiB\s+[0-9a-f]{12}\s+sd15-attn\s+sd15_attn_style, cloud$", lines.Single(l => l.StartsWith("sd15-attn ")));
        Assert.Matches(@"^sd15-locon\s+sd1\s+locon\s+2\s+2\s+277\s+24\s", lines.Single(l => l.StartsWith("sd15-locon ")));
        Assert.Matches(@"^sdxl-attn\s+sdxl\s+lora\s+4\s+4\s+136\s+16\+16\s", lines.Single(l => l.StartsWith("sdxl-attn ")));
        Assert.Contains(lines, l => l.StartsWith("broken  unreadable: ") && l.Contains("broken.safetensors"));
        Assert.Equal($"4 LoRA files in {dir.Path}, 1 unreadable", lines[^1]);
    }

    [SkippableFact]
    public void ListJsonHasOneObjectPerFile()
    {
        if (NoFixtures()) return;
        using var dir = LoraFolder();
        var (code, text, _) = Run("lora", "list", "--dir", dir.Path, "--json");
        Assert.Equal(0, code);
        using var doc = JsonDocument.Parse(text);
        var rows = doc.RootElement.EnumerateArray().ToDictionary(e => e.GetProperty("name").GetString()!);
        Assert.Equal(["broken", "sd15-attn", "sd15-locon", "sd15-peft", "sdxl-attn"], rows.Keys.Order());
        var attn = rows["sd15-attn"];
        Assert.Equal("sd1", attn.GetProperty("family").GetString());
        Assert.Equal(4, attn.GetProperty("rank").GetInt32());
        Assert.Equal(2.0, attn.GetProperty("alpha").GetDouble());
        Assert.Equal(128, attn.GetProperty("modules").GetProperty("unet").GetInt32());
        Assert.Equal(["sd15_attn_style", "cloud"], attn.GetProperty("trigger_words").EnumerateArray().Select(e => e.GetString()));
        Assert.Matches("^[0-9a-f]{12}$", attn.GetProperty("hash").GetString());
        Assert.Equal(JsonValueKind.Null, rows["sd15-peft"].GetProperty("family").ValueKind);
        Assert.Equal(16, rows["sdxl-attn"].GetProperty("modules").GetProperty("text_encoder_2").GetInt32());
        Assert.Contains("broken.safetensors", rows["broken"].GetProperty("error").GetString());
    }

    [SkippableFact]
    public void ListOfAMissingFolderIsAUserError()
    {
        using var dir = new TempDir();
        var (code, _, err) = Run("lora", "list", "--dir", dir.File("nope"));
        Assert.Equal(2, code);
        Assert.Contains("does not exist (use --dir)", err);
    }

    [SkippableFact]
    public void InfoPrintsMetadataCutInTextAndFullInJson()
    {
        using var dir = new TempDir();
        var path = dir.File("long.safetensors");
        string tags = "{\"10_x\": {\"zzstyle\": 9, \"tree\": 2, \"" + new string('q', 300) + "\": 1}}";
        LoraInfoTests.WriteLora(path, [("lora_unet_a", 8, 4f), ("lora_te_b", 8, 4f)], new() { ["ss_tag_frequency"] = tags, ["ss_output_name"] = "long_v1" });

        var (code, text, err) = Run("lora", "info", path);
        output.WriteLine(text);
        Assert.Equal(0, code);
        Assert.Equal("", err);
        Assert.Contains("title         long_v1\n", text);
        Assert.Contains("alpha         4 (scale 0.5)\n", text);
        Assert.Contains("modules       2 (UNet 1, text encoder 1)\n", text);
        Assert.Contains("top tags      zzstyle (9), tree (2), qqq", text);
        Assert.Contains("  ss_tag_frequency  {\"10_x\"", text);
        Assert.Contains("… (", text);
        Assert.DoesNotContain(new string('q', 300), text);

        var (jsonCode, json, _) = Run("lora", "info", path, "--json");
        Assert.Equal(0, jsonCode);
        using var doc = JsonDocument.Parse(json);
        Assert.Equal(tags, doc.RootElement.GetProperty("metadata").GetProperty("ss_tag_frequency").GetString());
        Assert.Equal(9, doc.RootElement.GetProperty("top_tags").GetProperty("zzstyle").GetInt32());
        Assert.Equal(8, doc.RootElement.GetProperty("rank").GetInt32());
    }

    [SkippableFact]
    public void InfoFindsANameInTheFolder()
    {
        if (NoFixtures()) return;
        using var dir = LoraFolder();
        var (code, text, _) = Run("lora", "info", "SDXL-ATTN", "--dir", dir.Path);
        Assert.Equal(0, code);
        Assert.Contains("modules       168 (UNet 136, text encoder 1 16, text encoder 2 16)\n", text);
        Assert.Contains("trigger words none\n", text);
        Assert.Contains("top tags      none\n", text);
    }

    [SkippableTheory]
    [InlineData("sd15-attn", "sd15", 128, 16)]
    [InlineData("sd15-locon", "sd15", 277, 24)]
    [InlineData("sd15-peft", "sd15", 128, 16)]
    [InlineData("sdxl-attn", "sdxl", 136, 16)]
    public void CheckMapsEveryFixtureLoraOntoItsModel(string lora, string model, int unet, int te)
    {
        if (NoFixtures()) return;
        var (code, text, err) = Run("lora", "check", Fixture("loras", lora + ".safetensors"),
            "--model", Fixture("models", model, $"tiny-{model}.safetensors"), "--config", Fixture("models", model, "diffusers"));
        output.WriteLine(text);
        Assert.Equal(0, code);
        Assert.Equal("", err);
        Assert.Matches($@"\n  UNet\s+{unet} matched\s+0 unmatched", text);
        Assert.Matches($@"\n  text encoder( 1)?\s+{te} matched\s+0 unmatched", text);
        Assert.DoesNotContain("unmatched keys", text);
        Assert.EndsWith($"verdict: OK: all {unet + te + (model == "sdxl" ? 16 : 0)} modules map onto this {(model == "sdxl" ? "sdxl" : "sd1")} model\n", text);

        var (_, json, _) = Run("lora", "check", Fixture("loras", lora + ".safetensors"),
            "--model", Fixture("models", model, $"tiny-{model}.safetensors"), "--config", Fixture("models", model, "diffusers"), "--json");
        using var doc = JsonDocument.Parse(json);
        Assert.Equal("ok", doc.RootElement.GetProperty("verdict").GetString());
        Assert.Equal(unet, doc.RootElement.GetProperty("components").GetProperty("unet").GetProperty("matched").GetInt32());
        Assert.Empty(doc.RootElement.GetProperty("unmatched_keys").EnumerateArray());
    }

    [SkippableFact]
    public void CheckListsWhatDoesNotMap()
    {
        if (NoFixtures()) return;
        using var dir = new TempDir();
        var path = dir.File("extra.safetensors");
        // one real text-encoder layer, one layer the model lacks, one prefix no model has
        LoraInfoTests.WriteLora(path, [("lora_te_text_model_encoder_layers_0_self_attn_q_proj", 2, 2f), ("lora_te_text_model_encoder_layers_9_self_attn_q_proj", 2, 2f),
                                       ("lora_prior_x", 2, 2f)], width: 32);
        var (code, text, _) = Run("lora", "check", path,
            "--model", Fixture("models", "sd15", "tiny-sd15.safetensors"), "--config", Fixture("models", "sd15", "diffusers"));
        output.WriteLine(text);
        Assert.Equal(0, code);
        Assert.Matches(@"\n  text encoder\s+1 matched\s+1 unmatched", text);
        Assert.Matches(@"\n  other\s+0 matched\s+1 unmatched", text);
        Assert.Contains("unmatched keys:\n  lora_te_text_model_encoder_layers_9_self_attn_q_proj\n  lora_prior_x\n", text);
        Assert.EndsWith("verdict: PARTIAL: 1 of 3 keys map onto this sd1 model; the other 2 are ignored\n", text);
    }

    [SkippableFact]
    public void CheckOfAnSd1LoraOnSdxlIsOneLineNamingSd1()
    {
        if (NoFixtures()) return;
        var (code, text, err) = Run("lora", "check", Fixture("loras", "sd15-attn.safetensors"),
            "--model", Fixture("models", "sdxl", "tiny-sdxl.safetensors"), "--config", Fixture("models", "sdxl", "diffusers"));
        Assert.Equal(2, code);
        Assert.Equal("", text);
        Assert.Single(err.TrimEnd('\n').Split('\n'));
        Assert.Contains("looks made for sd1", err);
    }

    [SkippableTheory]
    [InlineData("lora", "frobnicate")]
    [InlineData("lora")]
    [InlineData("lora", "check", "x.safetensors")]
    [InlineData("make-lora", "--model", "m.safetensors", "--rank", "0", "--out", "x.safetensors")]
    [InlineData("make-lora", "--model", "m.safetensors", "--out", "x.safetensors")]
    [InlineData("make-lora", "--model", "m.safetensors", "--rank", "4", "--alpha", "-1", "--out", "x.safetensors")]
    [InlineData("make-lora", "--model", "m.safetensors", "--rank", "4", "--targets", "mlp", "--out", "x.safetensors")]
    [InlineData("make-lora", "--model", "m.safetensors", "--rank", "4", "--out", "x.pt")]
    [InlineData("make-lora", "--model", "m.safetensors", "--rank", "4", "--out", "/no/such/folder/x.safetensors")]
    public void MistakesAreOneLineUserErrorsBeforeAnyModelIsLoaded(params string[] args)
    {
        // m.safetensors does not exist: each mistake must be caught before it is looked for
        var (code, text, err) = Run(args);
        output.WriteLine(err);
        Assert.Equal(2, code);
        Assert.Equal("", text);
        Assert.Single(err.TrimEnd('\n').Split('\n'));
        Assert.DoesNotContain("m.safetensors", err);
    }

    [SkippableFact]
    public void MakeLoraWritesARandomLoraThatCheckMapsFully()
    {
        using var dir = new TempDir();
        var model = dir.File("tiny.safetensors");
        Assert.Equal(0, Run("make-model", "--family", "sdxl", "--size", "tiny", "--out", model).Code);
        var lora = dir.File("demo.safetensors");
        var (code, text, err) = Run("make-lora", "--model", model, "--config", dir.File("tiny.config"), "--rank", "4", "--alpha", "2",
                                    "--targets", "all", "--seed", "7", "--out", lora);
        output.WriteLine(text + err);
        Assert.Equal(0, code);
        Assert.Contains("RANDOM WEIGHTS", text);
        Assert.Contains($"wrote {lora} (sdxl, all, rank 4, alpha 2, seed 7): 312 modules", text);

        var (checkCode, check, _) = Run("lora", "check", lora, "--model", model, "--config", dir.File("tiny.config"));
        Assert.Equal(0, checkCode);
        Assert.EndsWith("verdict: OK: all 312 modules map onto this sdxl model\n", check);
        var (_, info, _) = Run("lora", "info", lora);
        Assert.Contains("title         random LoRA (demo)\n", info);
        Assert.Contains("type          locon\n", info);
    }
}
