using System.Diagnostics;
using LoraCraft.Models;
using LoraCraft.Models.Loading;
using LoraCraft.Pipelines;
using LoraCraft.Sampling;
using TorchSharp;
using static TorchSharp.torch;

namespace LoraCraft.Training;

/// <summary>
/// LoRA training as kohya's `train_network.py` does it, on the inference modules:
/// for epoch … for batch …: latents → noise → timesteps → noisy → prediction → loss → backward,
/// and every `accumulation` batches clip → optimizer step → schedule; saving, sampling, logging
/// and the NaN guard are hooks at the end of a step. Plain data in (<see cref="TrainingOptions"/>),
/// events out (<see cref="TrainingEvent"/>), cancellable: a cancel stops at the next step
/// boundary and writes a resumable state.
/// </summary>
public static class LoraTrainer
{
    public const string Version = "loracraft 0.1.0";

    public static TrainingResult Run(TrainingOptions options, IProgress<TrainingEvent>? progress = null, CancellationToken cancel = default)
    {
        using var run = new TrainingRun(options, progress, cancel);
        return run.Execute();
    }

    sealed class TrainingRun(TrainingOptions o, IProgress<TrainingEvent>? progress, CancellationToken cancel) : IDisposable
    {
        readonly DiffusionLoss _diffusion = new();
        readonly LossRecorder _recorder = new();
        readonly List<string> _saved = new();
        TrainingDataset? _data;
        StableDiffusionModel? _model;
        LoraNetwork? _network;
        Optimizer? _optimizer;
        GradientCheckpointing? _checkpointing;
        List<SamplePrompt>? _prompts;
        TrainingPlan _plan = null!;
        LearningRateSchedule _schedule = null!;
        TrainingMetadata _metadata = null!;
        LossLog _log = null!;
        long _seed;
        string? _lastSave, _lastState;
        bool _trainText, _trainUNet;
        int _lastSampledStep = -1;

        void Report(TrainingEvent e) => progress?.Report(e);
        void Note(string text) => Report(new TrainingNote(text));

        public TrainingResult Execute()
        {
            // 1. everything that needs no model
            Report(new TrainingPhase("scan", "checking settings, images and captions"));
            TrainingSetup.Validate(o);
            var specs = TrainingSetup.Datasets(o, Note);
            _data = TrainingDataset.Scan(specs);
            foreach (var n in _data.Notes) Note(n);
            _plan = TrainingSetup.Plan(o, _data);
            _schedule = new LearningRateSchedule(o.LrScheduler, _plan.WarmupSteps, _plan.TotalSteps, o.LrSchedulerNumCycles, o.LrSchedulerPower);
            _schedule.Validate();
            _prompts = o.SamplePrompts is { } sp ? SamplePrompts.Load(sp) : null;
            TrainingStateInfo? resume = o.Resume is { } r ? TrainingState.ReadInfo(r) : null;
            _seed = resume?.Seed ?? o.Seed ?? Random.Shared.NextInt64(0, uint.MaxValue);
            Directory.CreateDirectory(o.OutputDir);
            var fingerprint = TrainingSetup.Fingerprint(o, _data, _plan);
            if (resume is not null && resume.Fingerprint != fingerprint)
                throw new UserErrorException($"resume: {o.Resume} was saved with other settings (network, optimizer, schedule, steps or images differ); " +
                                             "resume with the settings of the run that wrote it");
            _trainUNet = o.Network.TrainUNet && (o.UNetLearningRate ?? o.LearningRate) > 0;
            _trainText = o.Network.TrainTextEncoder && (o.TextEncoderLearningRate ?? o.LearningRate) > 0;

            // 2. the model, the network, the optimizer
            Report(new TrainingPhase("load", o.ModelPath));
            var dtype = o.MixedPrecision == "bf16" ? ScalarType.BFloat16 : ScalarType.Float32;
            _model = CheckpointLoader.Load(o.ModelPath, new LoadOptions
            {
                ConfigDir = o.ConfigDir, TokenizerDir = o.TokenizerDir, Prediction = o.Prediction, DType = dtype,
                Device = Runtime.Compute.ParseDevice(o.Device),
            });
            if (_model.Inpainting) throw new UserErrorException("training a LoRA on an inpainting model is not supported (9-channel UNet)");
            _network = LoraNetwork.Attach(_model, o.Network with { TrainUNet = _trainUNet, TrainTextEncoder = _trainText }, RunSeeds.Derive((ulong)_seed, RunSeeds.Init));
            var groups = new List<ParameterGroup>();
            if (_trainText) groups.Add(new ParameterGroup("text_encoder", _network.Parameters(textEncoder: true).ToList(), o.TextEncoderLearningRate ?? o.LearningRate));
            if (_trainUNet) groups.Add(new ParameterGroup("unet", _network.Parameters(textEncoder: false).ToList(), o.UNetLearningRate ?? o.LearningRate));
            _optimizer = Optimizer.Create(o.Optimizer, groups, o.OptimizerSettings);
            if (o.GradientCheckpointing) _model.UNet.Checkpointing = _checkpointing = new GradientCheckpointing();
            long started = resume?.TrainingStartedAt ?? DateTimeOffset.UtcNow.ToUnixTimeSeconds();
            long session = resume?.SessionId ?? Random.Shared.NextInt64(0, int.MaxValue);
            _metadata = new TrainingMetadata(o, _model, _data, _network, _optimizer, _schedule, _plan.Epochs, _seed, session, started, Version);
            Report(new TrainingPlanned(_plan.TotalSteps, _plan.Epochs, _plan.BatchesPerEpoch, _data.TrainUses, _data.RegUses, _network.Modules.Count, _network.ParameterCount, _seed));
            Note(FormattableString.Invariant($"LoRA: {_network.Modules.Count} modules, rank {o.Network.Dim}, alpha {o.Network.Alpha} (scale {o.Network.Alpha / o.Network.Dim:0.####})") +
                 (o.Network.ConvDim is { } cd ? FormattableString.Invariant($", conv rank {cd}, alpha {o.Network.ConvAlpha}") : "") +
                 $"; training {(_trainUNet && _trainText ? "UNet and text encoder" : _trainUNet ? "UNet only" : "text encoder only")}");

            // 3. latents, once, when cached
            if (o.CacheLatents || o.CacheLatentsToDisk)
            {
                Report(new TrainingPhase("cache", "encoding the images with the VAE"));
                LatentCache.Fill(_model, _data, (ulong)_seed, o.CacheLatentsToDisk, ModelIdentity(), (d, t) => Report(new TrainingPreparing("cache", d, t)), Note, cancel);
            }

            // 4. where to start
            int step = 0, startEpoch = 0, startBatch = 0;
            _log = new LossLog(o.OutputDir, o.OutputName);
            if (resume is not null)
            {
                TrainingState.Load(o.Resume!, resume, _network, _optimizer);
                step = resume.Step;
                startEpoch = resume.Epoch;
                startBatch = resume.BatchInEpoch;
                _recorder.Load(resume.RecentLosses, resume.RecentLossTotal);
                _log.ContinueFrom(step);
                _lastState = o.Resume;
                Note($"resumed from {o.Resume} at step {step} (epoch {startEpoch + 1}, batch {startBatch})");
            }
            return Train(step, startEpoch, startBatch, fingerprint);
        }

        TrainingResult Train(int step, int startEpoch, int startBatch, string fingerprint)
        {
            Report(new TrainingPhase("train", FormattableString.Invariant($"{_plan.TotalSteps} steps, {_plan.Epochs} epochs")));
            if (o.SampleAtFirst && step == 0 && _prompts is not null) Sample(step, epoch: null);
            var clock = Stopwatch.StartNew();
            int stepsThisRun = 0;
            int accum = o.GradientAccumulationSteps;
            for (int epoch = startEpoch; epoch < _plan.Epochs && step < _plan.TotalSteps; epoch++)
            {
                var batches = _data!.EpochBatches((ulong)_seed, epoch);
                int first = epoch == startEpoch ? startBatch : 0;
                int stepInEpoch = first / accum;
                double accumulatedLoss = 0;
                int micro = 0;
                for (int b = first; b < batches.Count && step < _plan.TotalSteps; b++)
                {
                    double loss = MicroStep(batches[b], RunSeeds.Derive((ulong)_seed, RunSeeds.Step, (ulong)epoch * (ulong)_plan.BatchesPerEpoch + (ulong)b), step, epoch);
                    accumulatedLoss += loss;
                    micro++;
                    bool boundary = micro == accum || b == batches.Count - 1;
                    if (!boundary) continue;
                    double factor = _schedule.Factor(step);
                    if (o.MaxGradNorm > 0) Optimizer.ClipGradNorm(_optimizer!.Groups.SelectMany(g => g.Parameters), o.MaxGradNorm);
                    _optimizer!.Step(factor);
                    _optimizer.ZeroGrad();
                    step++;
                    stepsThisRun++;
                    double stepLoss = accumulatedLoss / micro;
                    accumulatedLoss = 0;
                    micro = 0;
                    _recorder.Add(epoch, stepInEpoch, stepLoss);
                    stepInEpoch++;
                    double lr = _optimizer.Groups[^1].LearningRate * factor;
                    double perStep = clock.Elapsed.TotalSeconds / stepsThisRun;
                    _log.Add(step, epoch + 1, stepLoss, _recorder.MovingAverage, lr);
                    Report(new TrainingStep(step, _plan.TotalSteps, epoch + 1, _plan.Epochs, stepLoss, _recorder.MovingAverage, lr, perStep, perStep * (_plan.TotalSteps - step)));
                    bool epochDone = b == batches.Count - 1;
                    // hooks at the end of a step
                    if (step % o.ChartEverySteps == 0) Chart();
                    if (o.SampleEveryNSteps is { } se && step % se == 0 && _prompts is not null) Sample(step, epoch: null);
                    if (o.SaveEveryNSteps is { } ss && step % ss == 0 && step < _plan.TotalSteps)
                    {
                        SaveLora(TrainingSetup.StepName(o.OutputName, step), step, epoch + 1, final: false);
                        if (o.SaveState) SaveState(TrainingSetup.StepName(o.OutputName, step) + "-state", step, epoch, b + 1, batches.Count, fingerprint);
                    }
                    if (epochDone && step < _plan.TotalSteps)
                    {
                        if (o.SaveEveryNEpochs is { } sn && (epoch + 1) % sn == 0)
                        {
                            SaveLora(TrainingSetup.EpochName(o.OutputName, epoch + 1), step, epoch + 1, final: false);
                            if (o.SaveState) SaveState(TrainingSetup.EpochName(o.OutputName, epoch + 1) + "-state", step, epoch, b + 1, batches.Count, fingerprint);
                            RemoveOldEpochs(epoch + 1);
                        }
                        if (o.SampleEveryNEpochs is { } sm && (epoch + 1) % sm == 0 && _prompts is not null) Sample(step, epoch + 1);
                    }
                    if (cancel.IsCancellationRequested && step < _plan.TotalSteps)
                    {
                        Chart();
                        var dir = Path.Combine(o.OutputDir, TrainingSetup.StepName(o.OutputName, step) + "-state");
                        SaveState(Path.GetFileName(dir), step, epoch, b + 1, batches.Count, fingerprint);
                        return new TrainingResult { Cancelled = true, Steps = step, StateDir = _lastState, Seed = _seed, Saved = _saved, FinalAverageLoss = _recorder.MovingAverage };
                    }
                }
            }
            // the end: the final file (and state), the chart, the last samples
            int lastEpoch = Math.Min(_plan.Epochs, (step + _plan.StepsPerEpoch - 1) / _plan.StepsPerEpoch);
            var final = SaveLora(o.OutputName, step, lastEpoch, final: true);
            if (o.SaveState) SaveState(o.OutputName + "-state", step, _plan.Epochs, 0, 0, fingerprint);
            Chart();
            if (_prompts is not null && _lastSampledStep != step && (o.SampleEveryNEpochs is not null || o.SampleEveryNSteps is not null))
                Sample(step, o.SampleEveryNEpochs is not null ? lastEpoch : null);
            return new TrainingResult { LoraPath = final, Steps = step, StateDir = _lastState, Seed = _seed, Saved = _saved, FinalAverageLoss = _recorder.MovingAverage };
        }

        /// <summary>One batch forward and backward; returns its loss. Every draw comes from the batch's own generator.</summary>
        double MicroStep(TrainingBatch batch, ulong seed, int step, int epoch)
        {
            using var random = new Generator(seed);
            _network!.Random = random;
            if (_checkpointing is not null) _checkpointing.Random = random;
            using var scope = NewDisposeScope();
            var model = _model!;
            var latents = Latents(batch, random);
            var captions = batch.Images.Select(i => Captions.Process(i.Caption, i.Subset.Caption, random)).ToList();
            Tensor context;
            Tensor? pooled;
            if (_trainText) (context, pooled) = CaptionEncoder.Encode(model, captions, o.ClipSkip, o.MaxTokenLength);
            else using (torch.no_grad()) (context, pooled) = CaptionEncoder.Encode(model, captions, o.ClipSkip, o.MaxTokenLength);
            var noise = torch.randn(latents.shape, generator: random);
            if (o.NoiseOffset > 0) noise = noise.Add(torch.randn([latents.shape[0], latents.shape[1], 1, 1], generator: random).Mul(o.NoiseOffset));
            using var tt = torch.randint(0, DiffusionLoss.TrainSteps, [latents.shape[0]], ScalarType.Int64, generator: random);
            var t = tt.data<long>().ToArray().Select(v => (int)v).ToArray();
            var noisy = _diffusion.AddNoise(latents, noise, t);
            Tensor? y = null;
            if (model.Family == ModelFamily.Sdxl) y = model.UNet.SdxlVector(pooled!, SdxlTimeIds(batch));
            var timesteps = torch.tensor(t.Select(v => (float)v).ToArray());
            var prediction = model.UNet.Forward(noisy, timesteps, context, y);
            var kind = TrainingSetup.PredictionOf(o, model);
            var target = kind == Prediction.V ? _diffusion.Velocity(latents, noise, t) : noise;
            var weights = batch.Images.Select(i => i.Subset.IsReg ? o.PriorLossWeight : 1.0).ToArray();
            var loss = _diffusion.Loss(prediction, target, t, weights, o.Loss, kind);
            double value = loss.item<float>();
            if (!double.IsFinite(value)) Diverged(step + 1, epoch + 1, value);
            (o.GradientAccumulationSteps == 1 ? loss : loss.Div(o.GradientAccumulationSteps)).backward();
            _network.Random = null;
            return value;
        }

        Tensor Latents(TrainingBatch batch, Generator random)
        {
            var list = new List<Tensor>();
            foreach (var image in batch.Images)
            {
                bool flip = image.Subset.FlipAug && torch.rand(1, generator: random).item<float>() < 0.5f;
                if (image.Latent is not null) list.Add(flip && image.FlippedLatent is not null ? image.FlippedLatent : image.Latent);
                else
                {
                    using var pixels = ImagePreparation.Load(image, flip);
                    list.Add(LatentCache.Encode(_model!, pixels.unsqueeze(0), random)[0]);
                }
            }
            return torch.stack(list);
        }

        /// <summary>SDXL size conditioning per image: original size, kohya's crop top/left, bucket size.</summary>
        static Tensor SdxlTimeIds(TrainingBatch batch)
        {
            var ids = new List<float>();
            foreach (var i in batch.Images)
            {
                double bucketAr = batch.Width / (double)batch.Height, imageAr = i.Width / (double)i.Height;
                double rw = bucketAr > imageAr ? batch.Height * imageAr : batch.Width;
                double rh = bucketAr > imageAr ? batch.Height : batch.Width / imageAr;
                double left = Math.Floor((batch.Width - rw) / 2), top = Math.Floor((batch.Height - rh) / 2);
                ids.AddRange([i.Height, i.Width, (float)top, (float)left, batch.Height, batch.Width]);
            }
            return torch.tensor(ids.ToArray(), [batch.Images.Count, 6]);
        }

        void Diverged(int step, int epoch, double value)
        {
            Chart();
            string kept = _lastSave is null ? "no LoRA had been saved yet" : $"the last good save is {_lastSave}";
            throw new TrainingDivergedException(
                $"the loss became {(double.IsNaN(value) ? "NaN" : "infinite")} at step {step} (epoch {epoch}): training stopped and nothing after the " +
                $"last good save was written ({kept}). Lower the learning rate, or use bf16 / fp32 rather than fp16 weights");
        }

        string SaveLora(string name, int step, int epoch, bool final)
        {
            var path = Path.Combine(o.OutputDir, name + ".safetensors");
            var dtype = TrainingSetup.SaveDType(o.SavePrecision);
            var tensors = _network!.StateDict(dtype);
            try { IO.SafetensorsWriter.Write(path, tensors, _metadata.ForSave(step, epoch, tensors)); }
            finally { foreach (var t in tensors) t.Value.Dispose(); }
            _lastSave = path;
            _saved.Add(path);
            Report(new TrainingSaved(path, step, epoch, final));
            return path;
        }

        void SaveState(string name, int step, int epoch, int batchInEpoch, int batchesInEpoch, string fingerprint)
        {
            // a state at the end of an epoch continues with the next one
            if (batchesInEpoch > 0 && batchInEpoch >= batchesInEpoch) { epoch++; batchInEpoch = 0; }
            var dir = Path.Combine(o.OutputDir, name);
            var info = new TrainingStateInfo
            {
                Step = step, Epoch = epoch, BatchInEpoch = batchInEpoch, Seed = _seed, OptimizerSteps = _optimizer!.StepCount,
                RecentLosses = _recorder.Values.ToArray(), RecentLossTotal = _recorder.Total, Fingerprint = fingerprint,
                SessionId = _metadata.SessionId, TrainingStartedAt = _metadata.StartedAt,
            };
            TrainingState.Save(dir, info, _network!, _optimizer);
            _lastState = dir;
            Report(new TrainingStateSaved(dir, step));
        }

        void RemoveOldEpochs(int epoch)
        {
            if (o.SaveLastNEpochs is not { } keep || o.SaveEveryNEpochs is not { } every) return;
            int old = epoch - every * keep;
            if (old < 1) return;
            var path = Path.Combine(o.OutputDir, TrainingSetup.EpochName(o.OutputName, old) + ".safetensors");
            if (File.Exists(path)) File.Delete(path);
            var state = Path.Combine(o.OutputDir, TrainingSetup.EpochName(o.OutputName, old) + "-state");
            if (Directory.Exists(state)) Directory.Delete(state, true);
        }

        void Chart()
        {
            _log.WriteCsv();
            _log.DrawChart();
            Report(new TrainingChart(_log.ChartPath, _log.CsvPath));
        }

        /// <summary>Sample images with the LoRA as it is now (dropout off), kohya's names, under OUTPUT/sample.</summary>
        void Sample(int step, int? epoch)
        {
            _lastSampledStep = step;
            var dir = Path.Combine(o.OutputDir, "sample");
            Directory.CreateDirectory(dir);
            var paths = new List<string>();
            _network!.Training = false;
            try
            {
                var now = DateTime.Now;
                for (int i = 0; i < _prompts!.Count; i++)
                {
                    var p = _prompts[i];
                    string sampler = p.Sampler ?? SamplePrompts.ResolveSampler(o.SampleSampler);
                    var request = new GenerationRequest
                    {
                        Prompt = p.Prompt, Negative = p.Negative, Width = p.Width, Height = p.Height, Steps = p.Steps, Cfg = p.Scale,
                        Seed = p.Seed is { } fixedSeed ? unchecked((ulong)fixedSeed) : RunSeeds.Derive((ulong)_seed, RunSeeds.Samples, (ulong)i) % uint.MaxValue,
                        Sampler = sampler, Scheduler = sampler == "ddim" ? "ddim_uniform" : "normal", ClipSkip = o.ClipSkip,
                    };
                    using var result = StableDiffusionPipeline.Generate(_model!, request, new SamplerContext(null, cancel));
                    var path = Path.Combine(dir, SamplePrompts.FileName(o.OutputName, epoch, step, i, now, p.Seed));
                    var parameters = GenerationParameters.Describe(request, Path.GetFileNameWithoutExtension(o.ModelPath), null, Version,
                        [new("LoRA training", FormattableString.Invariant($"{o.OutputName} step {step}"))]);
                    ImageFiles.SavePng(path, result.Image, new Dictionary<string, string> { [ImageFiles.ParametersKey] = parameters.Format() });
                    paths.Add(path);
                }
            }
            catch (OperationCanceledException) { /* a cancel during sampling: the state is saved after the step */ }
            finally { _network.Training = true; }
            Runtime.Compute.ReleaseFreedMemory();
            if (paths.Count > 0) Report(new TrainingSamples(step, paths));
        }

        string ModelIdentity()
        {
            var info = new FileInfo(o.ModelPath);
            return info.Exists ? FormattableString.Invariant($"{info.Name}:{info.Length}:{info.LastWriteTimeUtc.Ticks}") : Path.GetFullPath(o.ModelPath);
        }

        public void Dispose()
        {
            _optimizer?.Dispose();
            _network?.Dispose();
            _data?.Dispose();
            _model?.Dispose();
        }
    }
}
