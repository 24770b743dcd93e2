"""The training loader's batches, rendered by each worker into shared-memory buffers it
reuses, instead of fresh shared memory for every batch.

Why: a batch in fresh shared memory costs its worker a page fault and the zeroing of every
page (38 MB for 16 clips of 16 x 224 x 224 x 3) before a pixel is written: 1.5 to 1.9 ms per
clip here, as much as rendering the clip from a decoded store (docs/perf/loader.md). FFCV
and DALI get their speed the same way, with preallocated buffers that are reused.

A buffer is reused only once the training process holds no reference to the batch that was
in it: the loader of the training process (``PooledLoader``) keeps a weak reference to the
storage of each batch it hands out, and marks the buffer free in a small table shared with
the workers once that storage is gone (with pinned memory that is as soon as the batch was
copied into pinned memory). A worker that finds no free buffer allocates a fresh one, as
torch's default collation does, so a caller that keeps batches (``list(loader)``) still
gets every batch intact. Each buffer ends in a 16-byte tag (worker, slot) after the batch's
bytes, which is how the training process knows which buffer a batch came in.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.multiprocessing.reductions import StorageWeakRef
from torch.utils.data import DataLoader, get_worker_info

from datasets.clips import ClipBatch, collate_clips, new_batch

EMPTY, BUSY, FREE = 0, 1, 2
TAG = 16  # bytes after a buffer's batch: magic, worker, slot, unused (int32)
MAGIC = 0x4C425056


class BatchPool:
    """Per worker, ``slots`` reusable batch buffers; the state table is shared memory,
    created by the training process before its workers start."""

    def __init__(self, workers: int, slots: int):
        self.slots = slots
        self.state = torch.zeros((workers, slots), dtype=torch.uint8).share_memory_()
        self._buffers: dict[int, torch.Tensor] = {}  # a worker's own (slot -> buffer)
        self._watched: list[tuple[StorageWeakRef, int, int]] = []  # training process

    def __getstate__(self) -> dict:
        return {"slots": self.slots, "state": self.state}  # no buffers, no weak references

    def __setstate__(self, state: dict) -> None:
        self.slots, self.state = state["slots"], state["state"]
        self._buffers, self._watched = {}, []

    # ---- in a worker ----------------------------------------------------------------

    def batch(self, shape: tuple[int, ...]) -> torch.Tensor:
        """An uninitialised uint8 batch of ``shape`` in one of this worker's free buffers
        (marked busy), or in fresh shared memory if none is free."""
        info = get_worker_info()
        if info is None:
            return new_batch(shape)
        row = self.state[info.id].numpy()
        for slot in range(self.slots):
            if row[slot] == BUSY:
                continue
            buffer = self._buffers.get(slot)
            if buffer is None or buffer.shape[1:] != shape[1:] or buffer.shape[0] < shape[0]:
                buffer = self._buffers[slot] = _tagged_buffer(
                    (max(shape[0], 0 if buffer is None else buffer.shape[0]), *shape[1:]),
                    info.id, slot)
            row[slot] = BUSY
            return buffer[: shape[0]]
        return new_batch(shape)

    # ---- in the training process --------------------------------------------------------

    def watch(self, clips: torch.Tensor) -> None:
        """Remember the buffer ``clips`` came in (if a pooled one) until it is dropped."""
        storage = clips.untyped_storage()
        found = _tag(storage)
        if found is not None:
            self._watched.append((StorageWeakRef(storage), *found))

    def release_dropped(self) -> None:
        """Mark free the buffers whose batches the training process no longer holds."""
        kept = []
        for ref, worker, slot in self._watched:
            if ref.expired():
                self.state[worker, slot] = FREE
            else:
                kept.append((ref, worker, slot))
        self._watched = kept


def _tagged_buffer(shape: tuple[int, ...], worker: int, slot: int) -> torch.Tensor:
    """A shared-memory uint8 tensor of ``shape`` whose storage ends in the tag."""
    size = int(np.prod(shape))
    elem = torch.empty(0, dtype=torch.uint8)
    storage = elem._typed_storage()._new_shared(size + TAG, device=elem.device)
    whole = elem.new(storage)
    whole[size:].view(torch.int32).copy_(torch.tensor([MAGIC, worker, slot, 0]))
    return whole[:size].view(shape)


def _tag(storage: torch.UntypedStorage) -> tuple[int, int] | None:
    """(worker, slot) of a pooled buffer's storage, or None."""
    nbytes = storage.nbytes()
    if nbytes < TAG:
        return None
    tail = torch.empty(0, dtype=torch.uint8).set_(storage, nbytes - TAG, (TAG,))
    magic, worker, slot, _ = tail.view(torch.int32).tolist()
    return (worker, slot) if magic == MAGIC else None


class PooledBatch:
    """A batch on its way to the training process: ``(clips, labels, video_index)`` and,
    once pinned, the storage the clips came in (so that its buffer is released)."""

    def __init__(self, items: tuple, source: torch.Tensor | None = None):
        self.items = items
        self.source = source if source is not None else items[0]

    def pin_memory(self, device=None) -> PooledBatch:  # called by the pinning thread
        return PooledBatch(tuple(t.pin_memory() for t in self.items), self.source)


def collate_pooled(samples: list) -> PooledBatch:
    return PooledBatch(collate_clips(samples))


class PooledDataset(torch.utils.data.Dataset):
    """``dataset`` for a loader whose workers render batches into ``pool``'s buffers."""

    def __init__(self, dataset, pool: BatchPool):
        self.dataset, self.pool = dataset, pool

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key):
        return self.dataset[key]

    def __getitems__(self, keys: list) -> ClipBatch:
        return self.dataset.__getitems__(keys, self.pool.batch)


class PooledLoader(DataLoader):
    """A DataLoader over a PooledDataset whose batches are plain tuples again and whose
    workers' buffers are released once the training process has dropped them."""

    def __iter__(self):
        pool = self.dataset.pool
        for batch in super().__iter__():
            pool.release_dropped()
            if isinstance(batch, PooledBatch):
                pool.watch(batch.source)
                batch = batch.items
            yield batch
