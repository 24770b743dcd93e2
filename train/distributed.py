"""Processes, devices and collectives.

torchrun starts one process per GPU and describes it in the environment (RANK, WORLD_SIZE,
LOCAL_RANK, LOCAL_WORLD_SIZE, GROUP_RANK: the node); a plain ``python -m train`` is a world of
one. ``setup`` picks the device (train/device.py decides: ``cuda:<LOCAL_RANK>`` with NCCL, or
the CPU with gloo) and joins the process group with the config's ``timeout_s``, the bound on
any wait for another process. With one process no group is created and every collective is a
no-op.

Every collective goes through a function here that names what it waits for, so a wait that
times out can say which one it was (``last_wait``).
"""

from __future__ import annotations

import socket
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, TypeVar

import torch
import torch.distributed as dist

from formats.store import StoreError
from train import TrainError
from train.launch import process_in_launch

T = TypeVar("T")


@dataclass(frozen=True)
class Dist:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    local_world_size: int = 0  # processes on this node (0: all of them, one node)
    node: int = 0  # this node's rank among the nodes (torchrun's GROUP_RANK)
    host: str = field(default_factory=socket.gethostname)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world_size > 1

    @property
    def node_processes(self) -> int:
        return self.local_world_size or self.world_size

    @property
    def name(self) -> str:
        """How messages name this process: "rank 1 on host-x" ("node 1, host-x" when the
        run spans nodes whose host names may be equal)."""
        where = self.host if self.node_processes == self.world_size else \
            f"node {self.node}, {self.host}"
        return f"rank {self.rank} on {where}"


def from_environment(device: torch.device) -> Dist:
    """This process as torchrun describes it (a world of one without torchrun)."""
    p = process_in_launch()
    return Dist(p.rank, p.world_size, p.local_rank, device, p.local_world_size, p.node)


def choose_device(local_rank: int, requested: str = "auto") -> torch.device:
    """The config's ``device`` ("auto", "cuda", "cpu") for this process: train/device.py
    decides, and stops with one line when GPUs are present but PyTorch cannot use them."""
    from train.device import choose

    return choose(requested, local_rank)


def setup(device: str = "auto", timeout_s: float | None = None) -> Dist:
    """Join torchrun's process group (if any) and pick this process's device (``device``:
    the config's "auto", "cuda" or "cpu"). ``timeout_s`` bounds every collective: a process
    that stops or hangs ends the run after that long instead of gloo's 30 minutes (NCCL's
    watchdog aborts the process after it)."""
    d = from_environment(choose_device(process_in_launch().local_rank, device))
    if d.world_size > 1:
        timeout = timedelta(seconds=timeout_s) if timeout_s else None
        global _TIMEOUT_S
        _TIMEOUT_S = timeout_s
        _wait("joining the process group")
        if d.device.type == "cuda":
            torch.cuda.set_device(d.device)
            dist.init_process_group("nccl", device_id=d.device, timeout=timeout)
        else:
            dist.init_process_group("gloo", timeout=timeout)
        _wait(None)
        from train import errors

        errors.keep_store()
    return d


def bound_all_groups(d: Dist) -> None:
    """Give every process group of this process (the subgroups created after ``setup``, such
    as BatchNorm's, default to 30 minutes) the run's timeout. Call once they exist."""
    if not d.active or not _TIMEOUT_S:
        return
    for group in list(dist.distributed_c10d._world.pg_map):
        dist.set_timeout(timedelta(seconds=_TIMEOUT_S), group)


def shutdown(d: Dist) -> None:
    """Leave the process group. Called from a ``finally``: if a user error is ending the run,
    it is left for the other processes first (they see this one gone as soon as the group is
    destroyed, and look for its error then)."""
    if d.active and dist.is_initialized():
        failing = sys.exc_info()[1]  # the exception propagating through the finally, if any
        if failing is not None:
            from train import errors

            errors.tell_peers(d.rank, failing)
        dist.destroy_process_group()


# ---- named waits -------------------------------------------------------------------------

_LAST_WAIT: str | None = None  # the collective this process is in (or was in when it failed)
_TIMEOUT_S: float | None = None


def _wait(what: str | None) -> None:
    global _LAST_WAIT
    _LAST_WAIT = what


def last_wait() -> str | None:
    """What this process was waiting for when a collective failed (None: not in one)."""
    return _LAST_WAIT


def timeout_s() -> float | None:
    """The collective timeout the process group was created with (None: the default)."""
    return _TIMEOUT_S


def all_reduce_sum(d: Dist, tensor: torch.Tensor, what: str = "a sum over processes"
                   ) -> torch.Tensor:
    """Sum ``tensor`` over processes in place (on the process's device) and return it."""
    if d.active:
        _wait(what)
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        _wait(None)
    return tensor


def all_reduce_max(d: Dist, tensor: torch.Tensor, what: str = "a maximum over processes"
                   ) -> torch.Tensor:
    if d.active:
        _wait(what)
        dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
        _wait(None)
    return tensor


def broadcast_object(d: Dist, obj, what: str = "rank 0's data"):
    """Rank 0's ``obj`` on every process."""
    if not d.active:
        return obj
    box = [obj]
    _wait(what)
    dist.broadcast_object_list(box, src=0)
    _wait(None)
    return box[0]


def gather_objects(d: Dist, obj, what: str = "every process's data") -> list:
    """Every process's ``obj``, in rank order (on every process)."""
    if not d.active:
        return [obj]
    out = [None] * d.world_size
    _wait(what)
    dist.all_gather_object(out, obj)
    _wait(None)
    return out


def barrier(d: Dist, what: str = "all processes") -> None:
    if d.active:
        _wait(what)
        dist.barrier()
        _wait(None)


def agreed(d: Dist, fn: Callable[[], T], what: str = "rank 0's decision") -> T:
    """``fn()`` on rank 0, its value on every rank; a one-line error raised by ``fn`` is raised
    on every rank, all at the same collective (so no rank waits for a peer that stopped)."""
    outcome: tuple[str, Any] | None = None
    if d.is_main:
        try:
            outcome = ("ok", fn())
        except (TrainError, StoreError) as e:
            outcome = ("error", e)
    kind, value = broadcast_object(d, outcome, what)
    if kind == "error":
        raise value
    return value


def any_error(d: Dist, fn: Callable[[], None], what: str = "every process's check") -> None:
    """``fn()`` on every rank; the first rank's one-line error (in rank order) on all ranks."""
    error = None
    try:
        fn()
    except (TrainError, StoreError) as e:
        error = e
    for e in gather_objects(d, error, what):
        if e is not None:
            raise e


# ---- what a failed collective means --------------------------------------------------------

# What gloo (a plain RuntimeError) and NCCL say when the process at the other end is gone.
_PEER_GONE = ("closed by peer", "reset by peer", "Broken pipe", "communicator was aborted")
# What gloo says when a collective's timeout expired ("Timed out waiting 5000ms for recv
# operation to complete"; "Application timeout caused pair closure" on the next one), and the
# store when a process never joined ("Timed out after 5 seconds waiting for clients").
_TIMED_OUT = ("timed out waiting", "application timeout", "timed out after")


def timed_out(error: BaseException) -> bool:
    """True for the error of a collective that waited longer than the timeout."""
    text = str(error).lower()
    return isinstance(error, RuntimeError) and any(s in text for s in _TIMED_OUT) \
        and "dataloader" not in text


def peer_lost(error: BaseException) -> bool:
    """True for the error a collective raises when another process of the run died."""
    if isinstance(error, dist.DistError):
        return True
    return isinstance(error, RuntimeError) and any(s in str(error) for s in _PEER_GONE)
