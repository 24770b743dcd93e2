"""One process of a 2-process CPU run (torchrun, gloo) killed with SIGKILL mid-epoch: the job
ends within a bounded time with a report naming the dead rank (no hang), its results stay
readable, and ``--resume`` with the same process count completes it."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from tests.helpers.faults import (
    FAULT_ROUNDS,
    ONE_THREAD_ENV,
    REPO,
    children,
    environment_of,
    fault_rng,
    kill,
    replay_hint,
    wait_until,
)
from tests.helpers.train import TINY, TORCHRUN
from train.rundir import epochs

EXIT_BOUND_S = 120.0  # the job must be gone this long after the kill (gloo's own timeout: 30 min)
EPOCHS = 2


@pytest.fixture(scope="module")
def store(tiny_store: Path) -> Path:
    return tiny_store  # shared by the session (tests/conftest.py): read only


def torchrun(*args: str, **kwargs) -> subprocess.Popen:
    return subprocess.Popen([*TORCHRUN, "--standalone",
                             "--nproc-per-node=2", "-m", "train", *args], cwd=REPO,
                            env=ONE_THREAD_ENV, text=True, **kwargs)


def _rank_pid(launcher: int, rank: int) -> int | None:
    for pid in children(launcher):
        if environment_of(pid).get("RANK") == str(rank):
            return pid
    return None


def test_a_killed_rank_ends_the_job_in_bounded_time_and_the_run_resumes(store, tmp_path):
    rng = fault_rng("ddp kill")
    for round_ in range(FAULT_ROUNDS):
        where = replay_hint(round_)
        rank = 1 if round_ == 0 else rng.randint(0, 1)  # round 0: not the rank that writes
        out = tmp_path / f"round{round_}"
        log = tmp_path / f"round{round_}.log"
        with open(log, "w") as err:
            job = torchrun("--config", str(TINY), "--data", str(store), "--out", str(out),
                           "--set", f"epochs={EPOCHS}", stdout=subprocess.DEVNULL, stderr=err)
        try:
            wait_until(lambda out=out: any(out.glob("test_tiny/*/checkpoint.pt")), job, 300,
                       what=f"the first checkpoint ({where})")
            # Somewhere in epoch 1: within half of epoch 0's training time (a fixed delay
            # outlasts the last epoch on a fast machine).
            (run_dir,) = (out / "test_tiny").iterdir()
            epoch_s = float(epochs.read_epochs(run_dir)[0]["train_s"])
            time.sleep(rng.uniform(0.0, 0.5 * epoch_s))
            victim = _rank_pid(job.pid, rank)
            assert victim is not None, f"{where}: rank {rank} not found"
            kill([victim])
            killed_at = time.monotonic()
            job.wait(timeout=EXIT_BOUND_S + 30)
            took = time.monotonic() - killed_at
        finally:
            if job.poll() is None:  # a hang: stop the whole job, then fail
                kill([job.pid, *children(job.pid)])
                job.wait()
        report = log.read_text()
        assert job.returncode != 0, where
        assert took < EXIT_BOUND_S, f"{where}: the job took {took:.0f} s to end"
        # torchrun's report names the rank that died first and how.
        assert "Root Cause" in report and f"rank      : {rank}" in report, report[-3000:]
        assert "Signal 9 (SIGKILL)" in report, report[-3000:]
        assert "/train/" not in report, f"{where}: a traceback from the trainer: {report}"

        (run_dir,) = (out / "test_tiny").iterdir()
        run_json = json.loads((run_dir / "run.json").read_text())
        rows = epochs.read_epochs(run_dir)
        assert [int(r["epoch"]) for r in rows] == list(range(len(rows))) and rows
        # run.json is rewritten just after each checkpoint: it may be one epoch behind.
        assert run_json["finished"] is False and run_json["epochs_done"] <= len(rows)
        assert yaml.safe_load((run_dir / "config.yaml").read_text())["gpus"] == 2

        resumed = torchrun("--resume", str(run_dir), "--data", str(store),
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        stdout, stderr = resumed.communicate(timeout=300)
        assert resumed.returncode == 0, f"{where}: {stderr[-3000:]}"
        assert f"resuming {run_dir} after epoch 0" in stdout
        rows = epochs.read_epochs(run_dir)
        assert [int(r["epoch"]) for r in rows] == list(range(EPOCHS)), where
        elapsed = [float(r["elapsed_s"]) for r in rows]
        assert elapsed == sorted(elapsed) and len(set(elapsed)) == EPOCHS, where
        run_json = json.loads((run_dir / "run.json").read_text())
        assert run_json["finished"] and run_json["resumed"] and run_json["gpus"] == 2
        assert run_json["lost_s"] > 0, where
