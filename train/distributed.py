"""Processes, devices and collectives.

torchrun starts one process per GPU and describes it in the environment (RANK, WORLD_SIZE,
LOCAL_RANK); a plain ``python -m train`` is a world of one. This is the one place that picks
the device: ``cuda:<LOCAL_RANK>`` with NCCL when CUDA is available, else the CPU with gloo.
With one process no process group is created and every collective is a no-op.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from train import TrainError


@dataclass(frozen=True)
class Dist:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world_size > 1


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None:
        return default
    try:
        return int(value)
    except ValueError:
        raise TrainError(f"environment variable {name}={value!r} is not an integer") from None


def choose_device(local_rank: int, requested: str = "auto") -> torch.device:
    """The config's ``device`` ("auto", "cuda", "cpu") for this process: train/device.py
    decides, and stops with one line when GPUs are present but PyTorch cannot use them."""
    from train.device import choose

    return choose(requested, local_rank)


def setup() -> Dist:
    """Join torchrun's process group (if any) and pick this process's device."""
    rank = _env_int("RANK", 0)
    world_size = _env_int("WORLD_SIZE", 1)
    local_rank = _env_int("LOCAL_RANK", 0)
    device = choose_device(local_rank)
    if world_size > 1:
        if device.type == "cuda":
            torch.cuda.set_device(device)
            dist.init_process_group("nccl", device_id=device)
        else:
            dist.init_process_group("gloo")
    return Dist(rank, world_size, local_rank, device)


def shutdown(d: Dist) -> None:
    if d.active and dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_sum(d: Dist, tensor: torch.Tensor) -> torch.Tensor:
    """Sum ``tensor`` over processes in place (on the process's device) and return it."""
    if d.active:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def all_reduce_max(d: Dist, tensor: torch.Tensor) -> torch.Tensor:
    if d.active:
        dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return tensor


def broadcast_object(d: Dist, obj):
    """Rank 0's ``obj`` on every process."""
    if not d.active:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def gather_objects(d: Dist, obj) -> list:
    """Every process's ``obj``, in rank order (on every process)."""
    if not d.active:
        return [obj]
    out = [None] * d.world_size
    dist.all_gather_object(out, obj)
    return out


# What gloo (a plain RuntimeError) and NCCL say when the process at the other end is gone.
_PEER_GONE = ("closed by peer", "reset by peer", "Broken pipe", "communicator was aborted")


def peer_lost(error: BaseException) -> bool:
    """True for the error a collective raises when another process of the run died."""
    if isinstance(error, dist.DistError):
        return True
    return isinstance(error, RuntimeError) and any(s in str(error) for s in _PEER_GONE)


def barrier(d: Dist) -> None:
    if d.active:
        dist.barrier()
