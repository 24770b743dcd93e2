"""The probe's measurements: what one training process eats, what the loader supplies.

Demand is measured with the trainer's own pieces (its model, optimiser, loss and step) on
synthetic clips already on the device, so no loader is involved; supply with the trainer's
own dataset and DataLoader (``datasets.make_loader``: train transform, persistent workers,
pinned on CUDA), so no model is involved. Random numbers drawn here touch no run.
"""

from __future__ import annotations

import os
import time
import warnings
from contextlib import contextmanager
from pathlib import Path

import torch

from datasets import ClipDataset, TrainTransform, make_loader, normalize_clips
from models.speed import autocast
from train.distributed import Dist
from train.loop import loss_function, train_step
from train.model import Trainee, build_trainee

PREFETCH = 2  # make_loader's prefetch_factor: batches in flight per worker
BUDGET_S = 10.0  # timing of one measurement stops after this, once two steps are in


@contextmanager
def compute_threads(threads: int):
    """Run with ``threads`` intra-op threads (as a training process would), then restore."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def build(config: dict, device: torch.device, per_process: int) -> tuple[Trainee, float]:
    """The model, optimiser and scaler as one process of the run builds them (its BatchNorm
    chunks laid out for its ``per_process`` clips), and the seconds it took."""
    local = {**config, "batch_size": per_process}
    if local.get("bn_span") and per_process < local["bn_span"]:
        # 8 or 16 processes share statistics across processes, which one process cannot
        # measure: its own clips make the span here (the exchange's cost is not counted).
        local["bn_span"] = per_process
    start = time.perf_counter()
    trainee = build_trainee(local, Dist(0, 1, 0, device))
    _sync(device)
    return trainee, time.perf_counter() - start


def _clips(config: dict, batch: int, crop: int, device: torch.device) -> torch.Tensor:
    """uint8 clips as the loader delivers them, already on the device."""
    shape = (batch, config["clip_len"], crop, crop, 3)
    return torch.randint(0, 256, shape, dtype=torch.uint8, device=device)


def _timed(step, steps: int, warmup: int, device: torch.device, budget_s: float) -> float:
    """Mean seconds of ``step`` over up to ``steps`` calls after ``warmup`` calls (first
    calls allocate and pick kernels); timing stops early once ``budget_s`` is spent, after at
    least two calls, so a slow device or a busy machine keeps the probe short."""
    for _ in range(warmup):
        step()
    _sync(device)
    start = time.perf_counter()
    done = 0
    while done < steps:
        step()
        done += 1
        if done >= 2 and time.perf_counter() - start >= budget_s:
            break
    _sync(device)
    return (time.perf_counter() - start) / done


def train_rate(trainee: Trainee, config: dict, device: torch.device, batch: int, steps: int,
               warmup: int, budget_s: float = BUDGET_S) -> float:
    """Training clips/s of one process: the device-side normalisation, forward, loss,
    backward and SGD step of the trainer, at the per-process batch."""
    clips = _clips(config, batch, config["train_crop"], device)
    labels = torch.randint(0, config["num_classes"], (batch,), device=device)
    criterion = loss_function()
    mean, std = tuple(config["mean"]), tuple(config["std"])
    trainee.model.train()

    def step() -> None:
        train_step(trainee.model, trainee.optimizer, normalize_clips(clips, mean, std), labels,
                   criterion, autocast(device.type, config["precision"]), trainee.scaler)

    return batch / _timed(step, steps, warmup, device, budget_s)


def eval_rate(trainee: Trainee, config: dict, device: torch.device, batch: int, steps: int,
              warmup: int, budget_s: float = BUDGET_S) -> float:
    """Evaluation clips/s of one process at the val crop."""
    clips = _clips(config, batch, config["val_crop"], device)
    mean, std = tuple(config["mean"]), tuple(config["std"])
    module = trainee.module
    module.eval()

    @torch.no_grad()
    def step() -> None:
        with autocast(device.type, config["precision"]):
            module(normalize_clips(clips, mean, std)).float().argmax(dim=1)

    rate = batch / _timed(step, steps, warmup, device, budget_s)
    module.train()
    return rate


def checkpoint_seconds(trainee: Trainee, folder: Path) -> tuple[float, int]:
    """(seconds, bytes) of writing the model and optimiser state to ``folder`` once, as the
    trainer checkpoints after every epoch (the file is removed again)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f".probe-checkpoint.{os.getpid()}.tmp"
    start = time.perf_counter()
    try:
        with open(path, "wb") as f:
            torch.save({"model": trainee.module.state_dict(),
                        "optimizer": trainee.optimizer.state_dict()}, f)
            f.flush()
            os.fsync(f.fileno())
        return time.perf_counter() - start, path.stat().st_size
    finally:
        path.unlink(missing_ok=True)


def open_store(config: dict, store: Path) -> tuple[ClipDataset, int, float]:
    """(train dataset, val clip count, seconds to index both splits) of ``store``."""
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # short videos: the trainer reports them itself
        train_set = ClipDataset(
            store, "train",
            TrainTransform(tuple(config["train_short_side"]), config["train_crop"],
                           config["flip_p"], tuple(config["mean"]), tuple(config["std"])),
            clip_len=config["clip_len"], seed=config["seed"])
        val_set = ClipDataset(store, "val", train_set.transform, clip_len=config["clip_len"])
    return train_set, len(val_set), time.perf_counter() - start


def loader_rate(train_set: ClipDataset, batch: int, procs: int, seed: int,
                min_batches: int = 10, min_s: float = 2.0, max_s: float = 30.0) -> float:
    """Clips/s the training DataLoader delivers with ``procs`` workers (0: loading in this
    process), in steady state: the batches the workers made ahead while starting up are
    skipped, then at least ``min_batches`` batches and ``min_s`` seconds are timed (at most
    ``max_s``)."""
    if len(train_set) == 0:
        raise ValueError("the store's train split has no clips of this clip length")
    loader, sampler = make_loader(train_set, batch, procs, shuffle=True, seed=seed)
    skip = max(procs, 1) * (PREFETCH + 1)
    timed = max(min_batches, 4 * procs)
    epoch, seen, clips = 0, 0, 0
    start = None
    try:
        while True:
            sampler.set_epoch(epoch)
            for batch_clips, _, _ in loader:
                seen += 1
                if seen == skip:
                    start = time.perf_counter()
                elif start is not None:
                    clips += len(batch_clips)
                    elapsed = time.perf_counter() - start
                    if (seen - skip >= timed and elapsed >= min_s) or elapsed >= max_s:
                        return clips / elapsed
            epoch += 1
    finally:
        iterator = getattr(loader, "_iterator", None)
        if iterator is not None:  # stop the persistent workers now, not at exit
            iterator._shutdown_workers()
