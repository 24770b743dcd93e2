"""The config of a run being resumed: its own resolved config.yaml, with only the resource
knobs (processes, workers, data path) open to change."""

from __future__ import annotations

import argparse

import opts
from train import TrainError, results


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
    return config, list(previous.get("changed_keys", [])), previous
