"""Samplers and make_loader: every clip once per epoch across ranks, and a clip's tensor
independent of worker count, rank count and persistent workers."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from datasets import ClipDataset, EpochKeySampler, ShardSampler, TrainTransform, make_loader
from tests.helpers.datasets import make_store, textured_frames

TRANSFORM = TrainTransform(short_side_range=(24, 40), crop=20)


@pytest.mark.parametrize("n", [0, 1, 5, 13])
@pytest.mark.parametrize("world_size", [1, 2, 3, 4])
def test_shard_sampler_gives_every_clip_once(n, world_size):
    shards = [list(ShardSampler(range(n), rank, world_size)) for rank in range(world_size)]
    assert sum(shards, []) == list(range(n))
    assert [len(ShardSampler(range(n), r, world_size)) for r in range(world_size)] == [
        len(s) for s in shards
    ]


def test_epoch_key_sampler_shuffles_per_epoch_and_covers_all():
    data = range(11)
    sampler = EpochKeySampler(data, seed=5)
    orders = []
    for epoch in (0, 1):
        sampler.set_epoch(epoch)
        keys = list(sampler)
        assert {e for e, _ in keys} == {epoch}
        assert sorted(i for _, i in keys) == list(range(11))
        orders.append([i for _, i in keys])
    assert orders[0] != orders[1]
    # Two ranks: equal shares (padded by one clip), together every clip.
    ranks = [EpochKeySampler(data, rank=r, world_size=2, seed=5) for r in (0, 1)]
    keys = [list(s) for s in ranks]
    assert len(keys[0]) == len(keys[1]) == 6
    assert {i for k in keys for _, i in k} == set(range(11))


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    root = tmp_path_factory.mktemp("stores")
    videos = {"train": [("drinking", "a", textured_frames(14, 30, 40, 0)),
                        ("hurdling", "b", textured_frames(9, 30, 40, 1))]}
    return {fmt: make_store(root / fmt, fmt, videos) for fmt in ("jpg", "hdf5")}


def test_loader_batches_equal_direct_access_for_any_workers_and_ranks(stores):
    """Two ranks with two persistent workers each, over an HDF5 store (each worker opens its
    own file handle), against single-process access to the JPEG store."""
    direct = ClipDataset(stores["jpg"], "train", TRANSFORM, clip_len=2, seed=1)
    ds = ClipDataset(stores["hdf5"], "train", TRANSFORM, clip_len=2, seed=1)
    assert len(ds) == 11
    for world_size, workers in ((2, 2), (1, 0)):
        seen = {0: [], 1: []}
        for rank in range(world_size):
            loader, sampler = make_loader(ds, batch_size=3, workers=workers, shuffle=True,
                                          rank=rank, world_size=world_size, seed=9)
            assert loader.persistent_workers == (workers > 0)
            for epoch in (0, 1):
                sampler.set_epoch(epoch)
                keys = list(sampler)
                got = [b for b in loader]
                clips = torch.cat([b[0] for b in got])
                expected = torch.stack([direct[k][0] for k in keys])
                assert torch.equal(clips, expected)
                assert torch.cat([b[1] for b in got]).tolist() == [direct[k][1] for k in keys]
                assert torch.cat([b[2] for b in got]).tolist() == [direct[k][2] for k in keys]
                seen[epoch] += [i for _, i in keys]
        for epoch in (0, 1):
            assert set(seen[epoch]) == set(range(11))


def test_eval_loader_scores_each_clip_once_across_ranks(stores):
    ds = ClipDataset(stores["jpg"], "train", TRANSFORM, clip_len=2)
    videos = []
    for rank in range(3):
        loader, sampler = make_loader(ds, batch_size=2, workers=0, shuffle=False, rank=rank,
                                      world_size=3)
        sampler.set_epoch(4)
        assert loader.drop_last is False and loader.num_workers == 0
        videos += torch.cat([b[2] for b in loader]).tolist()
    assert videos == list(ds.clip_video)  # each clip exactly once, in order


def test_workers_reuse_freed_clip_memory():
    """After reuse_freed_memory (run by every loader worker), allocating and freeing clips
    costs no new page faults: the memory is reused, not mapped fresh each time."""
    code = """
import resource, numpy as np
from datasets.loader import reuse_freed_memory

def faults():
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(20):
        clip = np.empty((16, 224, 224, 3), np.uint8)
        clip.fill(1)
        big = np.empty(8 << 20, np.uint8)  # other work's blocks in between
        big.fill(1)
        del clip, big
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

default = faults()
reuse_freed_memory()
faults()  # the first round maps the memory once
print(default, faults())
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=Path(__file__).resolve().parent.parent)
    default, reused = map(int, out.stdout.split())
    assert reused < 100
    assert default > 1000  # by default, blocks of these sizes are mapped afresh now and then
