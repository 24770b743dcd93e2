"""Training-step time per clip on this machine: our models against the reference
implementations (pytorchvideo, a test dependency) at identical inputs and weights, and our
models with each speed option of ``models.speed`` against our fp32 default.

A step is forward, cross-entropy, backward and the workload's SGD update. Contenders are
measured in turns (A, B, A, B, ...) so that a busy machine slows them alike; each row gives
medians over the turns of wall time and of the process's CPU time (which waiting for a core
held by another process does not inflate).

    .venv/bin/python perf/model_step.py            # batch 2 at 16x112x112 and 16x224x224
    .venv/bin/python perf/model_step.py --quick    # batch 2 at 16x112x112, fewer turns
    .venv/bin/python perf/model_step.py --speed-options   # also channels last, bf16, compile
"""

import argparse
import importlib.util
import os
import platform
import statistics
import sys
import time
import warnings
from collections.abc import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm import tqdm

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import models  # noqa: E402
from models import speed  # noqa: E402
from models.convert import from_pytorchvideo  # noqa: E402

Step = Callable[[], None]


def reference_model(name: str, clip_len: int, crop: int) -> nn.Module:
    """pytorchvideo's hub model with the workload's 20-way head (test dependency)."""
    warnings.filterwarnings("ignore", module="pytorchvideo")
    warnings.filterwarnings("ignore", message=".*torchvision.transforms.*")
    from pytorchvideo.models.hub import mvit_base_16x4
    from pytorchvideo.models.x3d import create_x3d

    if name == "x3d_m":  # the hub's x3d_m, which fixes the input to 16x224x224
        return create_x3d(input_clip_length=clip_len, input_crop_size=crop, depth_factor=2.2,
                          model_num_class=20)
    return mvit_base_16x4(pretrained=False, head_num_classes=20, temporal_size=clip_len,
                          spatial_size=crop)


def make_step(model: nn.Module, x: torch.Tensor, y: torch.Tensor,
              precision: str = "fp32") -> Step:
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.94, nesterov=True,
                                weight_decay=5e-4)
    model.train()

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with speed.autocast("cpu", precision):
            loss = F.cross_entropy(model(x), y)
        loss.backward()
        optimizer.step()

    return step


def contenders(name: str, clip_len: int, crop: int, batch: int,
               speed_options: bool) -> dict[str, Step]:
    torch.manual_seed(0)
    x = torch.randn(batch, 3, clip_len, crop, crop)
    y = torch.randint(0, 20, (batch,))
    ref = reference_model(name, clip_len, crop)
    ours = models.build(name, 20, clip_len=clip_len, crop_size=crop)
    ours.load_state_dict(from_pytorchvideo(name, ref.state_dict()))
    steps = {"ours": make_step(ours, x, y), "reference": make_step(ref, x, y)}
    if speed_options:
        def fresh() -> nn.Module:
            model = models.build(name, 20, clip_len=clip_len, crop_size=crop)
            model.load_state_dict(ours.state_dict())
            return model

        steps["ours channels_last"] = make_step(speed.apply_channels_last(fresh()), x, y)
        steps["ours bf16 autocast"] = make_step(fresh(), x, y, precision="bf16")
        steps["ours compiled"] = make_step(speed.compile_model(fresh()), x, y)
    return steps


def time_in_turns(steps: dict[str, Step], turns: int, warmup: int,
                  progress: tqdm) -> dict[str, dict[str, list[float]]]:
    """Wall and process CPU seconds of each step, per contender."""
    for step in steps.values():
        for _ in range(warmup):  # first calls allocate, pick kernels and compile
            step()
    times = {label: {"wall": [], "cpu": []} for label in steps}
    for turn in range(turns):
        # Alternate the order too, so that no contender always follows the same one.
        order = list(steps) if turn % 2 == 0 else list(reversed(steps))
        for label in order:
            wall, cpu = time.perf_counter(), time.process_time()
            steps[label]()
            times[label]["wall"].append(time.perf_counter() - wall)
            times[label]["cpu"].append(time.process_time() - cpu)
            progress.update(1)
    return times


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="only 16x112x112, 3 turns (default: 112 and 224, 7 turns)")
    parser.add_argument("--turns", type=int, help="measured steps per contender")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--models", nargs="+", default=list(models.MODEL_NAMES),
                        choices=models.MODEL_NAMES)
    parser.add_argument("--speed-options", action="store_true",
                        help="also time channels_last, bf16 autocast and torch.compile")
    parser.add_argument("--threads", type=int,
                        help="intra-op threads (default: torch's, one per core); 1 is steadier "
                             "on a machine shared with other busy processes")
    args = parser.parse_args(argv)
    if importlib.util.find_spec("pytorchvideo") is None:
        print("error: the reference models need pytorchvideo; install requirements-test.txt",
              file=sys.stderr)
        return 2
    if args.threads:
        torch.set_num_threads(args.threads)
    crops = [112] if args.quick else [112, 224]
    turns = args.turns or (3 if args.quick else 7)
    warmup = 2

    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch}")
    rows = []
    for name in args.models:
        for crop in crops:
            steps = contenders(name, 16, crop, args.batch, args.speed_options)
            desc = f"{name} 16x{crop}x{crop}"
            with tqdm(total=turns * len(steps), desc=desc, unit="step", file=sys.stderr) as bar:
                times = time_in_turns(steps, turns, warmup, bar)
            median = {label: {kind: statistics.median(v) / args.batch for kind, v in t.items()}
                      for label, t in times.items()}
            for label, seconds in median.items():
                # ours is compared with the reference; each speed option with ours in fp32.
                against = {"ours": "reference", "reference": None}.get(label, "ours")
                ratios = ""
                if against:
                    wall, cpu = (seconds[k] / median[against][k] for k in ("wall", "cpu"))
                    ratios = f"{wall:.3f} | {cpu:.3f} | {against}"
                rows.append(f"| {name} | 16x{crop}x{crop} | {label} | {seconds['wall']:.3f} "
                            f"| {seconds['cpu']:.3f} | {ratios or ' | | '} |")
            print(f"{desc}: ours {1 / median['ours']['wall']:.2f} clips/s", file=sys.stderr)

    print("| model | clip | implementation | wall s/clip | CPU s/clip | wall ratio | CPU ratio "
          "| vs |")
    print("|---|---|---|---:|---:|---:|---:|---|")
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
