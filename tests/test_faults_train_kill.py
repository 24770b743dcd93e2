"""Training killed with SIGKILL while it writes a checkpoint, and (from the second round on)
again mid-epoch after a resume, then resumed to the end: it goes on from the last complete
checkpoint, epochs.csv holds every epoch once, the clock counts the lost work, and the final
weights are those of an uninterrupted run. (The last resume runs in the test's process, with
the clock started at the call as a new process would.)

Tolerance on the final weights: exact equality is expected (same seed, same data order keyed
by epoch, generator states restored from the checkpoint, one compute thread on the CPU), so
the test allows only float32 rounding noise: |difference| <= 1e-6 + 1e-5 x |value|.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch

from opts import build_parser
from tests.helpers.faults import (
    FAULT_ROUNDS,
    fault_rng,
    kill,
    python_module,
    replay_hint,
    wait_until,
)
from tests.helpers.train import TINY, one_thread
from train.__main__ import main as train_main
from train.run import run
from train.rundir import epochs

EPOCHS = 2
RTOL, ATOL = 1e-5, 1e-6


@pytest.fixture(scope="module")
def store(tiny_store: Path) -> Path:
    return tiny_store  # shared by the session (tests/conftest.py): read only


@pytest.fixture(scope="module")
def reference(store, tmp_path_factory) -> Path:
    """The run folder of the same run without a kill."""
    out = tmp_path_factory.mktemp("uninterrupted")
    with one_thread():
        assert train_main(["--config", str(TINY), "--data", str(store), "--out", str(out),
                           "--set", f"epochs={EPOCHS}"]) == 0
    (run_dir,) = (out / "test_tiny").iterdir()
    return run_dir


def _checkpoint_epoch(run_dir: Path) -> int | None:
    path = run_dir / "checkpoint.pt"
    if not path.is_file():
        return None
    return torch.load(path, map_location="cpu", weights_only=True)["epoch"]


def _temporary_checkpoints(run_dir: Path) -> list[Path]:
    return list(run_dir.glob("checkpoint.pt.tmp*"))


def _kill_in_checkpoint_write(proc: subprocess.Popen, run_dir: Path, rng, where: str) -> int:
    """SIGKILL ``proc`` while it writes a checkpoint after epoch 1 or later (a random one).

    On seeing the temporary file the process is frozen (SIGSTOP); if the rename already
    happened it goes on to the next write, else it is killed there. Returns the epoch of the
    complete checkpoint left behind."""
    wait_until(lambda: (run_dir / "checkpoint.pt").is_file(), proc, 240,
               what=f"the first checkpoint ({where})")
    skip = rng.randint(0, EPOCHS - 2)  # writes to let pass first
    while True:
        # The last write is the last chance: it is frozen as soon as it is seen. An earlier one
        # is frozen at a random point of its first 20 ms, which a short write may have left
        # already (then the next write is tried).
        last = _checkpoint_epoch(run_dir) == EPOCHS - 2
        wait_until(lambda: bool(_temporary_checkpoints(run_dir)), proc, 240,
                   what=f"a checkpoint being written ({where})")
        if not last:
            time.sleep(rng.uniform(0, 0.02))
        proc.send_signal(signal.SIGSTOP)
        caught = bool(_temporary_checkpoints(run_dir))
        if caught and (skip == 0 or last):
            kill([proc.pid])
            proc.wait()
            return _checkpoint_epoch(run_dir)
        skip -= caught
        proc.send_signal(signal.SIGCONT)
        wait_until(lambda: not _temporary_checkpoints(run_dir), proc, 240,
                   what=f"the checkpoint rename ({where})")


def _read_run(run_dir: Path) -> dict:
    return json.loads((run_dir / "run.json").read_text())


def _first_run_killed_in_checkpoint_write(store: Path, out: Path, log, rng, where: str):
    """(run folder, epoch of the complete checkpoint left) of a run killed mid-write."""
    proc = python_module("train", "--config", str(TINY), "--data", str(store), "--out",
                         str(out), "--set", f"epochs={EPOCHS}", stdout=log,
                         stderr=subprocess.STDOUT)
    try:
        wait_until(lambda: any(out.glob("test_tiny/*/run.json")), proc, 240,
                   what=f"the run folder ({where})")
        (run_dir,) = (out / "test_tiny").iterdir()
        kept = _kill_in_checkpoint_write(proc, run_dir, rng, where)
    finally:
        kill([proc.pid])
        proc.wait()
    assert proc.returncode == -signal.SIGKILL, where
    assert _temporary_checkpoints(run_dir), f"{where}: not killed mid-write"
    assert kept is not None and kept < EPOCHS - 1, where
    # The epoch whose checkpoint was being written is in epochs.csv already.
    assert [int(r["epoch"]) for r in epochs.read_epochs(run_dir)] == list(range(kept + 2))
    return run_dir, kept


def _resume_killed_mid_epoch(run_dir: Path, store: Path, log, rng, where: str) -> None:
    # Killed within the first half of an epoch's training, as long as the first run's epochs
    # took: a fixed delay outlasts the one epoch left on a fast machine.
    epoch_s = min(float(r["train_s"]) for r in epochs.read_epochs(run_dir))
    started = time.time()
    proc = python_module("train", "--resume", str(run_dir), "--data", str(store), stdout=log,
                         stderr=subprocess.STDOUT)
    try:
        wait_until(lambda: (run_dir / "heartbeat").stat().st_mtime > started, proc, 240,
                   what=f"the resumed run training ({where})")
        time.sleep(rng.uniform(0.0, 0.5 * epoch_s))
    finally:
        kill([proc.pid])
        proc.wait()
    assert proc.returncode == -signal.SIGKILL, f"{where}: it ended before the kill"
    assert _read_run(run_dir)["finished"] is False


def _resume_to_the_end(run_dir: Path, store: Path, capsys) -> str:
    """Resume in this process, the clock starting now as in a fresh process."""
    args = build_parser().parse_args(["--resume", str(run_dir), "--data", str(store)])
    capsys.readouterr()
    with one_thread():
        run(args, time.time())
    return capsys.readouterr().out


def _check_resumed_run(run_dir: Path, reference: Path, where: str) -> None:
    rows = epochs.read_epochs(run_dir)
    assert [int(r["epoch"]) for r in rows] == list(range(EPOCHS)), where
    elapsed = [float(r["elapsed_s"]) for r in rows]
    assert elapsed == sorted(elapsed) and len(set(elapsed)) == EPOCHS, f"{where}: {elapsed}"
    run_json = _read_run(run_dir)
    assert run_json["finished"] and run_json["resumed"] and run_json["epochs_done"] == EPOCHS
    assert run_json["lost_s"] > 0, where  # both kills threw away work done after a checkpoint
    assert not list(run_dir.glob("*.tmp*")), f"{where}: temporary files left behind"

    final = torch.load(run_dir / "checkpoint.pt", map_location="cpu", weights_only=True)
    expected = torch.load(reference / "checkpoint.pt", map_location="cpu", weights_only=True)
    assert final["epoch"] == expected["epoch"] == EPOCHS - 1
    assert final["model"].keys() == expected["model"].keys()
    for name, tensor in expected["model"].items():
        assert torch.allclose(final["model"][name], tensor, rtol=RTOL, atol=ATOL), \
            f"{where}: {name} differs by {(final['model'][name] - tensor).abs().max()}"
    numbers = ("lr", "train_loss", "train_top1", "val_top1", "val_top5")
    for ours, theirs in zip(rows, epochs.read_epochs(reference), strict=True):
        assert [float(ours[k]) for k in numbers] == pytest.approx(
            [float(theirs[k]) for k in numbers], rel=RTOL, abs=ATOL), where


def test_kills_mid_checkpoint_and_mid_epoch_then_resume_match_an_uninterrupted_run(
        store, reference, tmp_path, capsys):
    rng = fault_rng("train kill")
    for round_ in range(FAULT_ROUNDS):
        where = replay_hint(round_)
        with open(tmp_path / f"round{round_}.log", "w") as log:
            run_dir, _ = _first_run_killed_in_checkpoint_write(
                store, tmp_path / f"round{round_}", log, rng, where)
            if round_ > 0:  # the fast subset (one round) leaves this to test_train_resume
                _resume_killed_mid_epoch(run_dir, store, log, rng, where)
        last_good = _checkpoint_epoch(run_dir)
        out = _resume_to_the_end(run_dir, store, capsys)
        assert f"resuming {run_dir} after epoch {last_good}" in out, where
        _check_resumed_run(run_dir, reference, where)
