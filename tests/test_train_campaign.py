"""Campaigns: `make bench-cnn RUNS=N` runs N samples of one preset on one system (seed k for
run k), says which run of how many is going, and continues where a stop left it."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.helpers.train import ONE_THREAD_ENV, REPO, TINY


def _campaign(tiny_store: Path, out: Path, runs: int) -> list[str]:
    return [sys.executable, "-m", "train.campaign", "--runs", str(runs), "--",
            sys.executable, "-m", "train", "--config", str(TINY), "--data", str(tiny_store),
            "--out", str(out), "--set", "system=box-a", "--set", "epochs=1"]


def _runs(out: Path) -> dict[int, dict]:
    found = {}
    for path in out.glob("test_tiny/*/run.json"):
        run = json.loads(path.read_text())
        found[run["campaign"]["run"]] = run
    return found


def test_a_campaign_stopped_after_its_first_run_continues_to_its_end(tiny_store, tmp_path):
    out = tmp_path / "results"
    job = subprocess.Popen(_campaign(tiny_store, out, 3), cwd=REPO, env=ONE_THREAD_ENV,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 240
        while not (len(list(out.glob("test_tiny/*/config.yaml"))) == 2
                   and any(r.get("finished") for r in _runs(out).values())):
            assert job.poll() is None and time.monotonic() < deadline, job.communicate()
            time.sleep(0.1)
        job.send_signal(signal.SIGTERM)  # during the second run
        stdout, stderr = job.communicate(timeout=120)
    finally:
        if job.poll() is None:
            job.kill()
    assert job.returncode == 128 + signal.SIGTERM
    assert "campaign test_tiny on box-a: run 1 of 3 (seed 0), starting" in stdout
    assert "campaign test_tiny on box-a: run 2 of 3 (seed 1), starting" in stdout
    assert "stopped at run 2 of 3; run the same command again to continue it" in stderr
    first = _runs(out)[0]
    assert first["finished"] and first["seed"] == 0

    done = subprocess.run(_campaign(tiny_store, out, 3), cwd=REPO, env=ONE_THREAD_ENV,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "run 1 of 3 (seed 0) done earlier (finished)" in done.stdout
    assert "campaign test_tiny on box-a: all 3 runs done" in done.stdout
    runs = _runs(out)
    assert sorted(runs) == [0, 1, 2] and len(list(out.glob("test_tiny/*"))) == 3
    for k, run in runs.items():
        assert run["finished"] and run["seed"] == k and run["system"] == "box-a"
        assert run["campaign"] == {"run": k, "runs": 3}
        # The seed follows the campaign rule: not a change of the workload (epochs is).
        assert run["changed_keys"] == ["epochs"]
