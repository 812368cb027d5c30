using LoraCraft.IO;
using LoraCraft.Lora;
using TorchSharp;
using static TorchSharp.torch;

namespace LoraCraft.Tests.Lora;

/// <summary>
/// Small adapter files of every type for a tiny SD1 model (kohya module names), each module with
/// its expected update built here, independently of the library, from the reference formula
/// (A1111's extensions-builtin/Lora/network_*.py, ComfyUI's comfy/weight_adapter, LyCORIS) —
/// written differently on purpose: loops, explicit Kronecker indices, permutation matrices,
/// linear solves instead of inverses.
/// </summary>
public static class AdapterSamples
{
    /// <summary>What one module must do to its layer: ΔW (and Δb) at a strength, from the original weight (float32).</summary>
    public sealed record Expected(LoraTarget Target, Func<Tensor, double, Tensor> Delta, Func<double, Tensor>? BiasDelta = null);

    public sealed record Sample(string Name, LoraAlgorithm Algorithm, string Path, IReadOnlyList<Expected> Modules);

    const string Block = "input_blocks.1.1.transformer_blocks.0.";

    public static IReadOnlyList<Sample> WriteAll(string dir, LoraTargets targets, ulong seed = 1)
    {
        using var g = new torch.Generator(seed);
        Tensor R(params long[] shape) => Rs(0.1f, shape);
        Tensor Rs(float std, params long[] shape) => (randn(shape, generator: g) * std).DetachFromDisposeScope();
        Tensor Pos(params long[] shape) => (rand(shape, generator: g) + 0.5f).DetachFromDisposeScope();
        var layer = (string name) => targets.Layers.Concat(targets.Norms).Single(l => l.Target.Name.EndsWith(name, StringComparison.Ordinal) && l.Target.Component == LoraComponent.UNet);
        var q = layer(Block + "attn1.to_q.weight");
        var k = layer(Block + "attn1.to_k.weight");
        var v = layer(Block + "attn1.to_v.weight");
        var o = layer(Block + "attn1.to_out.0.weight");
        var ff = layer(Block + "ff.net.0.proj.weight");
        var conv = layer("input_blocks.1.0.in_layers.2.weight");
        var conv2 = layer("input_blocks.2.0.in_layers.2.weight");
        var gn = layer("input_blocks.1.0.in_layers.0.weight");
        var ln = targets.Norms.First(l => l.Target.Component == LoraComponent.TextEncoder1 && l.Target.Name.EndsWith("layer_norm1.weight", StringComparison.Ordinal));
        var samples = new List<Sample>();

        Sample Write(string name, LoraAlgorithm algorithm, List<KeyValuePair<string, Tensor>> tensors, List<Expected> expected)
        {
            var path = Path.Combine(dir, name + ".safetensors");
            SafetensorsWriter.Write(path, tensors, new Dictionary<string, string> { ["ss_base_model_version"] = "sd_v1" });
            var s = new Sample(name, algorithm, path, expected);
            samples.Add(s);
            return s;
        }
        KeyValuePair<string, Tensor> T(LoraLayer l, string part, Tensor t) => new(l.KohyaKey + "." + part, t);
        KeyValuePair<string, Tensor> Alpha(LoraLayer l, float a) => new(l.KohyaKey + ".alpha", tensor(a));

        // LoRA: ΔW = up @ down · alpha / rank
        {
            var (down, up) = (Rs(0.2f, 4, 32), Rs(0.2f, 32, 4));
            Write("lora", LoraAlgorithm.Lora, [T(q, "lora_down.weight", down), T(q, "lora_up.weight", up), Alpha(q, 2)],
                  [new(q.Target, (w, s) => up.matmul(down) * (s * 2 / 4))]);
        }
        // LoCon: a 3x3 down with a 1x1 up, and a CP core (lora_mid) summed tap by tap
        {
            var (down, up) = (R(2, 32, 3, 3), R(32, 2, 1, 1));
            var (cd, cm, cu) = (Rs(0.3f, 2, 32, 1, 1), Rs(0.3f, 2, 2, 3, 3), Rs(0.3f, 32, 2, 1, 1));
            Write("locon", LoraAlgorithm.LoCon,
                [T(conv, "lora_down.weight", down), T(conv, "lora_up.weight", up), Alpha(conv, 1),
                 T(conv2, "lora_down.weight", cd), T(conv2, "lora_mid.weight", cm), T(conv2, "lora_up.weight", cu), Alpha(conv2, 1)],
                [
                    new(conv.Target, (w, s) => up.view(32, 2).matmul(down.view(2, -1)).view(32, 32, 3, 3) * (s * 0.5)),
                    new(conv2.Target, (w, s) =>
                    {
                        var e = zeros(32, 32, 3, 3);
                        for (int y = 0; y < 3; y++)
                            for (int x = 0; x < 3; x++)
                                e[.., .., y, x] = cu.view(32, 2).matmul(cm[.., .., y, x]).matmul(cd.view(2, 32));
                        return e * (s * 0.5);
                    }),
                ]);
        }
        // LoHa: (w1a @ w1b) ⊙ (w2a @ w2b) · alpha / rank; CP: A1111's make_weight_cp in its two steps
        {
            // products of products: larger factors, so that the update is not lost beside the weight
            var (w1a, w1b, w2a, w2b) = (Rs(0.4f, 32, 4), Rs(0.4f, 4, 32), Rs(0.4f, 32, 4), Rs(0.4f, 4, 32));
            var (t1, c1a, c1b, t2, c2a, c2b) = (Rs(0.4f, 4, 4, 3, 3), Rs(0.4f, 4, 32), Rs(0.4f, 4, 32), Rs(0.4f, 4, 4, 3, 3), Rs(0.4f, 4, 32), Rs(0.4f, 4, 32));
            static Tensor Cp(Tensor t, Tensor wa, Tensor wb)
            {
                var temp = torch.einsum("ijkl,jr->irkl", t, wb);
                return torch.einsum("ijkl,ir->rjkl", temp, wa);
            }
            Write("loha", LoraAlgorithm.LoHa,
                [T(q, "hada_w1_a", w1a), T(q, "hada_w1_b", w1b), T(q, "hada_w2_a", w2a), T(q, "hada_w2_b", w2b), Alpha(q, 2),
                 T(conv, "hada_t1", t1), T(conv, "hada_w1_a", c1a), T(conv, "hada_w1_b", c1b),
                 T(conv, "hada_t2", t2), T(conv, "hada_w2_a", c2a), T(conv, "hada_w2_b", c2b), Alpha(conv, 4)],
                [
                    new(q.Target, (w, s) => w1a.matmul(w1b) * w2a.matmul(w2b) * (s * 2 / 4)),
                    new(conv.Target, (w, s) => Cp(t1, c1a, c1b) * Cp(t2, c2a, c2b) * s),
                ]);
        }
        // LoKr: kron(w1, w2) written out index by index; scale alpha / (w2's inner size) when decomposed
        {
            var (w1a, w1b, w2a, w2b) = (Rs(0.5f, 4, 2), Rs(0.5f, 2, 4), Rs(0.5f, 8, 2), Rs(0.5f, 2, 8));
            var (cw1, ct2, cw2a, cw2b) = (Rs(0.3f, 4, 4), Rs(0.5f, 2, 2, 3, 3), Rs(0.5f, 2, 8), Rs(0.5f, 2, 8));
            Write("lokr", LoraAlgorithm.LoKr,
                [T(q, "lokr_w1_a", w1a), T(q, "lokr_w1_b", w1b), T(q, "lokr_w2_a", w2a), T(q, "lokr_w2_b", w2b), Alpha(q, 1),
                 T(conv, "lokr_w1", cw1), T(conv, "lokr_t2", ct2), T(conv, "lokr_w2_a", cw2a), T(conv, "lokr_w2_b", cw2b), Alpha(conv, 2)],
                [
                    new(q.Target, (w, s) =>
                    {
                        var w1 = w1a.matmul(w1b);
                        var w2 = w2a.matmul(w2b);
                        var e = zeros(32, 32);
                        for (int i = 0; i < 4; i++)
                            for (int j = 0; j < 4; j++)
                                e[(i * 8)..(i * 8 + 8), (j * 8)..(j * 8 + 8)] = w1[i, j] * w2;
                        return e * (s * 1 / 2);
                    }),
                    new(conv.Target, (w, s) =>
                    {
                        var w2 = torch.einsum("ijkl,jr,ip->prkl", ct2, cw2b, cw2a);
                        var e = zeros(32, 32, 3, 3);
                        for (int i = 0; i < 4; i++)
                            for (int j = 0; j < 4; j++)
                                e[(i * 8)..(i * 8 + 8), (j * 8)..(j * 8 + 8)] = cw1[i, j] * w2;
                        return e * (s * 2 / 2);
                    }),
                ]);
        }
        // (IA)³: the weight scaled per output row, or per input column with on_input
        {
            var (wk, wf) = (Pos(32), Pos(32));
            Write("ia3", LoraAlgorithm.IA3,
                [T(k, "weight", wk), T(k, "on_input", tensor(0f)), T(ff, "weight", wf), T(ff, "on_input", tensor(1f))],
                [
                    new(k.Target, (w, s) => w * wk.view(-1, 1) * s),
                    new(ff.Target, (w, s) => w * wf.view(1, -1) * s),
                ]);
        }
        // full: the stored difference, bias included
        {
            var (d, db, dc) = (R(32, 32), R(32), R(32, 32, 3, 3));
            Write("full", LoraAlgorithm.Full, [T(o, "diff", d), T(o, "diff_b", db), T(conv, "diff", dc)],
                [new(o.Target, (w, s) => d * s, s => db * s), new(conv.Target, (w, s) => dc * s)]);
        }
        // norms: differences on GroupNorm and LayerNorm weights and biases
        {
            var (gw, gb, lw, lb) = (R(32), R(32), R(32), R(32));
            Write("norm", LoraAlgorithm.Norm, [T(gn, "w_norm", gw), T(gn, "b_norm", gb), T(ln, "w_norm", lw), T(ln, "b_norm", lb)],
                [new(gn.Target, (w, s) => gw * s, s => gb * s), new(ln.Target, (w, s) => lw * s, s => lb * s)]);
        }
        // GLoRA: (W a1 a2 + b1 b2) · alpha / rank, a1/a2 on the input channels of a convolution
        {
            var (a1, a2, b1, b2) = (R(32, 4), R(4, 32), R(32, 4), R(4, 32));
            var (ca1, ca2, cb1, cb2) = (R(32, 2, 1, 1), R(2, 32, 1, 1), R(32, 2, 1, 1), R(2, 32, 3, 3));
            Write("glora", LoraAlgorithm.GLoRA,
                [T(q, "a1.weight", a1), T(q, "a2.weight", a2), T(q, "b1.weight", b1), T(q, "b2.weight", b2), Alpha(q, 2),
                 T(conv, "a1.weight", ca1), T(conv, "a2.weight", ca2), T(conv, "b1.weight", cb1), T(conv, "b2.weight", cb2), Alpha(conv, 4)],
                [
                    new(q.Target, (w, s) => (w.matmul(a1).matmul(a2) + b1.matmul(b2)) * (s * 2 / 4)),
                    new(conv.Target, (w, s) =>
                    {
                        // the input-channel mix a1 a2 applied to every kernel tap
                        var mix = ca1.view(32, 2).matmul(ca2.view(2, 32));
                        var e = zeros(32, 32, 3, 3);
                        for (int y = 0; y < 3; y++)
                            for (int x = 0; x < 3; x++)
                                e[.., .., y, x] = w[.., .., y, x].matmul(mix);
                        return (e + cb1.view(32, 2).matmul(cb2.view(2, -1)).view(32, 32, 3, 3)) * (s * 4 / 2);
                    }),
                ]);
        }
        // OFT: kohya's Cayley blocks (norm clamped to alpha · out) and LyCORIS' stored rotations
        {
            var (blocks, diag) = (R(4, 8, 8) * 3, R(4, 8, 8));
            const float alpha = 0.01f;
            Write("oft", LoraAlgorithm.Oft, [T(q, "oft_blocks", blocks), Alpha(q, alpha), T(k, "oft_diag", diag)],
                [
                    new(q.Target, (w, s) =>
                    {
                        var qm = blocks - blocks.transpose(1, 2);
                        double n = qm.norm().item<float>(), c = alpha * 32;
                        qm = qm * ((Math.Min(n, c) + 1e-8) / (n + 1e-8));
                        var eye = torch.eye(8).expand(4, 8, 8);
                        // R = (I + Q)(I − Q)^-1  <=>  (I − Q)ᵀ Rᵀ = (I + Q)ᵀ
                        var rt = torch.linalg.solve((eye - qm).transpose(1, 2), (eye + qm).transpose(1, 2));
                        return RotateRows(w, rt.transpose(1, 2)).sub_(w) * s;
                    }),
                    new(k.Target, (w, s) => RotateRows(w, diag).sub_(w) * s),
                ]);
        }
        // BOFT: the butterfly stages as explicit permutation and block-diagonal matrices
        {
            var blocks = R(2, 4, 8, 8) * 3;
            Write("boft", LoraAlgorithm.Boft, [T(q, "oft_blocks", blocks), Alpha(q, 0)],
                [new(q.Target, (w, s) => Butterfly(blocks, 8, s).matmul(w) - w)]);
        }
        // DoRA: LoRA then the weight decomposition, per input column (kohya) and per output row
        {
            var (down, up, m) = (R(4, 32), R(32, 4), Pos(1, 32));
            var (cd, cu, cm) = (R(2, 32, 3, 3), R(32, 2, 1, 1), Pos(32, 1, 1, 1));
            Write("dora", LoraAlgorithm.LoCon,
                [T(q, "lora_down.weight", down), T(q, "lora_up.weight", up), Alpha(q, 4), T(q, "dora_scale", m),
                 T(conv, "lora_down.weight", cd), T(conv, "lora_up.weight", cu), Alpha(conv, 2), T(conv, "dora_scale", cm)],
                [
                    new(q.Target, (w, s) => (ColumnScaled(w + up.matmul(down), m.view(-1)) - w) * s),
                    new(conv.Target, (w, s) => (RowScaled(w + cu.view(32, 2).matmul(cd.view(2, -1)).view(32, 32, 3, 3), cm.view(-1)) - w) * s),
                ]);
        }
        // peft / diffusers names: lora_A/lora_B with a per-output magnitude vector
        {
            var (a, b, m) = (R(4, 32), R(32, 4), Pos(32));
            string key = "unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_k";
            var path = Path.Combine(dir, "peft-dora.safetensors");
            SafetensorsWriter.Write(path, [new(key + ".lora_A.weight", a), new(key + ".lora_B.weight", b), new(key + ".lora_magnitude_vector", m)],
                                    new Dictionary<string, string> { ["lora_adapter_metadata"] = "{\"unet.lora_alpha\": 8, \"unet.r\": 4}" });
            samples.Add(new Sample("peft-dora", LoraAlgorithm.Lora, path,
                [new(k.Target, (w, s) => (RowScaled(w + b.matmul(a) * 2, m) - w) * s)]));
        }
        return samples;
    }

    /// <summary>Rows of <paramref name="w"/> in blocks of n: block k becomes R[k]ᵀ · block (A1111's einsum 'k n m, k n ... -> k m ...').</summary>
    static Tensor RotateRows(Tensor w, Tensor r)
    {
        long kCount = r.shape[0], n = r.shape[1];
        var flat = w.reshape(w.shape[0], -1);
        var result = zeros_like(flat);
        for (long b = 0; b < kCount; b++)
            result[(int)(b * n)..(int)(b * n + n)] = r[b].transpose(0, 1).matmul(flat[(int)(b * n)..(int)(b * n + n)]);
        return result.reshape(w.shape);
    }

    /// <summary>The [out, out] matrix of BOFT's stages (Cayley, no clamp, strength-blended), applied in order.</summary>
    static Tensor Butterfly(Tensor blocks, long b, double s)
    {
        long m = blocks.shape[0], kCount = blocks.shape[1], outDim = kCount * b;
        var total = torch.eye(outDim);
        for (int i = 0; i < m; i++)
        {
            var qm = blocks[i] - blocks[i].transpose(1, 2);
            var eye = torch.eye(b).expand(kCount, b, b);
            var rt = torch.linalg.solve((eye - qm).transpose(1, 2), (eye + qm).transpose(1, 2));
            var r = rt.transpose(1, 2) * s + eye * (1 - s);
            // new row g·2k + j·2 + t takes old row g·2k + t·k + j
            long stride = (1L << i) * (b / 2);
            var p = zeros(outDim, outDim);
            for (long row = 0; row < outDim; row++)
            {
                long group = row / (2 * stride), within = row % (2 * stride), j = within / 2, t = within % 2;
                p[row, group * 2 * stride + t * stride + j] = 1;
            }
            var bd = zeros(outDim, outDim);
            for (long blk = 0; blk < kCount; blk++) bd[(int)(blk * b)..(int)(blk * b + b), (int)(blk * b)..(int)(blk * b + b)] = r[blk];
            total = p.transpose(0, 1).matmul(bd).matmul(p).matmul(total);
        }
        return total;
    }

    /// <summary>Each input column rescaled to the magnitude m[i] (norm over the other dims).</summary>
    static Tensor ColumnScaled(Tensor w, Tensor m)
    {
        var result = w.clone();
        for (int i = 0; i < w.shape[1]; i++)
            result[.., i] = w[.., i] * (m[i] / w[.., i].norm());
        return result;
    }

    /// <summary>Each output row rescaled to the magnitude m[o].</summary>
    static Tensor RowScaled(Tensor w, Tensor m)
    {
        var result = w.clone();
        for (int o = 0; o < w.shape[0]; o++)
            result[o] = w[o] * (m[o] / w[o].norm());
        return result;
    }
}
