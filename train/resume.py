"""What an attempt continues from: a resumed run's config, its folder, checkpoint, clock and
store.

``--resume`` continues a run with its own resolved config.yaml; only the resource knobs
(processes, workers, data path) may change. Compliance is judged again against configs/: a
hand-edited config.yaml makes the run non-compliant, naming the keys. The run keeps its store:
without ``--data`` it reads the store it was started on, and any store it reads must have the
fingerprint the run recorded. A torchrun restart (train/rundir.py) continues the folder of the
launch's first attempt the same way, or starts it over when no checkpoint was written yet.
"""

from __future__ import annotations

import argparse
import os
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import opts
from formats.results import CHECKPOINT_FILE, STATE_STOPPED
from preprocess.identity import read_store_identity
from preprocess.lock import store_read_lock
from train import TrainError, checkpoint, results, rundir
from train.checkpoint import ResumePoint
from train.clock import attempt_clock, launch_time, read_heartbeat
from train.distributed import Dist, broadcast_object


def resume_config(args: argparse.Namespace) -> tuple[dict, list[str], dict]:
    """(config, changed keys, previous run.json) of the run folder ``args.resume``."""
    run_dir = args.resume
    if not run_dir.is_dir():
        raise TrainError(f"{run_dir}: no such run folder (expected <results>/<config>/<run id>)")
    if args.set or args.seed is not None or args.stop_at_target is not None:
        raise TrainError(
            "--resume continues the run with its own config; only --gpus, --workers and "
            "--data may be given with it"
        )
    previous = results.read_json(run_dir / results.RUN_FILE)
    if previous.get("finished"):
        raise TrainError(f"{run_dir}: the run already finished; start a new run instead")
    raw = results.read_config(run_dir)
    if args.config is not None:
        preset = opts.read_preset(args.config).get("name")
        if preset != raw.get("name"):
            raise TrainError(
                f"{run_dir} is a run of {raw.get('name')}, not of {preset} ({args.config})")
    overrides = {k: getattr(args, k) for k in ("workers", "data") if getattr(args, k) is not None}
    # The number of processes must stay the one the run started with (checked against the
    # checkpoint); --gpus, if given, must say the same.
    overrides["gpus"] = args.gpus if args.gpus is not None else raw.get("gpus")
    config = opts.resolve({**raw, **overrides}, str(run_dir / results.CONFIG_FILE))
    return config, resumed_changed_keys(config, args.config, previous), previous


def resumed_changed_keys(config: dict, given: Path | None, previous: dict) -> list[str]:
    """The changed keys of a resumed config, recomputed against its frozen preset (or the
    preset given with --config); the recorded ones only when there is neither."""
    frozen = opts.CONFIG_DIR / f"{config['name']}.yaml"
    if not frozen.is_file() and given is None:
        return list(previous.get("changed_keys", []))
    baseline, _ = opts.baseline_preset(config, given if given is not None else frozen)
    return opts.changed_keys(config, baseline)


@dataclass
class Opening:
    """What this attempt starts from (the same on every rank)."""

    run_dir: Path | None  # None: a new run (its folder is made once the model is built)
    point: ResumePoint | None  # the checkpoint's resume point (None: from epoch 0)
    state: dict | None  # the checkpoint (weights, optimiser, generators)
    previous: dict = field(default_factory=dict)  # the folder's run.json so far
    start: float = 0.0  # Clock(start, carried_s)
    carried_s: float = 0.0
    lost_s: float = 0.0
    store: dict = field(default_factory=dict)  # read_store_identity of the store read


def _reopen(resume: Path | None, config: dict, own_start: float, held: ExitStack
            ) -> tuple[Path | None, dict]:
    """Rank 0: the folder this attempt continues (locked), and its run.json so far."""
    restart = rundir.restart_count()
    out = Path(config["out"])
    run_dir = resume if resume is not None else (
        rundir.find_restarted_run(out, own_start) if restart else None)
    if run_dir is None:
        return None, {}
    fd = rundir.lock_run_dir(run_dir)
    held.callback(os.close, fd)
    rundir.remove_partial(run_dir)
    try:
        previous = results.read_json(run_dir / results.RUN_FILE)
    except TrainError:
        previous = {}  # a first attempt killed before it wrote run.json
    if restart and previous.get("state") == STATE_STOPPED:
        raise TrainError(f"{run_dir}: not restarted: the run stopped on a NaN/infinite loss and "
                         "would stop the same way")
    if resume is None:  # found by the restart lookup: the command line is the first attempt's
        ours = {k: v for k, v in config.items() if k not in opts.RESOURCE_KNOBS}
        theirs = {k: v for k, v in results.read_config(run_dir).items()
                  if k not in opts.RESOURCE_KNOBS}
        if ours != theirs:
            changed = sorted(k for k in ours.keys() | theirs.keys()
                             if ours.get(k) != theirs.get(k))
            raise TrainError(f"{run_dir}: the config changed since the run started "
                             f"({', '.join(changed)}); resume it with --resume {run_dir}")
    return run_dir, previous


def _check_store(config: dict, point: ResumePoint | None, previous: dict) -> dict:
    """Rank 0: the identity of the store this attempt reads; a resumed run's store must have
    the fingerprint the run recorded."""
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


def open_attempt(resume: Path | None, config: dict, previous: dict | None, d: Dist,
                 own_start: float, held: ExitStack) -> Opening:
    """Find, lock and read back what this attempt continues; hold the store for reading.

    Every failure is one line raised on every rank at the same point."""
    restart = rundir.restart_count()
    launch = broadcast_object(d, launch_time(own_start))
    run_dir, found = rundir.agreed(d, lambda: _reopen(resume, config, own_start, held))
    previous = previous if previous is not None else found
    point = state = None
    heartbeat = None
    if run_dir is not None:
        has_checkpoint = broadcast_object(d, (run_dir / CHECKPOINT_FILE).is_file())
        if has_checkpoint or not restart:  # a manual resume needs one: the one-line error
            point, state = checkpoint.load(run_dir)
            if point.world_size != d.world_size:
                raise TrainError(
                    f"{run_dir}: the run used {point.world_size} process(es); resume it with "
                    f"torchrun --standalone --nproc-per-node={point.world_size}")
        heartbeat = broadcast_object(d, read_heartbeat(run_dir))
    # Rank 0's reading, so that every process keeps the same clock.
    start, carried, lost = broadcast_object(d, attempt_clock(
        launch, own_start, restart > 0, point, heartbeat, float(previous.get("lost_s") or 0.0)))
    rundir.any_error(d, lambda: held.enter_context(store_read_lock(Path(config["data"]))))
    store = rundir.agreed(d, lambda: _check_store(config, point, previous))
    return Opening(run_dir, point, state, previous, start, carried, lost, store)
