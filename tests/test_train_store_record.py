"""Every run records the store it read; a resumed run keeps its store (a given one must have
the run's fingerprint), has its compliance judged again, and a run stopped on a NaN loss is
not restarted."""

from __future__ import annotations

import dataclasses
import glob
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
import yaml

from formats.store import read_settings, write_settings
from opts import build_parser
from opts.resume import resume_config
from preprocess.identity import store_fingerprint
from tests.helpers.train import REPO, TINY, one_thread
from train.__main__ import main as train_main
from train.rundir import attempts, checkpoint

# Epoch 0 trains; epoch 1's LR (1e30) overflows the weights: the run stops after epoch 0.
DIVERGING = ["--set", "lr=1e30", "--set", "warmup_start_factor=1e-30", "--set", "epochs=3"]


@pytest.fixture(scope="module")
def store(tiny_store: Path) -> Path:
    return tiny_store  # shared by the session (tests/conftest.py): read only


@pytest.fixture(scope="module")
def stopped(store, tmp_path_factory) -> Path:
    """The folder of a run stopped by a NaN loss after epoch 0 (resumable)."""
    out = tmp_path_factory.mktemp("stopped")
    with one_thread():
        assert train_main(["--config", str(TINY), "--data", str(store), "--out", str(out),
                           *DIVERGING]) == 1
    (run_dir,) = (out / "test_tiny").iterdir()
    return run_dir


def _copy(run_dir: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(run_dir, tmp_path / "results" / "test_tiny" / run_dir.name))


def test_a_run_records_its_store_and_is_compliant_only_on_the_workloads(store, stopped):
    run = json.loads((stopped / "run.json").read_text())
    assert run["state"] == "stopped"
    recorded = run["store"]
    assert recorded["path"] == str(store.resolve()) and recorded["format"] == "jpg"
    assert recorded["fingerprint"] == store_fingerprint(store)
    assert recorded["videos"] == {"train": 6, "val": 3}
    assert recorded["clips"] == {"train": 12, "val": 7}  # 4-frame clips of those videos
    assert (recorded["short_side"], recorded["jpeg_quality"]) == (40, 90)
    issues = run["compliance_issues"]
    assert any(i.startswith("store settings differ: short_side 40") for i in issues)
    assert any(i.startswith("store has no identity record") for i in issues)
    assert checkpoint.load(stopped)[0].store_fingerprint == recorded["fingerprint"]


def test_resume_keeps_the_runs_store_and_refuses_another(store, stopped, tmp_path, capsys):
    run_dir = _copy(stopped, tmp_path)
    args = build_parser().parse_args(["--resume", str(run_dir)])
    assert resume_config(args)[0]["data"] == str(store)  # no --data: its own store

    other = Path(shutil.copytree(store, tmp_path / "other"))
    write_settings(other, dataclasses.replace(read_settings(other), jpeg_quality=80))
    capsys.readouterr()
    assert train_main(["--resume", str(run_dir), "--data", str(other)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"error: {other}: store fingerprint ")
    assert store_fingerprint(other) in err and store_fingerprint(store) in err
    assert str(store.resolve()) in err

    # A copy of the run's store (same fingerprint) elsewhere is accepted: the run goes on
    # (and stops on the same NaN), recording the store it read this time.
    same = Path(shutil.copytree(store, tmp_path / "copy"))
    interrupted = {**json.loads((run_dir / "run.json").read_text()), "state": "interrupted"}
    (run_dir / "run.json").write_text(json.dumps(interrupted))  # as after a Ctrl-C
    with one_thread():
        assert train_main(["--resume", str(run_dir), "--data", str(same)]) == 1
    assert "training loss became nan" in capsys.readouterr().err
    run = json.loads((run_dir / "run.json").read_text())
    assert run["state"] == "stopped"  # the resumed attempt's own state, not the one before
    assert run["store"]["path"] == str(same.resolve())
    assert [a["store"] for a in run["attempts"]] == [str(store.resolve()), str(same.resolve())]
    assert len(run["attempts"]) == 2 and (run_dir / "system.1.json").is_file()
    assert (run_dir / "system.json").read_bytes() == (stopped / "system.json").read_bytes()


def test_resume_recomputes_compliance_from_the_edited_config(stopped, tmp_path):
    run_dir = _copy(stopped, tmp_path)
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    (run_dir / "config.yaml").write_text(yaml.safe_dump({**config, "dropout": 0.3}))
    run = json.loads((run_dir / "run.json").read_text())
    assert set(run["changed_keys"]) == {"epochs", "lr", "warmup_start_factor"}
    (run_dir / "run.json").write_text(json.dumps({**run, "changed_keys": []}))  # not trusted
    _, changed = resume_config(build_parser().parse_args(["--resume", str(run_dir)]))
    assert set(changed) == {"dropout", "epochs", "lr", "warmup_start_factor"}


def test_make_resume_passes_a_store_only_when_one_is_given():
    # Under `make test` this make is nested: drop the parent's make variables so it
    # prints only its own recipe.
    env = {k: v for k, v in os.environ.items() if k not in ("MAKELEVEL", "MAKEFLAGS", "MFLAGS")}

    def dry_run(*args: str) -> str:
        done = subprocess.run(["make", "--no-print-directory", "-n", "resume", "RUN=results/X/r",
                               *args], cwd=REPO, env=env, capture_output=True, text=True,
                              check=True)
        [command] = [line for line in done.stdout.splitlines() if "-m train" in line]
        return command

    assert "--data" not in dry_run()
    assert "--resume results/X/r --data /elsewhere/store " in dry_run("STORE=/elsewhere/store")


def test_a_restart_does_not_repeat_a_run_stopped_on_a_nan_loss(store, stopped, tmp_path,
                                                                monkeypatch, capsys):
    """torchrun restarts a failed worker group whatever the cause; a NaN stop would come
    back, so the restart (the same command line) ends at once with one line."""
    run_dir = _copy(stopped, tmp_path)
    launch = f"restart-test-{tmp_path.name}"
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", launch)
    attempts.remember_run(tmp_path / "results", run_dir)  # as its first attempt did
    monkeypatch.setenv("TORCHELASTIC_RESTART_COUNT", "1")
    try:
        code = train_main(["--config", str(TINY), "--data", str(store), "--out",
                           str(tmp_path / "results"), *DIVERGING])
    finally:
        for left in glob.glob(f"{tempfile.gettempdir()}/train-user-error-*-{launch}-*"):
            Path(left).unlink()
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert err.startswith(f"error: {run_dir.resolve()}: not restarted: the run stopped on a "
                          "NaN/infinite loss")
    assert checkpoint.load(run_dir)[0].epoch == 0
    assert json.loads((run_dir / "run.json").read_text())["attempts"] == \
        json.loads((stopped / "run.json").read_text())["attempts"]
