"""What X3D-M's 4-clip BatchNorm (``models.bn_span``) costs against plain BatchNorm, on one
process at the global batch of 16 (4 chunks of 4 clips per BatchNorm layer).

Two measurements, each in alternating turns (plain, span, span, plain, ...), medians of wall
and process CPU time:

- the training step: forward, cross-entropy, backward and the workload's SGD update;
- the BatchNorm layers alone: forward and backward of every BatchNorm layer of the model at
  the input shape it sees in that step (recorded with hooks), so the difference is not lost
  in the step's noise.

It also prints what the span adds on a GPU per step at the workload's 16x224x224 (counted on
the meta device, nothing run): kernel launches and the bytes of the extra copy.

    .venv/bin/python perf/bn_span_cost.py                 # 16x112x112, batch 16
    .venv/bin/python perf/bn_span_cost.py --crop 224      # the workload's clip (slow on CPU)
"""

import argparse
import os
import platform
import statistics
import sys

import torch
import torch.nn as nn
from tqdm import tqdm

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import models  # noqa: E402
from models.bn_span import apply_bn_span  # noqa: E402
from perf.model_step import make_step, time_in_turns  # noqa: E402

BATCH = 16
SPAN = 4
CONTENDERS = ("plain BatchNorm", "4-clip BatchNorm")


def build(span: int | None, crop: int, clip_len: int) -> nn.Module:
    torch.manual_seed(0)
    model = models.build("x3d_m", 20, clip_len=clip_len, crop_size=crop)
    return apply_bn_span(model, span, BATCH)


def norm_inputs(model: nn.Module, x: torch.Tensor) -> list[tuple[nn.Module, torch.Size]]:
    """Every BatchNorm layer with the shape of its input in a forward of ``x``."""
    seen: list[tuple[nn.Module, torch.Size]] = []
    hooks = [m.register_forward_pre_hook(lambda m, args: seen.append((m, args[0].shape)))
             for m in model.modules() if isinstance(m, nn.BatchNorm3d)]
    with torch.no_grad():
        model(x)
    for hook in hooks:
        hook.remove()
    return seen


def norms_step(model: nn.Module, x: torch.Tensor, span: int | None):
    """Forward and backward of each BatchNorm layer alone, on random inputs of its shape."""
    layers = [(apply_bn_span(nn.BatchNorm3d(shape[1]), span, BATCH).train(),
               torch.randn(shape, requires_grad=True)) for _, shape in norm_inputs(model, x)]
    grads = [torch.randn_like(inp) for _, inp in layers]

    def step() -> None:
        for (layer, inp), grad in zip(layers, grads, strict=True):
            inp.grad = None
            layer(inp).backward(grad)

    return step


def gpu_extras(clip_len: int, crop: int) -> str:
    """Launches and bytes the span adds per step at ``clip_len`` x ``crop``, batch 16, fp32."""
    with torch.device("meta"):
        model = build(None, crop, clip_len)
        shapes = [shape for _, shape in norm_inputs(model, torch.empty(BATCH, 3, clip_len,
                                                                       crop, crop))]
    elements = sum(shape.numel() for shape in shapes)
    # Forward: the chunks write their slices of one output, no copy. Backward: the chunks'
    # input gradients are concatenated, one read and one write of each activation in fp32.
    extra_gb = 2 * 4 * elements / 1e9
    launches = len(shapes) * (2 * (SPAN - 1) + 1)  # 3 more kernels each way, 1 concatenation
    return (f"{len(shapes)} BatchNorm layers, {elements / 1e6:.0f} M activations per step at "
            f"{BATCH}x3x{clip_len}x{crop}x{crop}: the span adds {launches} kernel launches and "
            f"{extra_gb:.1f} GB of memory traffic per step; plain BatchNorm moves about "
            f"{8 * 4 * elements / 1e9:.0f} GB (3 passes over an activation forward, 5 backward)")


def measure(label: str, steps: dict, turns: int) -> list[str]:
    with tqdm(total=turns * len(steps), desc=label, unit="step", file=sys.stderr) as bar:
        times = time_in_turns(steps, turns, 1, bar)
    median = {name: {k: statistics.median(v) for k, v in t.items()} for name, t in times.items()}
    plain = median[CONTENDERS[0]]
    rows = []
    for name in CONTENDERS:
        wall, cpu = median[name]["wall"], median[name]["cpu"]
        rows.append(f"| {label} | {name} | {wall:.3f} | {cpu:.3f} | {wall / plain['wall']:.3f} "
                    f"| {cpu / plain['cpu']:.3f} |")
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--crop", type=int, default=112, help="square crop (default 112)")
    parser.add_argument("--clip-len", type=int, default=16)
    parser.add_argument("--turns", type=int, default=3, help="measured steps per contender")
    parser.add_argument("--threads", type=int,
                        help="intra-op threads (default: torch's, one per core)")
    args = parser.parse_args(argv)
    if args.turns < 1 or args.crop < 32 or args.clip_len < 1:
        print("error: --turns must be >= 1, --crop >= 32 and --clip-len >= 1", file=sys.stderr)
        return 2
    if args.threads:
        torch.set_num_threads(args.threads)
    clip = f"{args.clip_len}x{args.crop}x{args.crop}"
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {BATCH}, "
          f"clip {clip}, {args.turns} turns; seconds per step (16 clips)")
    torch.manual_seed(0)
    x = torch.randn(BATCH, 3, args.clip_len, args.crop, args.crop)
    y = torch.randint(0, 20, (BATCH,))
    nets = {name: build(span, args.crop, args.clip_len)
            for name, span in zip(CONTENDERS, (None, SPAN), strict=True)}
    rows = measure("BatchNorm layers", {name: norms_step(net, x, span) for (name, net), span
                                        in zip(nets.items(), (None, SPAN), strict=True)},
                   args.turns)
    rows += measure("training step", {name: make_step(net, x, y) for name, net in nets.items()},
                    args.turns)
    print("| measured | BatchNorm | wall s | CPU s | wall ratio | CPU ratio |")
    print("|---|---|---:|---:|---:|---:|")
    print("\n".join(rows))
    print(f"# GPU: {gpu_extras(16, 224)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
