"""The workload's optimiser, its per-epoch learning rate and its evaluation schedule.

The LR is a closed-form function of the epoch, equal to what torch's
``SequentialLR([LinearLR(start_factor, total_iters=warmup), CosineAnnealingLR(T_max, eta_min)],
milestones=[warmup])`` gives when stepped once per epoch: a resumed run only needs the epoch
number to continue the schedule, and nothing hides in a scheduler's internal state.
"""

from __future__ import annotations

import math

import torch

from formats.results import EVAL_EXTRA, EVAL_NONE, EVAL_SCHEDULED, scheduled_epochs


def lr_at_epoch(
    epoch: int,
    base_lr: float,
    warmup_epochs: int,
    warmup_start_factor: float,
    cosine_t_max: int,
    eta_min: float,
) -> float:
    """The LR used while training epoch ``epoch`` (0-based)."""
    if epoch < warmup_epochs:
        # LinearLR: factor rises linearly from start_factor to 1 over warmup_epochs steps.
        factor = warmup_start_factor + (1.0 - warmup_start_factor) * epoch / warmup_epochs
        return base_lr * factor
    # CosineAnnealingLR restarted at the milestone, counting epochs since the warm-up.
    t = epoch - warmup_epochs
    return eta_min + (base_lr - eta_min) * (1.0 + math.cos(math.pi * t / cosine_t_max)) / 2.0


def config_lr(config: dict, epoch: int) -> float:
    return lr_at_epoch(
        epoch,
        base_lr=config["lr"],
        warmup_epochs=config["warmup_epochs"],
        warmup_start_factor=config["warmup_start_factor"],
        cosine_t_max=config["cosine_t_max"],
        eta_min=config["eta_min"],
    )


def build_optimizer(model: torch.nn.Module, config: dict) -> torch.optim.SGD:
    """SGD with Nesterov momentum; weight decay on every parameter (biases and norms too)."""
    return torch.optim.SGD(
        model.parameters(),
        lr=config_lr(config, 0),
        momentum=config["momentum"],
        dampening=config["dampening"],
        nesterov=config["nesterov"],
        weight_decay=config["weight_decay"],
    )


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr


# ---- the evaluation schedule ----------------------------------------------------------------

def eval_after(config: dict, epoch: int) -> str:
    """Which evaluation follows ``epoch`` (formats.results EVAL_*): a scheduled one after every
    ``eval_period``-th epoch (1-based) and the last, the only ones that can reach the target
    (WORKLOAD.md: after epochs 10 and 20); else an extra one every ``eval_every`` epochs (off the
    clock); else none."""
    if epoch in scheduled_eval_epochs(config):
        return EVAL_SCHEDULED
    every = config.get("eval_every") or 0
    return EVAL_EXTRA if every > 0 and (epoch + 1) % every == 0 else EVAL_NONE


def scheduled_eval_epochs(config: dict) -> list[int]:
    """The protocol's schedule (formats.results.scheduled_epochs) for this config."""
    return scheduled_epochs(config["epochs"], config["eval_period"])
