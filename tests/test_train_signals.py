"""SIGINT (Ctrl-C) and SIGTERM (Slurm, kill, torchrun passing one on) stop training with one
line saying how to resume, a non-zero exit, the last complete checkpoint kept and no
temporary file left; with torchrun every process stops at the same agreed point."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from score.load import load_run
from tests.helpers.train import (
    ONE_THREAD_ENV,
    REPO,
    TINY,
    TORCHRUN,
    kill_tree,
)
from train.rundir import epochs

OUR_FRAME = re.compile(r'File ".*/(train|datasets|preprocess|models|opts)\b')


@pytest.fixture(scope="module")
def store(tiny_store: Path) -> Path:
    return tiny_store  # shared by the session (tests/conftest.py): read only


def _start(store: Path, out: Path, processes: int, workers: int) -> subprocess.Popen:
    launcher = [*TORCHRUN, "--standalone", f"--nproc-per-node={processes}"] if processes > 1 \
        else [sys.executable]
    # Its own session, like a job started from a terminal: Ctrl-C reaches its process group.
    return subprocess.Popen(
        [*launcher, "-m", "train", "--config", str(TINY), "--data", str(store), "--out",
         str(out), "--workers", str(workers), "--set", "epochs=60"], cwd=REPO,
        env=ONE_THREAD_ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True)


def _wait_for_checkpoint(job: subprocess.Popen, out: Path, timeout: float = 240) -> Path:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = list(out.glob("test_tiny/*/checkpoint.pt"))
        if found:
            return found[0].parent
        if job.poll() is not None:
            pytest.fail(f"the run ended before its first checkpoint: {job.stderr.read()}")
        time.sleep(0.1)
    pytest.fail("no checkpoint in time")


@pytest.mark.parametrize("name, processes, workers, to_group", [
    ("SIGINT", 1, 1, True),  # Ctrl-C: the trainer and its loader worker get it
    ("SIGTERM", 1, 0, False),  # kill <pid>
    ("SIGTERM", 2, 0, False),  # Slurm or kill: torchrun passes it on to its workers
    ("SIGINT", 2, 0, True),  # Ctrl-C on torchrun
])
def test_a_signal_stops_the_run_with_one_line_and_a_complete_checkpoint(
        store, tmp_path, name, processes, workers, to_group):
    job = _start(store, tmp_path, processes, workers)
    try:
        run_dir = _wait_for_checkpoint(job, tmp_path)
        time.sleep(0.3)  # somewhere in the next epoch
        sig = getattr(signal, name)
        if to_group:
            os.killpg(job.pid, sig)
        else:
            job.send_signal(sig)
        stdout, stderr = job.communicate(timeout=60)
    finally:
        if job.poll() is None:  # a hang: stop everything, then fail
            kill_tree(job.pid)
            job.wait()
    # torchrun too ends as a process stopped by the signal, without a traceback of its own.
    assert job.returncode == 128 + sig
    assert "Traceback" not in stderr, stderr[-3000:]
    resume = f"make resume RUN={run_dir}" + (f" GPUS={processes}" if processes > 1 else "")
    lines = [line for line in stderr.splitlines() if "stopped by signal" in line]
    assert lines == [f"stopped by signal {name}; resume with {resume}"], stderr[-3000:]
    assert not OUR_FRAME.search(stdout + stderr), stderr[-3000:]
    assert not list(run_dir.glob("*.tmp*"))  # no partial checkpoint or other temporary file
    # The last complete checkpoint: it loads, and epochs.csv has each epoch up to it once.
    torch.load(run_dir / "checkpoint.pt", map_location="cpu", weights_only=True)
    rows = epochs.read_epochs(run_dir)
    assert rows and [int(r["epoch"]) for r in rows] == list(range(len(rows)))
    # run.json says so at once: the scorer counts the run as a missed one until it is resumed.
    run = json.loads((run_dir / "run.json").read_text())
    assert run["state"] == "interrupted" and run["epochs_done"] == len(rows)
    assert load_run(run_dir, []).status == "abandoned"


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_in_the_middle_of_an_import_ends_the_process_without_unwinding_it(
        tmp_path, signum):
    # torchrun's SIGTERM can reach a process still importing torch; unwinding through that
    # import leaves it half registered and the next import fails with a traceback. A module
    # that signals its own process halfway through stands in for that import.
    (tmp_path / "slow_module.py").write_text(
        "import os, signal\n"
        f"os.kill(os.getpid(), {int(signum)})\n"
        "HALF_DONE = True\n")
    code = ("import sys; from train import signals\n"
            "with signals.handled():\n"
            "    import slow_module\n"
            "print('went on after the import')\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": f"{tmp_path}:{REPO}"}, timeout=60)
    assert done.returncode == 128 + signum
    assert done.stdout == ""
    assert done.stderr.splitlines() == [
        f"stopped by signal {signal.Signals(signum).name}; before training started; "
        "nothing to resume"]
