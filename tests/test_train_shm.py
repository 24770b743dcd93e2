"""Too little shared memory for the loader's workers (Docker's default /dev/shm is 64 MB):
one line at start-up saying how much is needed and how to get it, instead of a "Bus error"
in the middle of an epoch. The small /dev/shm is a real tmpfs mounted for the test."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

import opts
from datasets.loader import POOL_EXTRA
from tests.helpers.train import TINY, small_tmpfs
from train import TrainError, data
from train.__main__ import main as train_main
from train.distributed import Dist


@pytest.fixture
def small_shm(tmp_path) -> Path:
    """A 512 KiB tmpfs, unmounted afterwards."""
    with small_tmpfs(tmp_path / "shm", "512k") as path:
        yield path


def test_the_estimate_counts_every_prefetched_batch_of_every_worker_on_the_node():
    # The workload on one node of 4 GPUs: 4 clips of 16 x 224 x 224 x 3 bytes per process,
    # 2 batches ready per worker, 8 workers per process, twice that for the rest.
    clip = 16 * 224 * 224 * 3
    assert data.shm_needed(4, 16, 224, 8, 4) == 4 * clip * 2 * 8 * 4 * 2
    assert data.shm_needed(4, 16, 224, 8, 4) > 64 * 2**20  # Docker's default /dev/shm
    assert data.shm_needed(4, 16, 224, 8, 4, prefetch_factor=4) == \
        2 * data.shm_needed(4, 16, 224, 8, 4)
    assert data.shm_needed(4, 16, 224, 0, 4) == 0


def test_too_little_shared_memory_is_one_line_with_the_size_and_the_ways_out(small_shm):
    config = {**opts.load_preset(TINY), "workers": 8}
    d = Dist(0, 2, 0, torch.device("cpu"), local_world_size=2)
    free = data.shm_free(str(small_shm))
    assert free == 512 * 1024
    per_worker = data.shm_needed(2, 4, 32, 1, 2) + data.pool_bytes(2, 4, 32, 1, 2)
    with pytest.raises(TrainError) as caught:
        data.check_shm(config, d, str(small_shm))
    message = str(caught.value)
    assert "\n" not in message
    fits = free // per_worker
    assert 0 < fits < 8
    assert data.pool_bytes(2, 4, 32, 1, 2) == 2 * 4 * 32 * 32 * 3 * (2 + POOL_EXTRA) * 2
    assert re.fullmatch(
        rf"{re.escape(str(small_shm))}: 0.5 MB of shared memory free, but 8 loader workers x 2 "
        r"process\(es\) on this node need about 3.4 MB for their batches; give the container "
        rf"more \(docker run --shm-size=1g\) or use fewer workers \(--workers {fits}\)", message)
    data.check_shm({**config, "workers": fits}, d, str(small_shm))  # what it advises fits
    data.check_shm({**config, "workers": 0}, d, str(small_shm))  # no workers, no shared memory


def test_the_trainer_checks_shared_memory_at_start_up(small_shm, tiny_store, tmp_path,
                                                       monkeypatch, capsys):
    store = tiny_store
    monkeypatch.setattr(data, "SHM_PATH", str(small_shm))
    code = train_main(["--config", str(TINY), "--data", str(store), "--out",
                       str(tmp_path / "out"), "--workers", "4"])
    err = capsys.readouterr().err
    assert code == 2
    (line,) = [line for line in err.splitlines() if line.strip()]
    assert line.startswith(f"error: {small_shm}: 0.5 MB of shared memory free, but 4 loader "
                           "workers x 1 process(es) on this node need about 1.7 MB")
    assert line.endswith("(docker run --shm-size=1g) or use fewer workers (--workers 1)")
    assert not (tmp_path / "out").exists()  # stopped before anything was written
