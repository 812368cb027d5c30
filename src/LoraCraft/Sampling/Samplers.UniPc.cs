using static TorchSharp.torch;

namespace LoraCraft.Sampling;

public static partial class Samplers
{
    /// <summary>
    /// UniPC (Zhao et al. 2023), the multistep predictor-corrector on the data prediction as ComfyUI
    /// runs it: `uni_pc` (B(h) = h) and `uni_pc_bh2` (B(h) = e^h - 1), order min(3, steps - 1),
    /// lower orders while the history fills and over the last steps, the corrector's model call
    /// reused by the next step (one call per step), no corrector on the last step, and a final
    /// sigma of 0 replaced by 0.001. ComfyUI works on x / sqrt(1 + sigma^2); on k-diffusion's x, as
    /// here, those factors cancel. With one step ComfyUI returns x unsampled; here it takes one
    /// first-order step.
    /// </summary>
    public static Tensor UniPc(Denoiser model, Tensor x, float[] sigmas, SamplerContext ctx, bool bh2)
    {
        int n = sigmas.Length - 1;
        var s = (float[])sigmas.Clone();
        if (s[n] == 0) s[n] = 0.001f;
        int order = Math.Clamp(n - 1, 1, 3);
        // the last `order` model outputs and their sigmas, newest last
        var hs = new List<float> { s[0] };
        var ds = new List<Tensor> { model(x, s[0]) };
        for (int i = 1; i <= n; i++)
        {
            int stepOrder = i < order ? i : Math.Min(order, n + 1 - i);
            var (next, denoised) = UniPcStep(model, x, hs, ds, s[i], stepOrder, corrector: i < n, bh2);
            x = Replace(x, next);
            if (denoised is not null)
            {
                hs.Add(s[i]);
                ds.Add(denoised);
                if (ds.Count > order)
                {
                    hs.RemoveAt(0);
                    ds[0].Dispose();
                    ds.RemoveAt(0);
                }
            }
            ctx.Step(i - 1, n, x, ds[^1]);
        }
        foreach (var d in ds) d.Dispose();
        return x;
    }

    /// <summary>
    /// One step from hs[^1] to <paramref name="sigma"/> using the newest <paramref name="order"/>
    /// outputs: returns the new x and, when correcting, the model output at the predicted x.
    /// </summary>
    static (Tensor X, Tensor? Denoised) UniPcStep(Denoiser model, Tensor x, List<float> hs, List<Tensor> ds,
        float sigma, int order, bool corrector, bool bh2)
    {
        double lambda0 = -Math.Log(hs[^1]), h = -Math.Log(sigma) - lambda0;
        var m0 = ds[^1];
        // older outputs as differences to the newest, divided by their offset r_k in units of h
        var r = new double[order];
        var d1 = new Tensor[order - 1];
        for (int k = 1; k < order; k++)
        {
            r[k - 1] = (-Math.Log(hs[^(k + 1)]) - lambda0) / h;
            d1[k - 1] = (ds[^(k + 1)] - m0).DivInPlace(r[k - 1]);
        }
        r[order - 1] = 1;

        // order conditions R rho = b: R[i, k] = r_k^i, b from the phi functions of -h
        double hh = -h, hPhi1 = double.ExpM1(hh), hPhiK = hPhi1 / hh - 1, factorial = 1;
        double bH = bh2 ? hPhi1 : hh;
        var R = new double[order, order];
        var b = new double[order];
        for (int i = 0; i < order; i++)
        {
            for (int k = 0; k < order; k++) R[i, k] = Math.Pow(r[k], i);
            b[i] = hPhiK * factorial / bH;
            factorial *= i + 2;
            hPhiK = hPhiK / hh - 1 / factorial;
        }

        using var first = Combine(x, (double)sigma / hs[^1], m0, hPhi1); // DPM-Solver++(1)
        var predicted = first.clone();
        if (order > 1)
        {
            double[] rhoP = order == 2 ? [0.5] : Solve(R, b, order - 1);
            for (int k = 0; k < d1.Length; k++) predicted.AddInPlace(d1[k], -bH * rhoP[k]);
        }
        if (!corrector)
        {
            foreach (var d in d1) d.Dispose();
            return (predicted, null);
        }

        var mt = model(predicted, sigma);
        predicted.Dispose();
        double[] rhoC = order == 1 ? [0.5] : Solve(R, b, order);
        var corrected = first.clone();
        for (int k = 0; k < d1.Length; k++) corrected.AddInPlace(d1[k], -bH * rhoC[k]);
        using var d1t = mt - m0;
        corrected.AddInPlace(d1t, -bH * rhoC[^1]);
        foreach (var d in d1) d.Dispose();
        return (corrected, mt);
    }

    /// <summary>Solves the leading m x m block of a x = b (m &lt;= 3) by Gaussian elimination with pivoting.</summary>
    static double[] Solve(double[,] a, double[] b, int m)
    {
        var M = new double[m, m + 1];
        for (int i = 0; i < m; i++)
        {
            for (int j = 0; j < m; j++) M[i, j] = a[i, j];
            M[i, m] = b[i];
        }
        for (int c = 0; c < m; c++)
        {
            int p = c;
            for (int i = c + 1; i < m; i++) if (Math.Abs(M[i, c]) > Math.Abs(M[p, c])) p = i;
            for (int j = 0; j <= m; j++) (M[c, j], M[p, j]) = (M[p, j], M[c, j]);
            for (int i = c + 1; i < m; i++)
            {
                double f = M[i, c] / M[c, c];
                for (int j = c; j <= m; j++) M[i, j] -= f * M[c, j];
            }
        }
        var x = new double[m];
        for (int i = m - 1; i >= 0; i--)
        {
            double sum = M[i, m];
            for (int j = i + 1; j < m; j++) sum -= M[i, j] * x[j];
            x[i] = sum / M[i, i];
        }
        return x;
    }
}
