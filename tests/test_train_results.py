"""Results files, checkpoints and the resume clock rule, piece by piece."""

import random
import time

import numpy as np
import pytest
import torch

from formats.results import EPOCH_COLUMNS, EPOCHS_FILE, EpochRow
from tests.helpers.score import STORE
from train import TrainError
from train.rundir import checkpoint, clock, epochs
from train.rundir.record import RunRecord


def row(epoch: int, elapsed: float) -> EpochRow:
    return EpochRow(**{"epoch": epoch, "elapsed_s": elapsed, "train_s": 1.0, "eval": "scheduled",
            "eval_s": 0.5, "untimed_s": 0.0, "lr": 0.001, "train_loss": 1.1,
            "train_top1": 30.0, "val_top1": 40.0, "val_top1_clips": 41.0, "val_top5": 90.0,
            "val_video_top1": 50.0, "clips_per_s": 12.5, "data_wait_frac": 0.1,
            "peak_mem_mb": 800.0})


def test_epochs_csv_has_one_header_and_drops_rows_after_the_checkpoint(tmp_path):
    for epoch in range(4):
        epochs.append_epoch(tmp_path, row(epoch, 10.0 * (epoch + 1)))
    with open(tmp_path / EPOCHS_FILE, "a") as f:
        f.write("4,50.0,1.0")  # a row cut short by a kill
    assert epochs.keep_epochs_through(tmp_path, 1) == 2
    lines = (tmp_path / EPOCHS_FILE).read_text().splitlines()
    assert lines[0] == ",".join(EPOCH_COLUMNS)
    assert [line.split(",")[0] for line in lines[1:]] == ["0", "1"]
    epochs.append_epoch(tmp_path, row(2, 33.0))
    rows = epochs.read_epochs(tmp_path)
    assert [int(r["epoch"]) for r in rows] == [0, 1, 2]
    assert float(rows[2]["elapsed_s"]) == 33.0


def test_run_json_compliance():
    config = {"name": "X3D_M", "model": "x3d_m", "target_top1": 20.11, "workers": 8, "seed": 0,
              "epochs": 20, "eval_period": 10}
    clean = RunRecord(config, "id", [], False, "m", "cuda", 4, store=STORE).to_json()
    assert clean["compliant"] is True and clean["gpus"] == 4
    assert RunRecord(config, "id", ["lr"], False, "m", "cuda", 4,
                     store=STORE).to_json()["compliant"] is False
    assert RunRecord(config, "id", [], True, "m", "cuda", 4,
                     store=STORE).to_json()["compliant"] is False
    assert RunRecord(config, "id", [], False, "m", "cuda", 4).to_json()["compliance_issues"] == [
        "store not recorded"]


def _point(elapsed_s: float, lost_s: float, epoch: int = 3) -> checkpoint.ResumePoint:
    return checkpoint.ResumePoint(epoch, elapsed_s, lost_s, 0.0, False, None, 1, "id")


def test_resume_clock_counts_lost_work_but_not_downtime():
    # Run A: checkpoint at clock 100 s, last heartbeat at clock 150 s, then killed.
    ckpt = _point(100.0, 0.0)
    carried, lost = clock.resume_clock(ckpt, 150.0)
    assert (carried, lost) == (150.0, 50.0)
    # Run B resumes (however long after) from clock 150 s and is killed at clock 200 s
    # before its own first checkpoint: its heartbeat holds 200 s. Run C counts both losses.
    carried, lost = clock.resume_clock(ckpt, 200.0)
    assert (carried, lost) == (200.0, 100.0)
    # Killed right after a checkpoint (heartbeat older than it) or with no heartbeat at all.
    assert clock.resume_clock(_point(300.0, 7.0), 290.0) == (300.0, 7.0)
    assert clock.resume_clock(_point(300.0, 7.0), None) == (300.0, 7.0)


def test_heartbeat_writes_the_run_clock(tmp_path):
    run_clock = clock.Clock(launch_time=time.time() - 42.0, carried_s=100.0)
    clock.Heartbeat(tmp_path, run_clock).beat()
    assert clock.read_heartbeat(tmp_path) == pytest.approx(142.0, abs=1.0)


def test_checkpoint_round_trip_with_weights_only_and_rng_states(tmp_path):
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True)
    model(torch.ones(1, 3)).sum().backward()
    optimizer.step()
    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    point = checkpoint.ResumePoint(4, 12.5, 0.0, 1.5, False, None, 1, "run-id",
                                   [{"host": "h", "restart": 0}], "sha256:ab")
    state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
             "rng": [checkpoint.rng_state()]}
    checkpoint.save(tmp_path, point, state)
    expected = (random.random(), np.random.rand(), torch.rand(1).item())
    assert not list(tmp_path.glob("*.tmp*"))
    read_point, loaded = checkpoint.load(tmp_path)  # torch.load(weights_only=True) inside
    assert read_point == point
    checkpoint.restore_rng(loaded["rng"][0])
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expected
    fresh = torch.optim.SGD(torch.nn.Linear(3, 2).parameters(), lr=0.1, momentum=0.9)
    fresh.load_state_dict(loaded["optimizer"])
    assert torch.equal(loaded["model"]["weight"], model.weight.detach())
    assert loaded["epoch"] == 4 and loaded["elapsed_s"] == 12.5


def test_missing_or_damaged_checkpoint_is_a_one_line_error(tmp_path):
    with pytest.raises(TrainError, match="no checkpoint"):
        checkpoint.load(tmp_path)
    (tmp_path / checkpoint.CHECKPOINT_FILE).write_bytes(b"not a checkpoint")
    with pytest.raises(TrainError, match="unreadable checkpoint"):
        checkpoint.load(tmp_path)
