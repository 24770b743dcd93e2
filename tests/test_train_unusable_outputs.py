"""Every way the results location can be unusable, for a new run and a resume alike, and a
checkpoint that belongs to another run, config or model: one line naming the path and what
to do, nothing already written lost, no temporary file left behind."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import torch

import opts
from tests.helpers.faults import run_obeying_file_modes
from tests.helpers.train import ONE_THREAD_ENV, REPO, TINY, small_tmpfs, train_cli
from train.model import build_model
from train.rundir import checkpoint, epochs

TINY_MVIT = REPO / "configs" / "test_tiny_mvit.yaml"


@pytest.fixture(scope="module")
def one_epoch(tiny_store, tmp_path_factory) -> Path:
    """A finished run of two epochs (``_unfinished`` makes resumable copies of it)."""
    out = tmp_path_factory.mktemp("runs")
    done = train_cli("--config", str(TINY), "--data", str(tiny_store), "--out", str(out))
    assert done.returncode == 0, done.stderr[-2000:]
    (run_dir,) = (out / "test_tiny").iterdir()
    return run_dir


def _error_line(done: subprocess.CompletedProcess) -> str:
    lines = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr[-3000:]
    return lines[0]


def _unfinished(run_dir: Path, tmp_path: Path) -> Path:
    """A copy of ``run_dir`` as a resume finds it after its first epoch: one row, run.json
    not finished, the checkpoint at epoch 0 (its weights are the last epoch's: no test here
    depends on them)."""
    copy = Path(shutil.copytree(run_dir, tmp_path / "results" / "test_tiny" / run_dir.name))
    epochs.keep_epochs_through(copy, 0)
    state = torch.load(copy / "checkpoint.pt", weights_only=True)
    first = json.loads((copy / "run.json").read_text())
    first.update(finished=False, state="running", epochs_done=1)
    (copy / "run.json").write_text(json.dumps(first))
    torch.save({**state, "epoch": 0}, copy / "checkpoint.pt")
    return copy


def test_an_out_that_is_a_file_is_one_line_before_anything_runs(tiny_store, tmp_path):
    out = tmp_path / "results"
    out.write_text("not a folder\n")
    done = train_cli("--config", str(TINY), "--data", str(tiny_store), "--out", str(out))
    assert done.returncode == 2
    assert _error_line(done) == f"error: {out}: not a folder; the results go to a folder " \
        "(RESULTS=, --out)"
    assert out.read_text() == "not a folder\n"


def test_a_read_only_results_folder_is_one_line(tiny_store, tmp_path):
    with small_tmpfs(tmp_path / "ro", "1m") as mount:
        subprocess.run(["mount", "-o", "remount,ro", str(mount)], check=True)
        done = train_cli("--config", str(TINY), "--data", str(tiny_store), "--out",
                         str(mount / "r"))
        assert done.returncode == 2
        line = _error_line(done)
        assert f"{mount / 'r'}" in line and "read-only file system" in line
        assert "choose a writable results folder" in line


def test_a_folder_the_user_cannot_write_is_one_line_for_a_new_run_and_a_resume(
        tiny_store, one_epoch, tmp_path):
    out = tmp_path / "locked"
    out.mkdir()
    run_dir = _unfinished(one_epoch, tmp_path)
    before = _results(run_dir)
    for path in (out, run_dir):
        path.chmod(0o555)
    try:
        new = run_obeying_file_modes([*_python_train(), "--config", str(TINY), "--data",
                                      str(tiny_store), "--out", str(out)], env=ONE_THREAD_ENV)
        resumed = run_obeying_file_modes([*_python_train(), "--resume", str(run_dir)],
                                         env=ONE_THREAD_ENV)
    finally:
        for path in (out, run_dir):
            path.chmod(0o755)
    assert new.returncode == 2 and "permission denied" in _error_line(new)
    assert resumed.returncode == 2
    line = _error_line(resumed)
    assert str(run_dir) in line and "permission denied" in line and "then resume" in line
    assert _results(run_dir) == before


def _results(run_dir: Path) -> dict[str, bytes]:
    """The run folder's files but its lock and heartbeat (rewritten by any attempt)."""
    return {p.name: p.read_bytes() for p in run_dir.iterdir()
            if p.name not in (".lock", "heartbeat")}


def _python_train() -> list[str]:
    import sys

    return [sys.executable, "-m", "train"]


def test_a_disk_that_fills_at_a_checkpoint_keeps_the_last_one_and_resumes(tiny_store, tmp_path):
    # The tiny checkpoint is about 24 MB: the first fits in 40 MB, the second's temporary not.
    with small_tmpfs(tmp_path / "disk", "40m") as disk:
        done = train_cli("--config", str(TINY), "--data", str(tiny_store), "--out", str(disk))
        assert done.returncode == 2
        line = _error_line(done)
        (run_dir,) = (disk / "test_tiny").iterdir()
        assert "disk full" in line and f"make resume RUN={run_dir}" in line
        assert not [p for p in run_dir.iterdir() if ".tmp" in p.name]
        point, _ = checkpoint.load(run_dir)
        assert point.epoch == 0
        assert json.loads((run_dir / "run.json").read_text())["epochs_done"] == 1
        subprocess.run(["mount", "-o", "remount,size=120m", str(disk)], check=True)
        resumed = train_cli("--resume", str(run_dir))
        assert resumed.returncode == 0, resumed.stderr[-2000:]
        assert [int(r["epoch"]) for r in epochs.read_epochs(run_dir)] == [0, 1]


def test_a_checkpoint_of_another_run_config_or_model_is_refused_before_anything_changes(
        tiny_store, one_epoch, tmp_path):
    run_dir = _unfinished(one_epoch, tmp_path)
    state = torch.load(run_dir / "checkpoint.pt", weights_only=True)
    mvit = opts.resolve({**opts.read_preset(TINY_MVIT), "data": str(tiny_store)}, str(TINY_MVIT))
    cases = {
        "of run other-run, not of this run": {**state, "run_id": "other-run"},
        "checkpoint of another config than": {**state,
                                              "config_digest": opts.workload_digest(mvit)},
        # An older checkpoint (no config digest) holding the other model's weights.
        "does not fit the run's model": {**state, "config_digest": None,
                                         "model": build_model(mvit).state_dict()},
    }
    for expected, hostile in cases.items():
        torch.save(hostile, run_dir / "checkpoint.pt")
        before = _results(run_dir)
        done = train_cli("--resume", str(run_dir))
        assert done.returncode == 2
        line = _error_line(done)
        assert expected in line and "start a new run" in line, line
        assert len(line) < 400  # one line, not load_state_dict's list of every key
        assert _results(run_dir) == before


def test_a_run_folder_of_an_earlier_version_is_left_to_that_version(one_epoch, tmp_path):
    run_dir = _unfinished(one_epoch, tmp_path)
    # The epochs.csv of protocol 1: no eval, eval_s, untimed_s, val_top1_clips, val_video_top1.
    old = "epoch,elapsed_s,train_s,lr,train_loss,train_top1,val_top1,val_top5,clips_per_s," \
          "data_wait_frac,peak_mem_mb"
    (run_dir / "epochs.csv").write_text("\n".join([old, "0,1,1,0.001,1,1,1,1,1,0,1"]) + "\n")
    done = train_cli("--resume", str(run_dir))
    assert done.returncode == 2
    line = _error_line(done)
    assert "written by an earlier version of this project" in line
    assert "finish it with the version that started it (git commit" in line
