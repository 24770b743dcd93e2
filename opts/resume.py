"""The config of a resumed run: the run folder's own resolved config.yaml, with only the
resource knobs (processes, workers, data path) changeable.

Compliance is judged again against configs/: a hand-edited config.yaml makes the run
non-compliant, naming the keys. The run keeps its store: without ``--data`` it reads the store
it was started on (train/rundir checks that any store it reads has the run's fingerprint).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from formats.results import CONFIG_FILE, RUN_FILE
from opts import CONFIG_DIR, baseline_preset, changed_keys, read_preset, resolve
from opts.values import ConfigError


def _run_json(run_dir: Path) -> dict:
    path = run_dir / RUN_FILE
    try:
        values = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ConfigError(f"{path}: unreadable ({e}); is this a run folder?") from None
    if not isinstance(values, dict):
        raise ConfigError(f"{path}: not a run summary; is this a run folder?")
    return values


def resume_config(args: argparse.Namespace) -> tuple[dict, list[str]]:
    """(config, changed keys) of the run folder ``args.resume``."""
    run_dir = Path(args.resume)
    if not run_dir.is_dir():
        raise ConfigError(f"{run_dir}: no such run folder (expected <results>/<config>/<run id>)")
    if args.set or args.seed is not None or args.stop_at_target is not None:
        raise ConfigError(
            "--resume continues the run with its own config; only --gpus, --workers and "
            "--data may be given with it"
        )
    previous = _run_json(run_dir)
    if previous.get("finished"):
        raise ConfigError(f"{run_dir}: the run already finished; start a new run instead")
    if not (run_dir / CONFIG_FILE).is_file():
        raise ConfigError(f"{run_dir / CONFIG_FILE}: not found; --resume needs the folder of a run")
    raw = read_preset(run_dir / CONFIG_FILE)
    if args.config is not None:
        preset = read_preset(args.config).get("name")
        if preset != raw.get("name"):
            raise ConfigError(
                f"{run_dir} is a run of {raw.get('name')}, not of {preset} ({args.config})")
    overrides = {k: getattr(args, k) for k in ("workers", "data") if getattr(args, k) is not None}
    # The number of processes must stay the one the run started with (checked against the
    # checkpoint); --gpus, if given, must say the same.
    overrides["gpus"] = args.gpus if args.gpus is not None else raw.get("gpus")
    config = resolve({**raw, **overrides}, str(run_dir / CONFIG_FILE))
    return config, resumed_changed_keys(config, args.config, previous)


def resumed_changed_keys(config: dict, given: Path | None, previous: dict) -> list[str]:
    """The changed keys of a resumed config, recomputed against its frozen preset (or the
    preset given with --config); the recorded ones only when there is neither."""
    frozen = CONFIG_DIR / f"{config['name']}.yaml"
    if not frozen.is_file() and given is None:
        return list(previous.get("changed_keys", []))
    baseline, _ = baseline_preset(config, given if given is not None else frozen)
    return changed_keys(config, baseline)
