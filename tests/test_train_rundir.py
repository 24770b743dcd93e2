"""Run folders: one process at a time (lock naming its holder), the store held for reading
while training, the attempts list and system files, the restart lookup, the resume point."""

from __future__ import annotations

import fcntl
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from preprocess.lock import WRITER_LOCK_FILE
from tests.helpers.faults import kill, python_module, wait_until
from tests.helpers.train import REPO, TINY
from train import TrainError
from train.__main__ import main as train_main
from train.rundir import attempts, checkpoint
from train.rundir.record import RunRecord


@pytest.fixture(scope="module")
def store(tiny_store: Path) -> Path:
    return tiny_store  # shared by the session (tests/conftest.py): read only


def test_a_locked_run_folder_names_the_process_that_holds_it(tmp_path):
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from train.rundir.attempts import lock_run_dir; "
         "lock_run_dir(sys.argv[1]); print('held', flush=True); time.sleep(60)", str(tmp_path)],
        cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(TrainError) as refused:
            attempts.lock_run_dir(tmp_path)
        assert f"in use by process {holder.pid} on {socket.gethostname()}" in str(refused.value)
    finally:
        kill([holder.pid])
        holder.wait()
    os.close(attempts.lock_run_dir(tmp_path))  # free once its holder is gone (even killed)


def test_second_resume_of_a_training_run_is_refused_and_the_store_is_held(store, tmp_path,
                                                                          capsys):
    """While a run trains: a --resume of its folder gets one line naming the process, and a
    make frames into its store would wait (the store's writer lock is held shared)."""
    out = tmp_path / "out"
    # Four epochs, not two: the run must still be training when the resume below comes.
    proc = python_module("train", "--config", str(TINY), "--data", str(store), "--out",
                         str(out), "--set", "epochs=4", stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE, text=True)
    try:
        wait_until(lambda: any(out.glob("test_tiny/*/heartbeat")), proc, 240,
                   what="the run training")
        (run_dir,) = (out / "test_tiny").iterdir()
        fd = os.open(store / WRITER_LOCK_FILE, os.O_RDONLY)
        try:
            with pytest.raises(BlockingIOError):  # what a make frames run would wait on
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        finally:
            os.close(fd)
        capsys.readouterr()
        assert train_main(["--resume", str(run_dir), "--data", str(store)]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith(f"error: {run_dir}: in use by process "
                                                        f"{proc.pid} on {socket.gethostname()}")
        assert proc.wait(timeout=240) == 0, proc.stderr.read()[-2000:]
    finally:
        kill([proc.pid])
        proc.wait()
    # The refused resume touched nothing: the run finished with every epoch once.
    run = json.loads((run_dir / "run.json").read_text())
    assert run["finished"] and len(run["attempts"]) == 1
    assert [r.split(",")[0] for r in (run_dir / "epochs.csv").read_text().splitlines()[1:]] \
        == ["0", "1", "2", "3"]


def test_training_refuses_a_store_being_built(store, tmp_path, capsys):
    fd = os.open(store / WRITER_LOCK_FILE, os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # as a make frames run holds it
        code = train_main(["--config", str(TINY), "--data", str(store), "--out", str(tmp_path)])
    finally:
        os.close(fd)
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert "a make frames run is writing this store" in err
    assert not (tmp_path / "test_tiny").exists()  # no run folder for a run that never started


def _info(machine: str, commit: str, dirty: bool = False) -> dict:
    return {"host": machine, "machine": machine, "git_commit": commit, "git_dirty": dirty}


def test_attempts_are_appended_and_a_run_spanning_machines_or_commits_is_labelled(tmp_path):
    # A run from before attempts were recorded: its system.json is the first attempt.
    (tmp_path / "system.json").write_text(json.dumps(_info("m1", "c1")))
    first = attempts.prior_attempts(tmp_path, [], [])
    assert [(a["machine"], a["system"], a["restart"]) for a in first] == [
        ("m1", "system.json", 0)]
    both = attempts.add_attempt(first, _info("m2", "c2", dirty=True), time.time())
    assert both[:1] == first and both[1]["system"] == "system.1.json"
    assert attempts.system_file(3) == "system.3.json"
    # run.json's list wins over the checkpoint's when longer (an attempt killed before its
    # first checkpoint is only in run.json), and the other way round.
    assert attempts.prior_attempts(tmp_path, both, first) == both
    assert attempts.prior_attempts(tmp_path, first, both) == both
    config = {"name": "X3D_M", "model": "x3d_m", "target_top1": 20.11, "workers": 8,
              "seed": 0, "epochs": 20, "eval_period": 10}
    run = RunRecord(config, "id", [], True, "m1", "cuda", 4, attempts=both).to_json()
    assert run["spans_machines"] and run["spans_commits"] and not run["compliant"]
    assert {"spans 2 machines", "spans 2 commits"} <= set(run["compliance_issues"])


def test_a_restart_finds_its_launch_folder_and_ignores_an_old_marker(tmp_path, monkeypatch):
    out, run_dir = tmp_path / "out", tmp_path / "out" / "cfg" / "run1"
    run_dir.mkdir(parents=True)
    monkeypatch.delenv("TORCHELASTIC_RUN_ID", raising=False)
    attempts.remember_run(out, run_dir)  # not under torchrun: no marker
    assert not (out / attempts.MARKER_DIR).exists()
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "job/../7")
    assert attempts.find_restarted_run(out, time.time()) is None
    attempts.remember_run(out, run_dir)
    (marker,) = (out / attempts.MARKER_DIR).iterdir()
    assert marker.name == "job_.._7.json"  # a plain file name whatever the id
    assert attempts.find_restarted_run(out, time.time()) == run_dir.resolve()
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "another")
    assert attempts.find_restarted_run(out, time.time()) is None
    # Left by an earlier launch with the same --rdzv-id: older than this launcher.
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "job/../7")
    os.utime(marker, (0, 0))
    assert attempts.find_restarted_run(out, time.time()) is None


def test_checkpoints_of_the_previous_format_are_read_and_unknown_ones_refused(tmp_path):
    old = {"format": 1, "epoch": 2, "elapsed_s": 30.0, "lost_s": 1.5, "untimed_s": 0.0,
           "reached": False, "t_target_s": None, "world_size": 2, "run_id": "r",
           "model": {"w": torch.ones(2)}}
    torch.save(old, tmp_path / "checkpoint.pt")
    point, state = checkpoint.load(tmp_path)
    assert (point.epoch, point.elapsed_s, point.world_size) == (2, 30.0, 2)
    assert point.attempts == [] and point.store_fingerprint is None
    assert point.config_digest is None and point.energy == {}  # energy: not measured
    assert torch.equal(state["model"]["w"], torch.ones(2))
    torch.save({**old, "format": 9}, tmp_path / "checkpoint.pt")
    with pytest.raises(TrainError, match=r"checkpoint format 9, this version reads 1, 2, 3, 4; "
                                         r"start a new run$"):
        checkpoint.load(tmp_path)
