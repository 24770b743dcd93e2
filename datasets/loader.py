"""Samplers and the DataLoader for ClipDataset, for 1..N processes (DDP ranks).

Training: EpochKeySampler wraps torch's DistributedSampler (shuffled per epoch with
``seed + epoch``, padded to a multiple of the rank count) and yields ``(epoch, index)``
keys, so each clip's augmentation depends only on (seed, epoch, index).
Evaluation: ShardSampler gives each rank a contiguous block of clip indices, with no padding
and no duplicates, so every val clip is scored exactly once across ranks (sum the correct
counts and the clip counts over ranks).
"""

from __future__ import annotations

import ctypes
from collections.abc import Iterator, Sized

import torch
from torch.utils.data import DataLoader, DistributedSampler, Sampler

from datasets.batches import BatchPool, PooledDataset, PooledLoader, collate_pooled
from datasets.clips import collate_clips


class EpochKeySampler(Sampler[tuple[int, int]]):
    """This rank's clip indices for the current epoch, as ``(epoch, index)`` keys.
    Call ``set_epoch(epoch)`` before iterating each epoch."""

    def __init__(
        self,
        dataset: Sized,
        rank: int = 0,
        world_size: int = 1,
        seed: int = 0,
        shuffle: bool = True,
    ):
        self.order = DistributedSampler(
            dataset, num_replicas=world_size, rank=rank, shuffle=shuffle, seed=seed
        )
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self.order.set_epoch(epoch)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        epoch = self.epoch
        return ((epoch, index) for index in self.order)

    def __len__(self) -> int:
        return len(self.order)


class ShardSampler(Sampler[int]):
    """Clip indices ``[rank * n // world_size, (rank + 1) * n // world_size)`` in order."""

    def __init__(self, dataset: Sized, rank: int = 0, world_size: int = 1):
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} not in 0..{world_size - 1}")
        n = len(dataset)
        self.start = rank * n // world_size
        self.stop = (rank + 1) * n // world_size

    def set_epoch(self, epoch: int) -> None:
        """Nothing to do (same order every epoch); present so both samplers are used alike."""

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.start, self.stop))

    def __len__(self) -> int:
        return self.stop - self.start


# Batch buffers per training-loader worker beyond its prefetched batches: the one being
# filled, the one the training step holds and the one before it, not yet seen released
# (fewer and a worker falls back to fresh shared memory now and then; never wrong).
POOL_EXTRA = 3


def init_worker(worker_id: int) -> None:
    """Set up a loader worker: freed clip memory is kept for the next clips
    (``reuse_freed_memory``). (Each worker is one thread: torch uses one in DataLoader
    workers, and the decoding and scaling C code runs in the calling thread.)"""
    reuse_freed_memory()


# glibc's mallopt() parameters (malloc.h).
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3


def reuse_freed_memory() -> None:
    """Make glibc's allocator keep freed blocks of up to 32 MB in this process for reuse.

    A worker allocates and frees a 2.4 MB clip (and decode buffers) per sample. By default
    glibc maps every block of that size fresh from the kernel and unmaps it when freed, so
    each clip pays about 600 page faults and the zeroing of its pages: 0.3 ms per clip on an
    idle machine, up to 3 ms in some runs (perf/loader_speed.py). Kept blocks are reused
    without either. A process on another C library keeps its allocator's own policy."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return
    mallopt(_M_MMAP_THRESHOLD, 32 << 20)  # glibc's largest allowed value on 64-bit
    mallopt(_M_TRIM_THRESHOLD, 128 << 20)


def make_loader(
    dataset,
    batch_size: int,
    workers: int,
    shuffle: bool,
    rank: int = 0,
    world_size: int = 1,
    seed: int = 0,
    drop_last: bool = False,
    prefetch_factor: int = 2,
) -> tuple[DataLoader, EpochKeySampler | ShardSampler]:
    """The loader of one process and its sampler (call ``sampler.set_epoch(epoch)`` before
    each epoch).

    ``shuffle=True`` is the training loader (EpochKeySampler, shuffled, keys with the epoch);
    ``shuffle=False`` is the evaluation loader (ShardSampler, each clip once across ranks;
    keep ``drop_last=False`` there). Batches are ``(clips uint8 B x T x H x W x 3,
    labels int64 B, video_index int64 B)``; each worker renders a batch's clips straight
    into the batch's shared-memory tensor (``ClipDataset.__getitems__``, ``collate_clips``),
    so no clip is copied on its way to the training process, and the training loader's
    workers reuse ``prefetch_factor + POOL_EXTRA`` such tensors each (``datasets.batches``)."""
    if shuffle:
        sampler = EpochKeySampler(dataset, rank=rank, world_size=world_size, seed=seed)
    else:
        sampler = ShardSampler(dataset, rank=rank, world_size=world_size)
    # The training loader's workers reuse their batch buffers; evaluation (two passes in a
    # run) keeps torch's fresh shared memory per batch, and no buffers between passes.
    pooled = shuffle and workers > 0
    loader = (PooledLoader if pooled else DataLoader)(
        PooledDataset(dataset, BatchPool(workers, prefetch_factor + POOL_EXTRA)) if pooled
        else dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=workers,
        persistent_workers=workers > 0,
        prefetch_factor=prefetch_factor if workers > 0 else None,
        pin_memory=torch.cuda.is_available(),
        drop_last=drop_last,
        collate_fn=collate_pooled if pooled else collate_clips,
        worker_init_fn=init_worker if workers > 0 else None,
    )
    return loader, sampler
