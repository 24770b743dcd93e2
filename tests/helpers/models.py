"""Shared by the model tests: random weights for output comparisons, and the BatchNorm-span
reference (the original's DataParallel step over 4 GPUs, rebuilt on the CPU in float64)."""

from __future__ import annotations

import copy

import torch
import torch.nn as nn
import torch.nn.functional as F

import models

GLOBAL_BATCH = 16
SPAN = 4
CLIP = (4, 32)  # frames, crop: 8 processes fit on 2 cores in seconds


def randomize(model: nn.Module, seed: int = 1) -> nn.Module:
    """Random weights and BN statistics: the init zeroes every residual branch's last BN,
    which would hide most of the network from an output comparison."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if not tensor.is_floating_point():
                continue
            noise = torch.randn(tensor.shape, generator=generator)
            if name.endswith("running_var"):
                tensor.copy_(0.5 + noise.abs())
            elif tensor.dim() <= 1:
                tensor.copy_(noise * 0.2 + (1.0 if name.endswith(".weight") else 0.0))
            else:
                tensor.copy_(tensor + 0.1 * tensor.std() * noise)
    return model


def build_model() -> nn.Module:
    """Seeded X3D-M with random weights and running statistics (the init zeroes every residual
    branch's last BatchNorm, which would hide most layers from the comparison)."""
    torch.manual_seed(0)
    model = models.build("x3d_m", 20, clip_len=CLIP[0], crop_size=CLIP[1], dropout=0.0)
    randomize(model, seed=1)
    return model.double()


def batch(size: int = GLOBAL_BATCH) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(2)
    x = torch.randn(size, 3, CLIP[0], CLIP[1], CLIP[1], generator=generator, dtype=torch.float64)
    return x, torch.randint(0, 20, (size,), generator=generator)


def optimizer(model: nn.Module) -> torch.optim.Optimizer:
    """The workload's SGD."""
    return torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.94, nesterov=True,
                           weight_decay=5e-4)


def data_parallel_step(x: torch.Tensor, y: torch.Tensor, devices: int = 4) -> dict:
    """The reference: DataParallel's scatter (torch.chunk over the devices), one replica per
    chunk, replica 0 being the model itself (its running statistics are the ones kept)."""
    model = build_model().train()
    chunks = x.chunk(devices)
    replicas = [model] + [copy.deepcopy(model) for _ in chunks[1:]]
    loss = F.cross_entropy(torch.cat([r(c) for r, c in zip(replicas, chunks, strict=True)]), y)
    loss.backward()
    with torch.no_grad():
        for name, param in model.named_parameters():
            for replica in replicas[1:]:
                param.grad += replica.get_parameter(name).grad
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    optimizer(model).step()
    return {"loss": loss.item(), "grads": grads, "state": model.state_dict()}
