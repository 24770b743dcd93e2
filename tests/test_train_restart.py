"""torchrun restarts (``--max-restarts``): a worker killed once continues the same run from its
last checkpoint in the same folder, or starts it over there when it had none, and the clock
counts the failed attempt's lost work once.

How "once" is checked. A restarted attempt's clock is ``max(checkpoint, last heartbeat) + its
own time``, so the first epoch after it cannot be later on the clock than the checkpoint, plus
``lost_s``, plus the wall time from the kill to that epoch's row. Counting the failed attempt
twice (timing the restart from torchrun's first start) would add that attempt's whole length.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch

from tests.helpers.faults import ONE_THREAD_ENV, REPO, children, environment_of, kill, wait_until
from tests.helpers.train import TINY, TORCHRUN, train_cli
from train.rundir import epochs
from train.rundir.clock import read_heartbeat

HEARTBEAT_S = 1.0  # the heartbeat's interval: at most this much lost work goes uncounted


@pytest.fixture(scope="module")
def store(tiny_store: Path) -> Path:
    return tiny_store  # shared by the session (tests/conftest.py): read only


def _torchrun(store: Path, out: Path, log, restarts: int, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [*TORCHRUN, "--standalone", "--nproc-per-node=1",
         f"--max-restarts={restarts}", "-m", "train", "--config", str(TINY), "--data",
         str(store), "--out", str(out), *extra],
        cwd=REPO, env=ONE_THREAD_ENV, stdout=log, stderr=subprocess.STDOUT)


def _worker(job: subprocess.Popen) -> int | None:
    for pid in children(job.pid):
        if environment_of(pid).get("RANK") == "0":
            return pid
    return None


def _run_dir(out: Path) -> Path:
    (run_dir,) = (out / "test_tiny").iterdir()  # one folder, whatever the attempts
    return run_dir


def _kill_after_first_checkpoint(job: subprocess.Popen, out: Path) -> dict:
    wait_until(lambda: any(out.glob("test_tiny/*/checkpoint.pt")), job, 300,
               what="the first checkpoint")
    run_dir = _run_dir(out)
    checkpointed = (run_dir / "checkpoint.pt").stat().st_mtime
    # Half of epoch 0's training time into epoch 1 (a fixed delay outlasts the last epoch on a
    # fast machine).
    time.sleep(0.5 * float(epochs.read_epochs(run_dir)[0]["train_s"]))
    worker = _worker(job)
    assert worker is not None
    kill([worker])
    killed = time.time()
    point = torch.load(run_dir / "checkpoint.pt", map_location="cpu", weights_only=True)
    assert point["epoch"] == 0, "killed after the run's end; the test proves nothing"
    return {"elapsed_s": point["elapsed_s"], "checkpointed": checkpointed, "killed": killed}


def _check_counted_once(run_dir: Path, kill: dict, resumed_epoch: int) -> dict:
    rows = epochs.read_epochs(run_dir)
    assert [int(r["epoch"]) for r in rows] == list(range(len(rows))), rows
    run = json.loads((run_dir / "run.json").read_text())
    assert run["finished"] and run["epochs_done"] == len(rows)
    assert not list(run_dir.glob("*.tmp*"))
    lost = run["lost_s"]
    assert 0 < lost <= kill["killed"] - kill["checkpointed"] + HEARTBEAT_S, run
    after = float(rows[resumed_epoch]["elapsed_s"]) - kill["elapsed_s"] - lost
    wall = (run_dir / "epochs.csv").stat().st_mtime - kill["killed"]
    assert 0 <= after <= wall + 0.1, f"{after:.2f} s on the clock, {wall:.2f} s of wall time"
    return run


def test_a_killed_worker_is_restarted_into_the_same_run_with_the_clock_counted_once(
        store, tmp_path):
    # Under torchrun --max-restarts=1: killed once, shortly after the first checkpoint.
    out = tmp_path / "restarted"
    with open(tmp_path / "restarted.log", "w") as log:
        job = _torchrun(store, out, log, 1)
        try:
            launched = time.time()
            killed = _kill_after_first_checkpoint(job, out)
            assert job.wait(timeout=300) == 0, (tmp_path / "restarted.log").read_text()[-3000:]
        finally:
            kill([job.pid, *children(job.pid)])
            job.wait()
    run_dir = _run_dir(out)
    assert f"resuming {run_dir.resolve()} after epoch 0 (torchrun restart 1" in \
        (tmp_path / "restarted.log").read_text()
    restarted = _check_counted_once(run_dir, killed, 1)
    assert restarted["restarts"] == 1 and restarted["resumed"]
    assert [a["restart"] for a in restarted["attempts"]] == [0, 1]
    assert (run_dir / "system.json").is_file() and (run_dir / "system.1.json").is_file()

    # The same kill without restarts, then a manual resume (as make resume runs it).
    out = tmp_path / "manual"
    with open(tmp_path / "manual.log", "w") as log:
        job = _torchrun(store, out, log, 0)
        try:
            killed_manual = _kill_after_first_checkpoint(job, out)
            assert job.wait(timeout=120) != 0
        finally:
            kill([job.pid, *children(job.pid)])
            job.wait()
    resumed = train_cli("--resume", str(_run_dir(out)), torchrun=1, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    manual = _check_counted_once(_run_dir(out), killed_manual, 1)
    assert manual["restarts"] == 0 and [a["restart"] for a in manual["attempts"]] == [0, 0]
    # Both ways of going on count the same lost work. (Counting the failed attempt twice is
    # ruled out by _check_counted_once for each: the clock after the kill grows no faster
    # than the wall clock. Comparing the two runs' final clocks instead would measure this
    # machine's run-to-run noise: seconds on a busy 2-core VM.)
    first_attempt = killed["killed"] - launched
    end = {name: float(epochs.read_epochs(_run_dir(tmp_path / name))[-1]["elapsed_s"])
           for name in ("restarted", "manual")}
    print(f"last epoch on the clock {end}, lost_s restarted {restarted['lost_s']} manual "
          f"{manual['lost_s']}, first attempt {first_attempt:.1f} s")
    assert abs(restarted["lost_s"] - manual["lost_s"]) < HEARTBEAT_S + 0.5


def test_a_worker_killed_before_its_first_checkpoint_starts_the_run_over_in_its_folder(
        store, tmp_path):
    out = tmp_path / "out"
    log_path = tmp_path / "job.log"
    with open(log_path, "w") as log:
        job = _torchrun(store, out, log, 1, "--set", "epochs=1")
        try:
            wait_until(lambda: any(out.glob("test_tiny/*/heartbeat")), job, 300,
                       what="the run training")
            time.sleep(0.3)
            worker = _worker(job)
            assert worker is not None
            kill([worker], signal.SIGKILL)
            killed = time.time()
            run_dir = _run_dir(out)
            assert not (run_dir / "checkpoint.pt").exists(), "killed too late"
            heartbeat = read_heartbeat(run_dir)  # the clock at the failed attempt's end
            assert job.wait(timeout=300) == 0, log_path.read_text()[-3000:]
        finally:
            kill([job.pid, *children(job.pid)])
            job.wait()
    assert f"starting {run_dir.resolve()} over from epoch 0 (torchrun restart 1" in \
        log_path.read_text()
    run = json.loads((run_dir / "run.json").read_text())
    assert _run_dir(out) == run_dir and run["finished"] and run["restarts"] == 1
    rows = epochs.read_epochs(run_dir)
    assert [r["epoch"] for r in rows] == ["0"]
    # All the failed attempt did is redone: all of it is lost, and counted once.
    assert run["lost_s"] == pytest.approx(heartbeat, abs=1e-3) and heartbeat > 0
    after = float(rows[0]["elapsed_s"]) - heartbeat
    wall = (run_dir / "epochs.csv").stat().st_mtime - killed
    assert 0 <= after <= wall + 0.1, f"{after:.2f} s on the clock, {wall:.2f} s of wall time"
