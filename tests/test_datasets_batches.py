"""The training loader's reused batch buffers (datasets.batches): batches equal the clips
rendered one by one, buffers are reused once the training process drops a batch, and a
caller that keeps every batch still gets them all intact."""

from __future__ import annotations

import pytest
import torch

from datasets import ClipDataset, TrainTransform, make_loader
from datasets.batches import BUSY, EMPTY, FREE, _tag
from tests.helpers.datasets import make_store, textured_frames

TRANSFORM = TrainTransform(short_side_range=(24, 40), crop=20)
BATCH = 3


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> ClipDataset:
    videos = {"train": [("drinking", "a", textured_frames(14, 30, 40, 0)),
                        ("hurdling", "b", textured_frames(11, 31, 43, 1))]}
    store = make_store(tmp_path_factory.mktemp("pool") / "jpg", "jpg", videos)
    return ClipDataset(store, "train", TRANSFORM, clip_len=2, seed=3)


def _expected(ds: ClipDataset, keys: list) -> torch.Tensor:
    return torch.stack([ds[k][0] for k in keys])


def _epochs(loader, sampler, epochs: int):
    for epoch in range(epochs):
        sampler.set_epoch(epoch)
        keys = list(sampler)
        yield from zip((keys[i:i + BATCH] for i in range(0, len(keys), BATCH)), loader,
                       strict=True)


def test_batches_are_the_clips_and_buffers_are_reused(dataset):
    loader, sampler = make_loader(dataset, BATCH, workers=1, shuffle=True, seed=2)
    tags = []
    for keys, (clips, labels, videos) in _epochs(loader, sampler, 3):
        assert torch.equal(clips, _expected(dataset, keys))
        assert labels.tolist() == [dataset[k][1] for k in keys]
        assert videos.dtype == torch.int64 and labels.dtype == torch.int64
        tags.append(_tag(clips.untyped_storage()))
    pool = loader.dataset.pool
    pooled = [t for t in tags if t is not None]
    assert len(pooled) >= 0.75 * len(tags)  # (a worker ahead of the consumer takes a fresh one)
    assert len(set(pooled)) <= pool.slots < len(pooled)  # buffers were reused
    # A slot the worker never needed stays EMPTY (a consumer this quick frees buffers early).
    assert set(pool.state[0].tolist()) <= {EMPTY, BUSY, FREE}


def test_kept_batches_are_never_overwritten(dataset):
    loader, sampler = make_loader(dataset, BATCH, workers=2, shuffle=True, seed=2)
    kept = list(_epochs(loader, sampler, 3))  # every batch held at once
    for keys, (clips, _, _) in kept:
        assert torch.equal(clips, _expected(dataset, keys))
    tags = [_tag(clips.untyped_storage()) for _, (clips, _, _) in kept]
    pooled = [t for t in tags if t is not None]
    assert len(pooled) == len(set(pooled))  # no buffer served two kept batches
    assert len(pooled) < len(tags)  # the others came in fresh shared memory


def test_a_view_kept_of_a_batch_keeps_its_buffer(dataset):
    """Only the whole storage going away frees a buffer: a kept slice holds it."""
    loader, sampler = make_loader(dataset, BATCH, workers=1, shuffle=True, seed=2)
    views = []
    for keys, (clips, _, _) in _epochs(loader, sampler, 2):
        views.append((keys[0], clips[0]))  # a view of the batch's first clip
    for key, view in views:
        assert torch.equal(view, dataset[key][0])
