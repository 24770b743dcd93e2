"""One training epoch: forward, cross-entropy, backward, SGD step, with timing and checks."""

from __future__ import annotations

import math
import resource
import time
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass

import torch
from tqdm import tqdm

from formats.results import EpochRow
from train import signals
from train.distributed import Dist, all_reduce_max, all_reduce_sum
from train.evaluate import EvalResult

CHECK_EVERY = 10  # steps between loss checks (and progress updates); each costs one sync


class NonFiniteLoss(Exception):
    """The training loss became NaN or infinite."""


@dataclass(frozen=True)
class TrainStats:
    loss: float  # mean over all clips of all processes
    top1: float  # percent
    clips: int  # over all processes
    seconds: float  # wall time of the epoch's training on rank 0
    data_wait_frac: float  # share of training time spent waiting for batches, mean of ranks
    peak_mem_mb: float  # max over processes


def loss_function() -> torch.nn.Module:
    """Cross-entropy on the model's outputs as they are. For X3D-M these are softmax
    probabilities (its head applies the softmax, in training too); the workload takes the
    cross-entropy on them as if they were logits, and so does this."""
    return torch.nn.CrossEntropyLoss()


def train_step(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    clips: torch.Tensor,
    labels: torch.Tensor,
    criterion: torch.nn.Module,
    autocast: AbstractContextManager | None = None,
    scaler: torch.amp.GradScaler | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One SGD step on this process's share of the global batch; returns (loss, outputs),
    detached. DDP averages the gradients over processes during backward."""
    with autocast or nullcontext():
        outputs = model(clips)
    loss = criterion(outputs.float(), labels)
    optimizer.zero_grad(set_to_none=True)
    if scaler is not None:  # fp16: scale the loss against gradient underflow
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
    else:
        loss.backward()
        optimizer.step()
    return loss.detach(), outputs.detach()


def peak_memory_mb(device: torch.device) -> float:
    """Peak memory of this process: CUDA max allocated since the last reset, else max RSS."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def train_one_epoch(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    batches: Iterable,
    d: Dist,
    epoch: int,
    criterion: torch.nn.Module,
    on_step: Callable[[], None] = lambda: None,
    autocast: AbstractContextManager | None = None,
    scaler: torch.amp.GradScaler | None = None,
    prepare: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> TrainStats:
    """Train one epoch over ``batches`` of (clips, labels, video_index). Every process must
    get the same number of batches (the train sampler pads to equal shares). ``prepare`` turns
    a loader batch into the model's input on the device (default: just move it)."""
    device = d.device
    model.train()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    sums = torch.zeros(3, dtype=torch.float64, device=device)  # loss x clips, hits, clips
    window = torch.zeros(3, dtype=torch.float64, device=device)  # loss sum, steps, signal
    total = len(batches) if hasattr(batches, "__len__") else None
    with tqdm(total=total, desc=f"epoch {epoch}", unit="step", disable=not d.is_main,
              dynamic_ncols=True, leave=False) as bar:  # closed on errors too
        progress = _Progress(d, epoch, bar)
        iterator = iter(batches)
        while True:
            t_wait = time.perf_counter()
            try:
                clips, labels, _ = next(iterator)
            except StopIteration:
                break
            progress.wait_s += time.perf_counter() - t_wait
            clips = prepare(clips) if prepare else clips.to(device, non_blocking=True)
            labels = labels.to(device, non_blocking=True)
            loss, outputs = train_step(model, optimizer, clips, labels, criterion, autocast, scaler)
            n = len(labels)
            sums[0] += loss.double() * n
            sums[1] += (outputs.argmax(dim=1) == labels).sum()
            sums[2] += n
            window[0] += loss.double()
            window[1] += 1
            progress.step += 1
            progress.clips += n
            on_step()
            if progress.step % CHECK_EVERY == 0:
                progress.check(window)
            bar.update(1)
        if progress.step % CHECK_EVERY:
            progress.check(window)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        seconds = time.perf_counter() - progress.start
    all_reduce_sum(d, sums, f"the end of epoch {epoch}")
    share = progress.wait_s / max(seconds, 1e-9)
    shares = all_reduce_sum(d, torch.tensor([share], dtype=torch.float64, device=device),
                            f"the end of epoch {epoch}")
    peak = all_reduce_max(
        d, torch.tensor([peak_memory_mb(device)], dtype=torch.float64, device=device),
        f"the end of epoch {epoch}")
    loss_sum, hits, clips_seen = sums.tolist()
    return TrainStats(
        loss=loss_sum / max(clips_seen, 1),
        top1=100.0 * hits / max(clips_seen, 1),
        clips=int(clips_seen),
        seconds=seconds,
        data_wait_frac=min(1.0, float(shares) / d.world_size),
        peak_mem_mb=float(peak),
    )


class _Progress:
    """Loss checks and the progress bar. A check sums the loss over processes (every process
    runs the same number of steps, so all take part), and stops on a NaN or infinite loss or
    on a signal any process received (train/signals.py): the same decision on every process."""

    def __init__(self, d: Dist, epoch: int, bar: tqdm) -> None:
        self.d, self.epoch, self.bar = d, epoch, bar
        self.start = time.perf_counter()
        self.wait_s = 0.0
        self.step = 0
        self.clips = 0  # on this process

    def check(self, window: torch.Tensor) -> None:
        window[2] = 1.0 if signals.pending() else 0.0
        combined = all_reduce_sum(self.d, window.clone(),
                                  f"the loss check at epoch {self.epoch}, step {self.step}")
        window.zero_()
        loss_sum, steps, signalled = combined.tolist()
        if signalled:  # which signal: every process takes part, so this is agreed too
            signum = torch.tensor([signals.pending()], dtype=torch.int64, device=window.device)
            raise signals.Interrupted(int(all_reduce_max(self.d, signum, "the stop check")))
        mean_loss = loss_sum / steps if steps else 0.0
        if not math.isfinite(loss_sum):
            raise NonFiniteLoss(
                f"training loss became {mean_loss} at epoch {self.epoch}, step {self.step}")
        if self.d.is_main:
            seconds = max(time.perf_counter() - self.start, 1e-9)
            self.bar.set_postfix(
                loss=f"{mean_loss:.4f}",
                clips_s=f"{self.clips * self.d.world_size / seconds:.1f}",
                wait=f"{self.wait_s / seconds:.0%}",
                refresh=False,
            )


def epoch_summary(row: EpochRow, epochs: int, val: EvalResult | None) -> str:
    """The log line of a finished epoch."""
    evaluation = "no evaluation" if val is None else (
        f"val top1 {row.val_top1:.2f} ({row.eval}) clips {row.val_top1_clips:.2f} "
        f"top5 {row.val_top5:.2f} video {row.val_video_top1:.2f} "
        f"({val.clips} clips, {val.videos} videos)")
    return (
        f"epoch {row.epoch}/{epochs - 1} lr {row.lr:.6f} "
        f"loss {row.train_loss:.4f} train_top1 {row.train_top1:.2f} | {evaluation} | "
        f"{row.clips_per_s:.1f} clips/s, data wait {row.data_wait_frac:.0%}, "
        f"peak {row.peak_mem_mb:.0f} MB | elapsed {row.elapsed_s:.1f} s"
        + ("" if row.energy_j is None else f", GPU energy {row.energy_j / 1000:.2f} kJ"))
