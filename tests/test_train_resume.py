"""Nothing is lost: a run killed mid-epoch resumes in its own folder, and a diverging run
stops with a one-line message and keeps its last good checkpoint."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from tests.helpers.train import (
    ONE_THREAD_ENV,
    REPO,
    TINY,
    one_thread,
    train_cli,
)
from train.__main__ import main as train_main
from train.rundir import checkpoint, epochs


@pytest.fixture(scope="module")
def store(tiny_store: Path) -> Path:
    return tiny_store  # shared by the session (tests/conftest.py): read only


def _wait_for(path: Path, proc: subprocess.Popen, timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert proc.poll() is None, "the run ended before it could be killed"
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)


def test_run_killed_mid_epoch_resumes_without_lost_or_repeated_epochs(store, tmp_path):
    out = tmp_path / "results"
    log = open(tmp_path / "first.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "train", "--config", str(TINY), "--data", str(store),
         "--out", str(out), "--set", "epochs=3"],
        cwd=REPO, stdout=log, stderr=subprocess.STDOUT, env=ONE_THREAD_ENV)
    try:
        parent = out / "test_tiny"
        _wait_for(parent, proc)
        first = parent / next(iter(p.name for p in parent.iterdir()))
        _wait_for(first / "checkpoint.pt", proc)
        # Into the next epoch: half of epoch 0's training time (its row is written before its
        # checkpoint; a fixed delay outlasts the epochs left on a fast machine).
        time.sleep(0.5 * float(epochs.read_epochs(first)[0]["train_s"]))
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        log.close()
    assert proc.returncode == -signal.SIGKILL
    (run_dir,) = parent.iterdir()
    killed_at = torch.load(run_dir / "checkpoint.pt", weights_only=True)
    assert killed_at["epoch"] < 2, "the run finished before the kill; the test proves nothing"
    config_before = yaml.safe_load((run_dir / "config.yaml").read_text())

    # Resumed with another worker count (a resource knob): the numbers must not change.
    done = train_cli("--resume", str(run_dir), "--config", str(TINY), "--data", str(store),
                     "--workers", "1")
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"resuming {run_dir} after epoch {killed_at['epoch']}" in done.stdout

    rows = epochs.read_epochs(run_dir)
    assert [int(r["epoch"]) for r in rows] == [0, 1, 2]
    elapsed = [float(r["elapsed_s"]) for r in rows]
    assert elapsed == sorted(elapsed) and len(set(elapsed)) == 3
    run = json.loads((run_dir / "run.json").read_text())
    assert run["resumed"] is True and run["finished"] is True and run["epochs_done"] == 3
    assert run["changed_keys"] == ["epochs"] and run["compliant"] is False
    # The clock goes on from the checkpoint plus the work lost after it.
    first_resumed = elapsed[killed_at["epoch"] + 1]
    assert run["lost_s"] >= 0.0
    assert first_resumed > killed_at["elapsed_s"] + run["lost_s"]
    assert yaml.safe_load((run_dir / "config.yaml").read_text()) == {**config_before,
                                                                      "workers": 1}
    # The same run without a kill, in this process: identical epochs.
    with one_thread():
        assert train_main(["--config", str(TINY), "--data", str(store), "--set", "epochs=3",
                           "--out", str(tmp_path / "uninterrupted")]) == 0
    (reference,) = (tmp_path / "uninterrupted" / "test_tiny").iterdir()
    numbers = ("lr", "train_loss", "train_top1", "val_top1", "val_top5", "val_video_top1")
    for ours, theirs in zip(rows, epochs.read_epochs(reference), strict=True):
        assert [float(ours[k]) for k in numbers] == pytest.approx(
            [float(theirs[k]) for k in numbers], rel=1e-5)

    again = train_cli("--resume", str(run_dir), "--data", str(store))
    assert again.returncode == 2 and "already finished" in again.stderr
    assert again.stderr.count("\n") == 1


def test_nonfinite_loss_stops_with_one_line_and_keeps_last_checkpoint(store, tmp_path, capsys):
    # Epoch 0 trains normally; epoch 1's LR (1e30) makes the weights overflow.
    with one_thread():
        code = train_main(["--config", str(TINY), "--data", str(store), "--out", str(tmp_path),
                           "--set", "lr=1e30", "--set", "warmup_start_factor=1e-30",
                           "--set", "epochs=3"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1
    assert err[-1].startswith("error: training loss became nan at epoch 1")
    assert "last good checkpoint (epoch 0)" in err[-1]
    (run_dir,) = (tmp_path / "test_tiny").iterdir()
    assert checkpoint.load(run_dir)[0].epoch == 0
    assert [r["epoch"] for r in epochs.read_epochs(run_dir)] == ["0"]
    run = json.loads((run_dir / "run.json").read_text())
    assert run["finished"] is False and run["epochs_done"] == 1
    assert run["state"] == "stopped"  # the scorer counts it as a missed run


def test_resume_refuses_a_different_process_count(store, tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "run.json").write_text(json.dumps({"finished": False, "changed_keys": []}))
    (run_dir / "config.yaml").write_text(TINY.read_text() + "gpus: 2\n")
    code = train_main(["--resume", str(run_dir), "--data", str(store)])
    assert code == 2  # gpus=2 but this is one process


def test_stop_at_target_ends_at_the_first_evaluation_at_the_target(store, tmp_path):
    with one_thread():
        code = train_main(["--config", str(TINY), "--data", str(store), "--out", str(tmp_path),
                           "--set", "target_top1=0", "--stop-at-target"])
    assert code == 0
    (run_dir,) = (tmp_path / "test_tiny").iterdir()
    rows = epochs.read_epochs(run_dir)
    assert len(rows) == 1  # epochs is 2, but the first evaluation is at the target
    run = json.loads((run_dir / "run.json").read_text())
    assert run["reached"] is True and run["finished"] is True and run["epochs_done"] == 1
    assert run["t_target_s"] == pytest.approx(float(rows[0]["elapsed_s"]), abs=1e-3)
    assert run["changed_keys"] == ["target_top1"]  # stop_at_target is not part of the workload
