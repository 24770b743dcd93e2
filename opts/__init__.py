"""Training options: flat YAML presets in configs/, overridden from the command line.

A preset sets the workload (configs/X3D_M.yaml, configs/MVIT_B_16x4.yaml are frozen copies of
the benchmark's). Keys the preset leaves out take the workload's values below, except the few
that differ per model (``name``, ``model``, ``target_top1``, ``val_crop``), which every preset
must give. The resolved config holds every key, the model options of its model and the
resource knobs.

Compliance: a run is compared with the frozen preset of the same ``name`` in configs/ (or, if
there is none, with the file given by --config). Any key that differs, apart from the resource
knobs and ``stop_at_target`` (it only decides whether to keep training after the first
evaluation at the target, so it cannot change the time to reach it), is a changed key.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

import yaml

from formats.yaml_limits import YamlRefused, load_yaml_file, load_yaml_text
from opts.values import ConfigError, Key, check_value

REPO = Path(__file__).resolve().parent.parent
CONFIG_DIR = REPO / "configs"


PROBABILITY = {"minimum": 0.0, "maximum": 1.0}


# The workload's values (WORKLOAD.md); a preset repeats them to be self-describing.
KEYS: dict[str, Key] = {
    "name": Key("str", file_name=True),  # the run's results folder is named after it
    "model": Key("str", choices=("x3d_m", "mvit_b_16x4")),
    "num_classes": Key("int", 20, minimum=2),
    "clip_len": Key("int", 16, minimum=1),
    "train_short_side": Key("int_pair", [256, 320], minimum=1),
    "train_crop": Key("int", 224, minimum=1),
    "flip_p": Key("float", 0.5, **PROBABILITY),
    "mean": Key("float3", [0.45, 0.45, 0.45]),
    "std": Key("float3", [0.225, 0.225, 0.225], minimum=0.0, above=True),
    "val_short_side": Key("int", 256, minimum=1),
    "val_crop": Key("int", minimum=1),
    "epochs": Key("int", 20, minimum=1),
    "batch_size": Key("int", 16, minimum=1),
    "lr": Key("float", 0.01, minimum=0.0),
    "momentum": Key("float", 0.94, minimum=0.0),
    "dampening": Key("float", 0.0, minimum=0.0),
    "nesterov": Key("bool", True),
    "weight_decay": Key("float", 5e-4, minimum=0.0),
    "warmup_epochs": Key("int", 5, minimum=0),
    "warmup_start_factor": Key("float", 0.1, minimum=0.0, maximum=1.0, above=True),
    "cosine_t_max": Key("int", 25, minimum=1),
    "eta_min": Key("float", 1e-5, minimum=0.0),
    "seed": Key("int", 0, minimum=0, maximum=2**32 - 1),  # numpy's seed range
    "target_top1": Key("float", minimum=0.0, maximum=100.0),
    "stop_at_target": Key("bool", False),
    # Scheduled evaluations: after every ``eval_period``-th epoch (1-based) and after the last
    # one; only these can reach the target (WORKLOAD.md: period 10, so epochs 10 and 20).
    "eval_period": Key("int", 10, minimum=1),
    # Speed options: not part of the workload, so changing one makes a run non-compliant.
    "precision": Key("str", "fp32", choices=("fp32", "bf16", "fp16")),
    "channels_last": Key("bool", False),
    "compile": Key("bool", False),
    # Resource knobs: never affect compliance.
    "gpus": Key("int", None, minimum=1),
    # More loader workers than this per process is a mistake, not a machine.
    "workers": Key("int", 8, minimum=0, maximum=256),
    # Extra evaluations after every N-th epoch (0: none), for accuracy curves: they never
    # reach the target, change nothing in training and are left out of the run clock.
    "eval_every": Key("int", 0, minimum=0),
    # Where to train: "auto" (the GPUs if PyTorch can use them), "cuda" or "cpu".
    "device": Key("str", "auto", choices=("auto", "cuda", "cpu")),
    # Bound on any wait for another process (collectives) or for the loader, in seconds.
    "timeout_s": Key("float", 600.0, minimum=1.0, maximum=7 * 86400.0),
    "data": Key("str", "data/frames/kinetics20_jpg"),
    "out": Key("str", "results"),
    # The system the run is a result of (README, "Comparing machines"): the name that groups
    # its results (None: the host's name) and an optional description file (interconnect,
    # storage, power cap, notes) recorded with the run.
    "system": Key("str", None, file_name=True),
    "system_description": Key("str", None),
    # A campaign of campaign_runs runs (make bench-cnn RUNS=N): this is run campaign_run
    # (0-based), and its seed is campaign_run: the runs are samples of one workload.
    "campaign_runs": Key("int", 0, minimum=0, maximum=1000),
    "campaign_run": Key("int", 0, minimum=0, maximum=999),
}

# Options passed to models.build, per model, with the workload's values.
MODEL_OPTIONS: dict[str, dict[str, Key]] = {
    "x3d_m": {
        "head_softmax": Key("bool", True),
        "stage2_shortcut_bn": Key("bool", False),
        "dropout": Key("float", 0.5, **PROBABILITY),
        # Clips per BatchNorm statistic (WORKLOAD.md, "BatchNorm span"): 4, as in the
        # reference's DataParallel over 4 GPUs, whatever the process count.
        "bn_span": Key("int", 4, minimum=1),
    },
    "mvit_b_16x4": {
        "dropout": Key("float", 0.5, **PROBABILITY),
        "drop_path": Key("float", 0.0, **PROBABILITY),
    },
}

RESOURCE_KNOBS = ("gpus", "workers", "data", "out", "eval_every", "device", "timeout_s",
                  "system", "system_description", "campaign_runs", "campaign_run")
NOT_WORKLOAD = RESOURCE_KNOBS + ("stop_at_target",)


def workload_digest(config: dict) -> str:
    """A short digest of the config's workload (every key but the resource knobs): what a
    checkpoint records of the run it belongs to."""
    workload = {k: v for k, v in config.items() if k not in RESOURCE_KNOBS}
    text = json.dumps(workload, sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def valid_keys(model: str | None) -> dict[str, Key]:
    keys = dict(KEYS)
    keys.update(MODEL_OPTIONS.get(model, {}))
    return keys


def _model_of(values: dict, where: str) -> str:
    model = values.get("model")
    if model is None:
        raise ConfigError(f"{where}: missing key 'model'; add one of " + ", ".join(MODEL_OPTIONS))
    return check_value("model", KEYS["model"], model, where)


def resolve(values: dict, where: str) -> dict:
    """Validate ``values`` (a preset plus overrides) and fill in defaults."""
    model = _model_of(values, where)
    keys = valid_keys(model)
    unknown = sorted(set(values) - set(keys))
    if unknown:
        other = [k for k in unknown if any(k in opts for opts in MODEL_OPTIONS.values())]
        hint = f" ({', '.join(other)} does not apply to model {model})" if other else ""
        raise ConfigError(
            f"{where}: unknown key {', '.join(unknown)}{hint}; valid keys: {', '.join(keys)}"
        )
    out = {}
    for name, key in keys.items():
        if name in values:
            out[name] = check_value(name, key, values[name], where, name in RESOURCE_KNOBS)
        elif key.default is not None or name in RESOURCE_KNOBS:
            out[name] = key.default
        else:
            raise ConfigError(f"{where}: missing required key '{name}'")
    if out["batch_size"] and out["gpus"] and out["batch_size"] % out["gpus"]:
        raise ConfigError(
            f"{where}: batch_size {out['batch_size']} (global) does not divide across "
            f"{out['gpus']} GPUs; use a GPU count that divides it"
        )
    if out["train_crop"] > out["train_short_side"][0]:
        raise ConfigError(f"{where}: train_crop {out['train_crop']} is larger than the smallest "
                          f"train short side {out['train_short_side'][0]}; expected train_crop "
                          f"<= {out['train_short_side'][0]}")
    if out["val_crop"] > out["val_short_side"]:
        raise ConfigError(f"{where}: val_crop {out['val_crop']} is larger than val_short_side "
                          f"{out['val_short_side']}; expected val_crop <= {out['val_short_side']}")
    if out["nesterov"] and (out["momentum"] <= 0 or out["dampening"] != 0):
        raise ConfigError(f"{where}: nesterov needs momentum > 0 and dampening 0")
    return out


def read_preset(path: Path) -> dict:
    """The raw key/value mapping of a preset file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such config file; presets are in {CONFIG_DIR}")
    try:
        values = load_yaml_file(path)
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from None
    except YamlRefused as e:
        raise ConfigError(f"{path}: refused ({e})") from None
    except ValueError as e:  # e.g. an integer of more than 4300 digits
        raise ConfigError(f"{path}: unreadable value ({str(e)[:80]})") from None
    if not isinstance(values, dict):
        raise ConfigError(f"{path}: expected a mapping of key: value lines")
    return values


def load_preset(path: Path) -> dict:
    return resolve(read_preset(path), str(path))


def parse_set(items: list[str]) -> dict:
    """``key=value`` strings to a dict; values are read as YAML (1e-3, true, [1, 2])."""
    out = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set {item!r}: expected key=value")
        try:
            out[key.strip()] = load_yaml_text(text)
        except (yaml.YAMLError, ValueError):  # ValueError: an integer of 4300+ digits
            raise ConfigError(f"--set {key.strip()}: value is not valid YAML or too large "
                              "a number") from None
    return out


def baseline_preset(config: dict, given: Path) -> tuple[dict, Path]:
    """The preset a run is judged against: configs/<name>.yaml when it exists (so a copy of
    a frozen preset elsewhere cannot alter it unnoticed), else the file given."""
    frozen = CONFIG_DIR / f"{config['name']}.yaml"
    path = frozen if frozen.is_file() else Path(given)
    return load_preset(path), path


def changed_keys(config: dict, baseline: dict) -> list[str]:
    """Keys whose value differs from the baseline preset, apart from the resource knobs (and a
    campaign run's seed, when it is the campaign's rule)."""
    names = (set(config) | set(baseline)) - set(NOT_WORKLOAD)
    if is_campaign_seed(config):
        names.discard("seed")
    return sorted(k for k in names if config.get(k) != baseline.get(k))


def is_campaign_seed(config: dict) -> bool:
    """True for a campaign's run whose seed follows the campaign rule: run k has seed k."""
    runs, run = config.get("campaign_runs") or 0, config.get("campaign_run") or 0
    return runs > 0 and run < runs and config.get("seed") == run


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m train",
        description="Train a video model on a frame store and record time-to-accuracy results.",
    )
    p.add_argument("--config", type=Path, help="preset YAML, e.g. configs/X3D_M.yaml")
    p.add_argument("--gpus", type=int, help="processes (GPUs); must match torchrun's world size")
    p.add_argument("--workers", type=int, help="DataLoader workers per process")
    p.add_argument("--data", help="frame store folder (built by `make frames`)")
    p.add_argument("--out", help="results folder")
    p.add_argument("--resume", type=Path, metavar="RUN_DIR",
                   help="continue a stopped run from its last checkpoint, in its own folder")
    p.add_argument("--eval-every", type=int, metavar="N",
                   help="extra evaluations after every N-th epoch, for accuracy curves (off the "
                        "run clock; they never reach the target)")
    p.add_argument("--device", choices=("auto", "cuda", "cpu"),
                   help="train on the GPUs (cuda), the CPU, or whichever PyTorch can use (auto)")
    p.add_argument("--timeout", type=float, dest="timeout_s", metavar="SECONDS",
                   help="bound on any wait for another process or the loader")
    p.add_argument("--seed", type=int, help="random seed (changes the workload)")
    p.add_argument("--stop-at-target", action=argparse.BooleanOptionalAction, default=None,
                   help="end at the first evaluation at or above target_top1")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override any config key (changes the workload unless a resource knob)")
    return p


def overrides_from_args(args: argparse.Namespace) -> dict:
    """Command-line values that override the preset (only those actually given)."""
    values = parse_set(args.set)
    for name in ("gpus", "workers", "data", "out", "eval_every", "device", "timeout_s", "seed",
                 "stop_at_target"):
        value = getattr(args, name)
        if value is not None:
            values[name] = value
    return values


def config_from_args(args: argparse.Namespace) -> tuple[dict, list[str]]:
    """The resolved config of a new run and its changed keys."""
    if args.config is None:
        raise ConfigError("--config is required (e.g. --config configs/X3D_M.yaml)")
    raw = read_preset(args.config)
    config = resolve({**raw, **overrides_from_args(args)}, f"{args.config} with overrides")
    baseline, _ = baseline_preset(config, args.config)
    return config, changed_keys(config, baseline)
