"""The model as trained: seeding, the process check, the model, optimiser and loss scaler.

Random-number order is part of the workload: ``seed_everything`` runs right before the model
is built, so every process builds the same initial weights, and ``seed_epoch`` keys each
epoch's dropout masks by (seed, epoch, rank), so a resumed run equals an uninterrupted one.
Nothing here may draw random numbers on any other path.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel

import opts
from models.speed import SpeedOptionError, apply_channels_last, autocast, compile_model, grad_scaler
from train import TrainError
from train.distributed import Dist
from train.schedule import build_optimizer


@dataclass
class Trainee:
    """The model as trained: ``module`` is the plain network (evaluated and checkpointed),
    ``model`` the same wrapped for training (DDP, compile)."""

    module: torch.nn.Module
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler


def check_world(config: dict, d: Dist) -> dict:
    """The config with ``gpus`` = the number of processes, which it must match if given."""
    if config["gpus"] is not None and config["gpus"] != d.world_size:
        raise TrainError(
            f"gpus={config['gpus']} but {d.world_size} process(es) are running; launch with "
            f"torchrun --standalone --nproc-per-node={config['gpus']} -m train ..."
        )
    if config["batch_size"] % d.world_size:
        raise TrainError(
            f"global batch_size {config['batch_size']} does not divide across "
            f"{d.world_size} processes; use a process count that divides it"
        )
    try:
        autocast(d.device.type, config["precision"])  # an unusable precision fails here
    except SpeedOptionError as e:
        raise opts.ConfigError(f"config {config['name']}: {e}") from None
    return {**config, "gpus": d.world_size}


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def seed_epoch(seed: int, epoch: int, rank: int) -> None:
    """Seed torch's generators (dropout, drop path) from (seed, epoch, rank): each process
    draws different masks, and an epoch's draws do not depend on how many loader workers
    drew seeds before it or on whether the run was resumed."""
    torch.manual_seed(int(np.random.SeedSequence([seed, epoch, rank]).generate_state(1)[0]))


def build_model(config: dict, d: Dist | None = None) -> torch.nn.Module:
    """The config's model. X3D-M's BatchNorm takes its statistics over ``bn_span`` clips
    (WORKLOAD.md, "BatchNorm span") laid out for the processes of ``d`` (one if None): with
    several processes call it on every rank, in the same order (it creates process groups)."""
    import models

    options = {k: config[k] for k in opts.MODEL_OPTIONS[config["model"]]}
    span = options.pop("bn_span", None)
    world_size, rank = (d.world_size, d.rank) if d is not None else (1, 0)
    try:
        module = models.build(config["model"], config["num_classes"],
                              clip_len=config["clip_len"], crop_size=config["train_crop"],
                              **options)
        if span:
            models.apply_bn_span(module, span, config["batch_size"] // world_size, rank,
                                 world_size)
    except ValueError as e:
        raise opts.ConfigError(f"config {config['name']}: {e}") from None
    return module


def build_trainee(config: dict, d: Dist) -> Trainee:
    """Model, optimiser and loss scaler, with identical initial weights on every process."""
    seed_everything(config["seed"])
    module = build_model(config, d).to(d.device)
    if config["channels_last"]:
        module = apply_channels_last(module)
    model = module
    if d.active:
        model = DistributedDataParallel(
            module, device_ids=[d.device.index] if d.device.type == "cuda" else None)
    if config["compile"]:
        model = compile_model(model)
    return Trainee(module, model, build_optimizer(module, config),
                   grad_scaler(d.device.type, config["precision"]))
