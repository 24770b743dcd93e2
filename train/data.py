"""The run's data: train and val clip datasets over the frame store, with their loaders.

Loader workers hand batches over in shared memory (``/dev/shm``): too little of it (Docker's
default is 64 MB) kills them with "Bus error", so ``check_shm`` stops the run at start-up with
the amount needed. Every wait for a batch is bounded by ``timeout_s``: a worker that hangs
(stalled storage, a stopped process) ends the run with ``LoaderTimeout``. The DataLoader's
own timeout covers a worker that produces nothing (it needs workers); an alarm around each wait
covers the rest, such as the hand-over of a batch's shared memory from a stopped worker, and
the training process's own reads with 0 workers (except reads the kernel will not interrupt,
on a hung network file system).
"""

from __future__ import annotations

import math
import os
import signal
import sys
import threading
import warnings
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.data import DataLoader
from torch.utils.data._utils.signal_handling import _remove_worker_pids

from datasets import ClipDataset, TrainTransform, ValTransform, make_loader
from datasets.loader import POOL_EXTRA, init_worker
from formats.raw import video_bytes
from train import TrainError, signals
from train.distributed import Dist

SHM_PATH = "/dev/shm"
PREFETCH_FACTOR = 2  # batches each worker keeps ready (make_loader's default)
# Room beyond the prefetched batches: the batch being collated in each worker and the one
# the training process still holds, plus the allocator's slack.
SHM_MARGIN = 2.0


class LoaderTimeout(Exception):
    """No batch came from the loader within ``timeout_s``."""


_LOADERS: weakref.WeakSet = weakref.WeakSet()  # every Bounded loader of this process


class Bounded:
    """A loader whose every wait for a batch ends after ``timeout_s`` with LoaderTimeout."""

    def __init__(self, loader: DataLoader, timeout_s: float) -> None:
        self.loader = loader
        self.timeout_s = timeout_s
        _LOADERS.add(self)

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator:
        # A signal handler can only be set in the main thread (elsewhere: DataLoader's own).
        alarm = threading.current_thread() is threading.main_thread()
        # Starting an epoch waits too: persistent workers must each acknowledge the new one.
        iterator = self._bounded(alarm, self.loader.__iter__)
        while True:
            try:
                batch = self._bounded(alarm, iterator.__next__)
            except StopIteration:
                return
            yield batch

    def _bounded(self, alarm: bool, wait: Callable[[], Any]) -> Any:
        """``wait()``, ended by LoaderTimeout after ``timeout_s``."""
        if alarm:
            before = signal.signal(signal.SIGALRM, self._alarm)
            signal.setitimer(signal.ITIMER_REAL, self.timeout_s)
        try:
            return wait()
        except RuntimeError as e:
            if "DataLoader timed out" in str(e):
                raise self._expired() from None
            raise
        finally:
            if alarm:
                signal.setitimer(signal.ITIMER_REAL, 0)
                signal.signal(signal.SIGALRM, before)

    def _expired(self) -> LoaderTimeout:
        # DataLoader's shutdown sends a worker that does not stop SIGTERM and then joins it
        # without a time limit: a hung or stopped worker would hold the exit for ever. The
        # workers of every loader are killed instead (the run is ending; nothing is lost).
        for bounded in list(_LOADERS):
            iterator = getattr(bounded.loader, "_iterator", None)
            if getattr(iterator, "_worker_pids_set", False):  # or its SIGCHLD handler raises
                _remove_worker_pids(id(iterator))
                iterator._worker_pids_set = False
            for worker in getattr(iterator, "_workers", []):
                if worker.is_alive():
                    worker.kill()
        return LoaderTimeout(f"no batch from the loader within {self.timeout_s:g} s")

    def _alarm(self, signum, frame) -> None:  # noqa: ARG002 - signal handler signature
        raise self._expired()  # interrupts the wait in the main thread


@dataclass
class Data:
    train_set: ClipDataset
    val_set: ClipDataset
    train_loader: Bounded
    val_loader: Bounded
    train_sampler: object
    val_sampler: object

    @property
    def num_val_videos(self) -> int:
        return self.val_set.num_videos

    def set_epoch(self, epoch: int) -> None:
        """Each epoch's training order and augmentation are keyed by (seed, epoch)."""
        self.train_sampler.set_epoch(epoch)
        self.val_sampler.set_epoch(epoch)

    def model_input(self, clips: torch.Tensor, device: torch.device) -> torch.Tensor:
        """uint8 clips from the loader -> normalised float32 on the device (the normalisation
        runs there: a quarter of the bytes cross the bus). Train and val share mean/std."""
        return self.train_set.transform.normalize(clips.to(device, non_blocking=True))


def build_data(config: dict, d: Dist) -> Data:
    mean, std = tuple(config["mean"]), tuple(config["std"])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        train_set = ClipDataset(
            config["data"], "train",
            TrainTransform(tuple(config["train_short_side"]), config["train_crop"],
                           config["flip_p"], mean, std),
            clip_len=config["clip_len"], seed=config["seed"])
        val_set = ClipDataset(
            config["data"], "val",
            ValTransform(config["val_short_side"], config["val_crop"], mean, std),
            clip_len=config["clip_len"], seed=config["seed"])
    if d.is_main:  # e.g. videos too short for one clip: reported once, as one line each
        for w in caught:
            print(f"warning: {w.message}", file=sys.stderr, flush=True)
        bigger = decoded_store_warning(train_set, val_set)
        if bigger:
            print(f"warning: {bigger}", file=sys.stderr, flush=True)
    if train_set.num_classes != config["num_classes"]:
        raise TrainError(
            f"{config['data']}: the store has {train_set.num_classes} classes but the config "
            f"says num_classes {config['num_classes']}; use a matching store or config")
    for ds in (train_set, val_set):
        if len(ds) == 0:
            raise TrainError(f"{config['data']}: split '{ds.split}' has no clips of "
                             f"{config['clip_len']} frames; rebuild the store")
    per_process = config["batch_size"] // d.world_size
    check_shm(config, d)
    train_loader, train_sampler = make_loader(
        train_set, per_process, config["workers"], shuffle=True, rank=d.rank,
        world_size=d.world_size, seed=config["seed"])
    val_loader, val_sampler = make_loader(
        val_set, per_process, config["workers"], shuffle=False, rank=d.rank,
        world_size=d.world_size)
    # Loaders draw their workers' base seeds from a generator of their own, not torch's global
    # one, so the dropout masks do not depend on the worker count (or on persistent workers
    # skipping the draw after the first epoch). The clips' randomness is keyed by
    # (seed, epoch, index) and uses neither.
    for i, loader in enumerate((train_loader, val_loader)):
        loader.generator = torch.Generator().manual_seed(config["seed"] * 2 + i)
        if config["workers"] > 0:  # DataLoader refuses a timeout without workers
            loader.timeout = config["timeout_s"]
            loader.worker_init_fn = _init_worker
    return Data(train_set, val_set, Bounded(train_loader, config["timeout_s"]),
                Bounded(val_loader, config["timeout_s"]), train_sampler, val_sampler)


def memory_bytes() -> int | None:
    """This machine's physical memory (None where the system does not say)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        return None


def decoded_store_warning(train_set: ClipDataset, val_set: ClipDataset,
                          memory: int | None = None) -> str | None:
    """The warning for a decoded store that the page cache cannot hold: every epoch then
    reads it from disk again, at the disk's speed (README, "Which store")."""
    if not train_set.decoded:
        return None
    memory = memory_bytes() if memory is None else memory
    size = sum(video_bytes(r.kept_frames, r.height, r.width)
               for ds in (train_set, val_set) for r in ds.records)
    if memory is None or size <= memory:
        return None
    return (f"{train_set.store}: the decoded store is {size / 1e9:.1f} GB, more than this "
            f"machine's {memory / 1e9:.1f} GB of memory: each epoch reads it from disk again, "
            "so the disk's speed may bound the run (a JPEG store is 7 to 13 times smaller; "
            "README, \"Which store\")")


def _init_worker(worker_id: int) -> None:
    signals.ignore_in_loader_worker()  # the training process decides when to stop
    init_worker(worker_id)


def shm_needed(per_process_batch: int, clip_len: int, crop: int, workers: int,
               processes: int, prefetch_factor: int = PREFETCH_FACTOR) -> int:
    """Bytes of shared memory the loader workers of ``processes`` training processes on one
    node use for their batches: each worker keeps ``prefetch_factor`` batches of uint8 clips
    (clip_len x crop x crop x 3) ready, with ``SHM_MARGIN`` for the rest."""
    clip = clip_len * crop * crop * 3
    return math.ceil(per_process_batch * clip * prefetch_factor * workers * processes
                     * SHM_MARGIN)


def pool_bytes(per_process_batch: int, clip_len: int, train_crop: int, workers: int,
               processes: int, prefetch_factor: int = PREFETCH_FACTOR) -> int:
    """Bytes of the batch buffers that the training loader's workers keep and reuse
    (``datasets.batches``: ``prefetch_factor + POOL_EXTRA`` training batches each), which
    stay while the evaluation loader's batches come and go."""
    batch = per_process_batch * clip_len * train_crop * train_crop * 3
    return batch * (prefetch_factor + POOL_EXTRA) * workers * processes


def shm_free(path: str = SHM_PATH) -> int | None:
    """Free bytes in the shared-memory file system at ``path`` (None: no such file system)."""
    try:
        st = os.statvfs(path)
    except OSError:
        return None
    return st.f_bavail * st.f_frsize


def check_shm(config: dict, d: Dist, path: str | None = None) -> None:
    """Stop with one line if ``path`` (/dev/shm) cannot hold the loader workers' batches."""
    workers = config["workers"]
    free = shm_free(path or SHM_PATH)
    if workers == 0 or free is None:
        return
    crop = max(config["train_crop"], config["val_crop"])
    batch = config["batch_size"] // d.world_size
    per_worker = (shm_needed(batch, config["clip_len"], crop, 1, d.node_processes)
                  + pool_bytes(batch, config["clip_len"], config["train_crop"], 1,
                               d.node_processes))
    need = per_worker * workers
    if need <= free:
        return
    fit = free // per_worker
    size_gb = max(1, math.ceil((need + 64 * 2**20) / 2**30))
    raise TrainError(
        f"{path or SHM_PATH}: {_mb(free)} MB of shared memory free, but {workers} loader "
        f"workers x {d.node_processes} process(es) on this node need about {_mb(need)} MB "
        f"for their batches; give the container more (docker run --shm-size={size_gb}g) or use "
        f"fewer workers (--workers {fit})")


def _mb(size: int) -> str:
    return f"{size / 2**20:.1f}" if size < 10 * 2**20 else f"{size / 2**20:.0f}"
