using TorchSharp;
using static TorchSharp.torch;

namespace LoraCraft.Models;

/// <summary>
/// Gradient checkpointing (torch.utils.checkpoint's reentrant form, which TorchSharp lacks): a
/// block runs without recording in the forward pass, and is run again, recording, when backward
/// reaches it; memory then holds one block's activations instead of the whole network's.
/// Random numbers drawn inside the block (dropout of a trained LoRA) come from
/// <see cref="Random"/>, whose state is rewound for the rerun so it draws the same ones.
/// </summary>
public sealed class GradientCheckpointing
{
    /// <summary>The generator blocks draw from (may change between steps); null when none is used.</summary>
    public Generator? Random { get; set; }

    /// <summary>Runs <paramref name="block"/> on <paramref name="inputs"/>, checkpointed when autograd records.</summary>
    public Tensor Run(Func<Tensor[], Tensor> block, params Tensor[] inputs)
    {
        if (!Autograd.Recording) return block(inputs);
        // the node must exist even when no input needs a gradient: the weights inside the block may
        using var anchor = torch.zeros(0).requires_grad_(true);
        object[] args = [block, new RandomSnapshot(Random), anchor, .. inputs];
        return CheckpointFunction.apply(args)[0];
    }

    sealed class RandomSnapshot(Generator? generator)
    {
        public Generator? Generator { get; } = generator;
        public Tensor? State { get; set; }
    }

    sealed class CheckpointFunction : torch.autograd.MultiTensorFunction<CheckpointFunction>
    {
        public override string Name => "LoraCraftCheckpoint";

        public override List<Tensor> forward(torch.autograd.AutogradContext ctx, params object[] vars)
        {
            var block = (Func<Tensor[], Tensor>)vars[0];
            var random = (RandomSnapshot)vars[1];
            var inputs = vars.Skip(3).Cast<Tensor>().ToArray();
            random.State = random.Generator?.get_state().DetachFromDisposeScope();
            ctx.save_data("block", block);
            ctx.save_data("random", random);
            ctx.save_for_backward(inputs.ToList());
            // TorchSharp runs forward with grad mode off: nothing inside is recorded
            return [block(inputs)];
        }

        public override List<Tensor> backward(torch.autograd.AutogradContext ctx, List<Tensor> gradOutputs)
        {
            var block = (Func<Tensor[], Tensor>)ctx.get_data("block");
            var random = (RandomSnapshot)ctx.get_data("random");
            var saved = ctx.get_saved_variables();
            var grads = new List<Tensor>(saved.Count + 3) { null!, null!, null! };
            Tensor? after = null;
            using (var scope = NewDisposeScope())
            {
                var inputs = saved.Select(t => t.detach().requires_grad_(t.requires_grad)).ToArray();
                if (random is { Generator: { } g, State: { } state })
                {
                    after = g.get_state().DetachFromDisposeScope();
                    g.set_state(state);
                }
                using (torch.enable_grad())
                {
                    var output = block(inputs);
                    // a block with nothing to train and no input needing a gradient has nothing to pass back
                    // (an exception here would cross native code: it must not be thrown)
                    if (output.requires_grad) torch.autograd.backward([output], [gradOutputs[0]]);
                }
                foreach (var x in inputs) grads.Add(x.requires_grad && x.grad is { } gx ? gx.MoveToOuterDisposeScope() : null!);
            }
            if (after is not null)
            {
                random.Generator!.set_state(after);
                after.Dispose();
            }
            random.State?.Dispose();
            random.State = null;
            return grads;
        }
    }
}
