"""The results folder of a run: ``<out>/<config name>/<run id>/``.

config.yaml (resolved config), system.json (machine and code), epochs.csv (one row per
finished epoch, appended and flushed), run.json (summary, rewritten atomically), plus the
trainer's own checkpoint.pt and heartbeat. Only rank 0 writes here.
"""

from __future__ import annotations

import csv
import io
import json
import os
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

import formats.results as results_format
from train import TrainError

EPOCH_COLUMNS = list(results_format.EPOCH_COLUMNS)
CONFIG_FILE = results_format.CONFIG_FILE
SYSTEM_FILE = results_format.SYSTEM_FILE
EPOCHS_FILE = results_format.EPOCHS_FILE
RUN_FILE = results_format.RUN_FILE

# Decimal places kept per column (times to the millisecond, the LR exactly).
_DECIMALS = {"elapsed_s": 3, "train_s": 3, "eval_s": 3, "untimed_s": 3, "train_loss": 6,
             "train_top1": 4, "val_top1": 4, "val_top1_clips": 4, "val_top5": 4,
             "val_video_top1": 4, "clips_per_s": 3, "data_wait_frac": 4, "peak_mem_mb": 1}


@dataclass
class RunRecord:
    """What run.json says (formats/results.py lists its keys). Every process keeps one (the stop
    decision is taken everywhere); rank 0 writes it."""

    config: dict
    run_id: str
    changed_keys: list[str]
    git_dirty: bool
    machine: str
    device: str
    gpus: int
    nodes: int = 1
    resumed: bool = False
    restarts: int = 0
    lost_s: float = 0.0
    untimed_s: float = 0.0
    reached: bool = False
    t_target_s: float | None = None
    epochs_done: int = 0
    finished: bool = False
    state: str = results_format.STATE_RUNNING
    store: dict | None = None  # the frame store read (results_format.STORE_KEYS)
    store_issues: list[str] = field(default_factory=list)  # why the store is not the workload's
    attempts: list[dict] = field(default_factory=list)  # one per process launch

    def compliance_issues(self) -> list[str]:
        """One line per reason the run is not comparable with the reference; [] if compliant."""
        issues = []
        if self.changed_keys:
            issues.append("changed: " + ", ".join(self.changed_keys))
        if self.git_dirty:
            issues.append("git dirty")
        issues += self.store_issues
        machines = {a.get("machine") for a in self.attempts}
        commits = {a.get("git_commit") for a in self.attempts}
        if len(machines) > 1:
            issues.append(f"spans {len(machines)} machines")
        if len(commits) > 1:
            issues.append(f"spans {len(commits)} commits")
        return issues

    def to_json(self) -> dict:
        c = self.config
        issues = self.compliance_issues()
        return {
            "format": results_format.RESULTS_FORMAT, "protocol": results_format.PROTOCOL_VERSION,
            "config": c["name"], "model": c["model"], "run_id": self.run_id,
            "target_top1": c["target_top1"], "state": self.state, "reached": self.reached,
            "t_target_s": self.t_target_s, "epochs_done": self.epochs_done,
            "finished": self.finished, "gpus": self.gpus, "nodes": self.nodes,
            "workers": c["workers"], "device": self.device, "machine": self.machine,
            "compliant": not issues, "changed_keys": self.changed_keys,
            "compliance_issues": issues, "git_dirty": self.git_dirty,
            "resumed": self.resumed, "restarts": self.restarts, "lost_s": round(self.lost_s, 3),
            "untimed_s": round(self.untimed_s, 3), "seed": c["seed"],
            "eval_epochs": scheduled_eval_epochs(c), "store": self.store,
            "attempts": self.attempts,
            "spans_machines": len({a.get("machine") for a in self.attempts}) > 1,
            "spans_commits": len({a.get("git_commit") for a in self.attempts}) > 1,
        }


def is_scheduled_eval(config: dict, epoch: int) -> bool:
    """True after every ``eval_period``-th epoch (1-based) and after the last one: the
    evaluations that can reach the target (WORKLOAD.md: after epochs 10 and 20)."""
    return (epoch + 1) % config["eval_period"] == 0 or epoch == config["epochs"] - 1


def is_extra_eval(config: dict, epoch: int) -> bool:
    """An extra evaluation (``eval_every``) after this epoch: only where none is scheduled."""
    every = config.get("eval_every") or 0
    return every > 0 and (epoch + 1) % every == 0 and not is_scheduled_eval(config, epoch)


def scheduled_eval_epochs(config: dict) -> list[int]:
    return [e for e in range(config["epochs"]) if is_scheduled_eval(config, e)]


def new_run_id() -> str:
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + secrets.token_hex(2)


def atomic_write(path: Path, text: str) -> None:
    path = Path(path)
    tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
    with open(tmp, "w", encoding="utf-8", newline="") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def create_run_dir(out: Path, config_name: str) -> Path:
    parent = Path(out) / config_name
    parent.mkdir(parents=True, exist_ok=True)
    while True:  # a fresh id; two runs started in the same second differ in the suffix
        run_dir = parent / new_run_id()
        try:
            run_dir.mkdir()
            return run_dir
        except FileExistsError:
            continue


def write_config(run_dir: Path, config: dict) -> None:
    atomic_write(run_dir / CONFIG_FILE, yaml.safe_dump(config, sort_keys=False))


def read_config(run_dir: Path) -> dict:
    path = Path(run_dir) / CONFIG_FILE
    if not path.is_file():
        raise TrainError(f"{path}: not found; --resume needs the folder of a run")
    values = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(values, dict):
        raise TrainError(f"{path}: not a config mapping")
    return values


def write_json(path: Path, data: dict) -> None:
    atomic_write(path, json.dumps(data, indent=2) + "\n")


def read_json(path: Path) -> dict:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise TrainError(f"{path}: unreadable ({e}); is this a run folder?") from None


def format_row(row: dict) -> dict:
    missing = set(EPOCH_COLUMNS) - set(row)
    if missing:
        raise ValueError(f"epoch row lacks {sorted(missing)}")
    out = {}
    for k in EPOCH_COLUMNS:
        v = row[k]
        if v is None:
            v = ""
        elif k in _DECIMALS:
            v = f"{v:.{_DECIMALS[k]}f}"
        elif k == "lr":
            v = repr(float(v))
        out[k] = v
    return out


def append_epoch(run_dir: Path, row: dict) -> None:
    """Append one epoch's row (header first if the file is new), flushed to disk."""
    path = Path(run_dir) / EPOCHS_FILE
    new = not path.exists() or path.stat().st_size == 0
    with open(path, "a", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=EPOCH_COLUMNS, lineterminator="\n")
        if new:
            writer.writeheader()
        writer.writerow(format_row(row))
        f.flush()
        os.fsync(f.fileno())


def read_epochs(run_dir: Path) -> list[dict]:
    path = Path(run_dir) / EPOCHS_FILE
    if not path.exists():
        return []
    with open(path, encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def keep_epochs_through(run_dir: Path, last_epoch: int) -> int:
    """Drop rows of epochs after ``last_epoch`` (finished after the checkpoint a resumed run
    starts from, so they will be run again) and any partial last line. Returns rows kept."""
    path = Path(run_dir) / EPOCHS_FILE
    if not path.exists():
        return 0
    keep = []
    for row in read_epochs(run_dir):
        try:
            complete = None not in row.values() and int(row["epoch"]) <= last_epoch
        except (TypeError, ValueError):
            complete = False
        if complete:
            keep.append(row)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=EPOCH_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows({c: r[c] for c in EPOCH_COLUMNS} for r in keep)
    atomic_write(path, buffer.getvalue())
    return len(keep)
