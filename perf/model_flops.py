"""Forward multiply-accumulates (GMACs) and parameters of the benchmark models per clip.

Counted by ``torch.utils.flop_counter`` (convolutions and matrix products, 2 FLOPs per MAC)
on the meta device, so nothing is computed and it takes seconds. X3D-M is also counted at
the 256 crop the benchmark evaluates it at (same model, built for 16x224x224).

    .venv/bin/python perf/model_flops.py
"""

import os
import sys

import torch
import torch.nn as nn
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import models  # noqa: E402

NUM_CLASSES = 20
# (model, clip length and crop it is built for, crop it is fed)
ROWS = (("x3d_m", 16, 224, 224), ("x3d_m", 16, 224, 256), ("mvit_b_16x4", 16, 224, 224))


def forward_gmacs(model: nn.Module, clip_len: int, crop: int) -> float:
    """Forward GMACs of ``model`` (on any device, meta included) for one clip."""
    device = next(model.parameters()).device
    x = torch.zeros(1, 3, clip_len, crop, crop, device=device)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model.eval()(x)
    return counter.get_total_flops() / 2e9


def build_on_meta(name: str, num_classes: int, clip_len: int, crop_size: int) -> nn.Module:
    with torch.device("meta"):
        return models.build(name, num_classes, clip_len=clip_len, crop_size=crop_size)


def main() -> int:
    print("| model | built for | input clip | forward GMACs | parameters (20-way head) |")
    print("|---|---|---|---:|---:|")
    for name, clip_len, built_crop, crop in ROWS:
        model = build_on_meta(name, NUM_CLASSES, clip_len, built_crop)
        gmacs = forward_gmacs(model, clip_len, crop)
        params = sum(p.numel() for p in model.parameters())
        print(f"| {name} | {clip_len}x{built_crop}x{built_crop} | {clip_len}x{crop}x{crop} "
              f"| {gmacs:.2f} | {params:,} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
