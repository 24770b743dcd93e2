"""Rank 0's checks when an attempt continues a run folder: which folder (``--resume``, or the
one a torchrun restart finds), whether it may be continued, and whether the store is the run's.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import opts
from formats.results import RUN_FILE, STATE_DIVERGED
from preprocess.identity import read_store_identity
from train import TrainError
from train.launch import launcher
from train.rundir.attempts import find_restarted_run, lock_run_dir, remove_partial
from train.rundir.checkpoint import ResumePoint


def read_run_json(run_dir: Path) -> dict:
    """run.json of a run folder; one-line TrainError if it cannot be read."""
    path = Path(run_dir) / RUN_FILE
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise TrainError(f"{path}: unreadable ({e}); is this a run folder?") from None


def reopen(resume: Path | None, config: dict, own_start: float
           ) -> tuple[Path | None, int | None, dict]:
    """The folder this attempt continues (None: a new run), the descriptor holding its lock
    (to close when the run ends) and its run.json so far."""
    restart = launcher().restart
    run_dir = resume if resume is not None else (
        find_restarted_run(Path(config["out"]), own_start) if restart else None)
    if run_dir is None:
        return None, None, {}
    fd = lock_run_dir(run_dir)
    try:
        remove_partial(run_dir)
        try:
            previous = read_run_json(run_dir)
        except TrainError:
            previous = {}  # a first attempt killed before it wrote run.json
        if restart and previous.get("state") == STATE_DIVERGED:
            raise TrainError(f"{run_dir}: not restarted: the run stopped on a NaN/infinite loss "
                             "and would stop the same way")
        if resume is None:  # found by the restart lookup: the command line is the first attempt's
            _check_same_config(run_dir, config)
    except BaseException:
        os.close(fd)
        raise
    return run_dir, fd, previous


def _check_same_config(run_dir: Path, config: dict) -> None:
    ours = {k: v for k, v in config.items() if k not in opts.RESOURCE_KNOBS}
    theirs = {k: v for k, v in opts.read_preset(run_dir / "config.yaml").items()
              if k not in opts.RESOURCE_KNOBS}
    if ours != theirs:
        changed = sorted(k for k in ours.keys() | theirs.keys() if ours.get(k) != theirs.get(k))
        raise TrainError(f"{run_dir}: the config changed since the run started "
                         f"({', '.join(changed)}); resume it with --resume {run_dir}")


def check_store(config: dict, point: ResumePoint | None, previous: dict) -> dict:
    """The identity of the store this attempt reads; a resumed run's store must have the
    fingerprint the run recorded."""
    store = Path(config["data"])
    identity = read_store_identity(store)
    recorded = (point.store_fingerprint if point else None) or (
        (previous.get("store") or {}).get("fingerprint"))
    if recorded and identity["fingerprint"] != recorded:
        theirs = (previous.get("store") or {}).get("path", "its first store")
        raise TrainError(
            f"{store}: store fingerprint {identity['fingerprint']} is not the run's "
            f"({theirs}: {recorded}); resume on the store the run read (make resume without "
            "STORE), or on one with the same content")
    return identity
