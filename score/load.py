"""Read result folders `<results>/<config>/<run_id>/` into `Run` records.

Every problem with one run becomes a one-line warning naming the file, and that run is
skipped (or, for damaged rows, the rows are ignored); the other runs are still read.
"""

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from score import ScoreError

RUN_FILES = ("run.json", "epochs.csv", "config.yaml", "system.json")
EPOCH_COLUMNS = (
    "epoch", "elapsed_s", "train_s", "eval_s", "lr", "train_loss", "train_top1", "val_top1",
    "val_top5", "val_video_top1", "clips_per_s", "data_wait_frac", "peak_mem_mb",
)
REQUIRED_EPOCH_COLUMNS = ("elapsed_s", "val_top1")
COMPLIANT = "compliant"
MAX_GPUS = 100_000  # anything larger is a damaged file, not a machine


@dataclass
class Run:
    """One training run as the scorer sees it."""

    path: Path
    config: str
    run_id: str
    machine: str
    gpus: int
    target_top1: float
    finished: bool
    resumed: bool
    lost_s: float
    # Why the run is not comparable with the reference; empty means compliant.
    compliance_issues: list[str]
    # Cleaned epochs.csv: numeric columns only, sorted by elapsed_s.
    epochs: pd.DataFrame = field(repr=False)
    t_bench_s: float | None = None

    @property
    def compliance(self) -> str:
        """"compliant", or "non-compliant (<why>)"; runs are grouped and scored by this."""
        if not self.compliance_issues:
            return COMPLIANT
        return f"non-compliant ({'; '.join(self.compliance_issues)})"

    @property
    def status(self) -> str:
        if self.t_bench_s is not None:
            return "reached"
        return "not reached" if self.finished else "in progress/incomplete"

    @property
    def labels(self) -> list[str]:
        labels = [self.status]
        if self.compliance_issues:
            labels.append(self.compliance)
        if self.resumed:
            labels.append(f"resumed (lost {self.lost_s:.0f} s)")
        return labels


def first_crossing(epochs: pd.DataFrame, target_top1: float) -> float | None:
    """elapsed_s at the end of the first evaluation with val_top1 >= target (not the best one)."""
    hits = epochs.loc[epochs["val_top1"] >= target_top1, "elapsed_s"]
    return float(hits.iloc[0]) if len(hits) else None


def find_run_dirs(results: Path) -> list[Path]:
    """Run folders at `<results>/<config>/<run_id>/`, also accepting a config or run folder."""
    if not results.is_dir():
        raise ScoreError(f"{results}: results folder not found; pass --results <folder>")

    def is_run(folder: Path) -> bool:
        return any((folder / name).exists() for name in RUN_FILES)

    found: list[Path] = []
    level = [results]
    for _ in range(3):
        next_level = []
        for folder in level:
            if is_run(folder):
                found.append(folder)
            else:
                next_level += sorted(
                    p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")
                )
        level = next_level
    return found


def load_results(results: Path, warnings: list[str]) -> list[Run]:
    """Read every run under `results`; unreadable runs are skipped with a warning."""
    runs = []
    for folder in find_run_dirs(results):
        try:
            runs.append(load_run(folder, warnings))
        except ScoreError as error:
            warnings.append(f"{error}; run skipped")
    return runs


def load_run(folder: Path, warnings: list[str]) -> Run:
    info = _read_json_object(folder / "run.json", required=True)
    system = _read_system(folder / "system.json", warnings)
    run_json = folder / "run.json"

    config = info.get("config")
    if not isinstance(config, str) or not config.strip():
        raise ScoreError(f"{run_json}: no 'config' name")
    target = _number(info, "target_top1", run_json)
    if not 0 < target <= 100:
        raise ScoreError(f"{run_json}: target_top1 {target} is not a percentage in (0, 100]")
    gpus = _number(info, "gpus", run_json)
    if not 1 <= gpus <= MAX_GPUS or gpus != int(gpus):
        raise ScoreError(f"{run_json}: gpus {gpus:g} is not a whole number in 1..{MAX_GPUS}")
    machine = info.get("machine") or system.get("machine") or "unknown machine"
    lost_s = info.get("lost_s", 0.0)
    lost_s = float(lost_s) if _is_number(lost_s) and lost_s >= 0 else 0.0

    epochs = read_epochs(folder / "epochs.csv", warnings)
    run = Run(
        path=folder,
        config=config.strip(),
        run_id=str(info.get("run_id") or folder.name),
        machine=str(machine),
        gpus=int(gpus),
        target_top1=target,
        finished=info.get("finished") is True,
        resumed=info.get("resumed") is True,
        lost_s=lost_s,
        compliance_issues=_compliance_issues(info, system),
        epochs=epochs,
    )
    run.t_bench_s = first_crossing(epochs, target)
    _check_recorded_time(run, info, warnings)
    return run


def read_epochs(path: Path, warnings: list[str]) -> pd.DataFrame:
    """Read epochs.csv into clean float columns; damaged rows are dropped with one warning."""
    bad_lines: list[list[str]] = []
    try:
        raw = pd.read_csv(
            path, dtype=str, engine="python", skipinitialspace=True,
            on_bad_lines=lambda line: bad_lines.append(line),
        )
    except FileNotFoundError as error:
        raise ScoreError(f"{path}: missing") from error
    except pd.errors.EmptyDataError as error:
        raise ScoreError(f"{path}: empty file (no header)") from error
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError, OSError) as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ScoreError(f"{path}: not a readable CSV ({reason})") from error

    raw.columns = [str(name).strip() for name in raw.columns]
    missing = [name for name in REQUIRED_EPOCH_COLUMNS if name not in raw.columns]
    if missing:
        raise ScoreError(f"{path}: missing column(s) {', '.join(missing)}")
    if "epoch" in raw.columns:
        # A header repeated mid-file (file re-opened by hand or by a resume) is not damage.
        raw = raw[raw["epoch"].fillna("").str.strip() != "epoch"]

    problems = []
    if bad_lines:
        problems.append(f"{len(bad_lines)} line(s) with too many fields")
    table = pd.DataFrame(
        {
            name: pd.to_numeric(raw[name], errors="coerce").astype(float)
            if name in raw.columns else np.nan
            for name in EPOCH_COLUMNS
        },
        index=raw.index,
    ).replace([np.inf, -np.inf], np.nan)
    if "epoch" not in raw.columns:
        problems.append("no epoch column (row order used)")
        table["epoch"] = np.arange(len(table), dtype=float)

    # An evaluation cannot end at or before the clock starts: such a time is damage.
    unusable_time = table["elapsed_s"].isna() | (table["elapsed_s"] <= 0)
    if unusable_time.any():
        problems.append(f"{int(unusable_time.sum())} row(s) with missing, zero or negative "
                        "elapsed_s")
    table = table[~unusable_time]
    _blank_out_of_range(table, "val_top1", 0, 100, problems)
    _blank_out_of_range(table, "data_wait_frac", 0, 1, problems)
    _blank_out_of_range(table, "clips_per_s", 0, math.inf, problems)
    if not table["elapsed_s"].is_monotonic_increasing:
        problems.append("rows out of time order (sorted by elapsed_s)")
        table = table.sort_values("elapsed_s", kind="stable")
    if problems:
        warnings.append(f"{path}: {'; '.join(problems)}; those values were ignored")
    return table.reset_index(drop=True)


def _blank_out_of_range(
    table: pd.DataFrame, column: str, low: float, high: float, problems: list[str]
) -> None:
    values = table[column]
    outside = values.notna() & ((values < low) | (values > high))
    unreadable = values.isna()
    if column == "val_top1" and unreadable.any():
        problems.append(f"{int(unreadable.sum())} row(s) without a numeric val_top1")
    if outside.any():
        problems.append(f"{int(outside.sum())} {column} value(s) outside [{low}, {high}]")
        table.loc[outside, column] = np.nan


def _compliance_issues(info: dict, system: dict) -> list[str]:
    issues = []
    changed = info.get("changed_keys", [])
    if not isinstance(changed, list):
        issues.append("changed_keys unreadable")
    elif changed:
        issues.append("changed: " + ", ".join(sorted(str(key) for key in changed)))
    if info.get("git_dirty") is True or system.get("git_dirty") is True:
        issues.append("git dirty")
    compliant = info.get("compliant")
    if compliant is not True and not issues:
        issues.append("marked non-compliant" if compliant is False else "compliance not recorded")
    return issues


def _check_recorded_time(run: Run, info: dict, warnings: list[str]) -> None:
    """The trainer also records t_target_s; a disagreement points at a damaged epochs.csv."""
    recorded = info.get("t_target_s")
    if not _is_number(recorded) or (run.t_bench_s is None and info.get("reached") is not True):
        return
    if run.t_bench_s is None or abs(run.t_bench_s - recorded) > 1.0:
        found = "never" if run.t_bench_s is None else f"{run.t_bench_s:.1f} s"
        warnings.append(
            f"{run.path / 'run.json'}: t_target_s {recorded:.1f} s but epochs.csv reaches the "
            f"target {found}; epochs.csv is used"
        )


def _read_json_object(path: Path, required: bool) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as error:
        if not required:
            return {}
        raise ScoreError(f"{path}: missing") from error
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ScoreError(f"{path}: not valid JSON ({error})") from error
    except RecursionError as error:  # "[[[[..." thousands deep
        raise ScoreError(f"{path}: not valid JSON (nested too deeply)") from error
    if not isinstance(data, dict):
        raise ScoreError(f"{path}: expected a JSON object, found {type(data).__name__}")
    return data


def _read_system(path: Path, warnings: list[str]) -> dict:
    """system.json is only a fallback (machine label, git_dirty): damage is a warning."""
    try:
        return _read_json_object(path, required=False)
    except ScoreError as error:
        warnings.append(f"{error}; ignored")
        return {}


def _is_number(value: object) -> bool:
    if not isinstance(value, int | float) or isinstance(value, bool):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # an integer beyond any float (JSON allows any number of digits)
        return False


def _number(info: dict, key: str, path: Path) -> float:
    value = info.get(key)
    if not _is_number(value):
        raise ScoreError(f"{path}: '{key}' missing or not a number ({value!r})")
    return float(value)
