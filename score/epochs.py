"""Read a run's epochs.csv into clean columns, and find its t_bench.

Protocol 2 files have an ``eval`` column: only rows with ``eval == "scheduled"`` can reach the
target, rows of extra evaluations are curves only, and rows without an evaluation have empty
val_* cells (normal, not damage). Protocol 1 files (no ``eval`` column) evaluated after every
epoch, so every row with a val_top1 counts, as it did then; such runs are labelled
non-compliant elsewhere (score/load.py).
"""

from __future__ import annotations

import io
import math

import numpy as np
import pandas as pd

from formats.results import EPOCH_COLUMNS, EVAL_EXTRA, EVAL_NONE, EVAL_SCHEDULED
from score import ScoreError
from score.readers import MAX_CSV_BYTES, read_regular, safe_text, shown

REQUIRED_EPOCH_COLUMNS = ("elapsed_s", "val_top1")
NUMERIC_COLUMNS = tuple(name for name in EPOCH_COLUMNS if name != "eval")
EVAL_VALUES = (EVAL_SCHEDULED, EVAL_EXTRA, EVAL_NONE)


def read_epochs(path, warnings: list[str]) -> tuple[pd.DataFrame, bool]:
    """(table, has_eval): float columns NUMERIC_COLUMNS plus the string column ``eval``,
    sorted by elapsed_s; `has_eval` says whether the file had an ``eval`` column. Damaged
    rows and values are dropped or blanked with one warning naming the file."""
    data = read_regular(path, MAX_CSV_BYTES)
    bad_lines: list[list[str]] = []
    try:
        raw = pd.read_csv(
            io.BytesIO(data), dtype=str, engine="python", skipinitialspace=True,
            keep_default_na=False, on_bad_lines=lambda line: bad_lines.append(line),
        )
    except pd.errors.EmptyDataError as error:
        raise ScoreError(f"{shown(path)}: empty file (no header)") from error
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError, OSError) as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ScoreError(f"{shown(path)}: not a readable CSV ({safe_text(reason, 120)})") \
            from error

    raw.columns = [str(name).strip() for name in raw.columns]
    missing = [name for name in REQUIRED_EPOCH_COLUMNS if name not in raw.columns]
    if missing:
        raise ScoreError(f"{shown(path)}: missing column(s) {', '.join(missing)}")
    raw = raw.fillna("").astype(str).apply(lambda column: column.str.strip())
    if "epoch" in raw.columns:
        # A header repeated mid-file (file re-opened by hand or by a resume) is not damage.
        raw = raw[raw["epoch"] != "epoch"]

    problems = []
    if bad_lines:
        problems.append(f"{len(bad_lines)} line(s) with too many fields")
    table = pd.DataFrame(
        {
            name: pd.to_numeric(raw[name], errors="coerce").astype(float)
            if name in raw.columns else np.nan
            for name in NUMERIC_COLUMNS
        },
        index=raw.index,
    ).replace([np.inf, -np.inf], np.nan)
    has_eval = "eval" in raw.columns
    table["eval"] = raw["eval"] if has_eval else EVAL_NONE
    if "epoch" not in raw.columns:
        problems.append("no epoch column (row order used)")
        table["epoch"] = np.arange(len(table), dtype=float)

    # An evaluation cannot end at or before the clock starts: such a time is damage.
    unusable_time = table["elapsed_s"].isna() | (table["elapsed_s"] <= 0)
    if unusable_time.any():
        problems.append(f"{int(unusable_time.sum())} row(s) with missing, zero or negative "
                        "elapsed_s")
    keep = ~unusable_time
    table, raw = table[keep], raw[keep]
    unknown = ~table["eval"].isin(EVAL_VALUES)
    if unknown.any():
        problems.append(f"{int(unknown.sum())} row(s) with an eval value other than "
                        f"{EVAL_SCHEDULED}, {EVAL_EXTRA} or empty (not counted as evaluations)")
        table.loc[unknown, "eval"] = EVAL_NONE
    # An empty val_top1 is a row without evaluation; text in it is damage.
    not_a_number = table["val_top1"].isna() & (raw["val_top1"] != "")
    if not_a_number.any():
        problems.append(f"{int(not_a_number.sum())} val_top1 value(s) not a number")
    _blank_out_of_range(table, "val_top1", 0, 100, problems)
    _blank_out_of_range(table, "data_wait_frac", 0, 1, problems)
    _blank_out_of_range(table, "clips_per_s", 0, math.inf, problems)
    unscored = (table["eval"] == EVAL_SCHEDULED) & table["val_top1"].isna()
    if unscored.any():
        problems.append(f"{int(unscored.sum())} scheduled evaluation(s) without a usable "
                        "val_top1")
    if not table["elapsed_s"].is_monotonic_increasing:
        problems.append("rows out of time order (sorted by elapsed_s)")
        table = table.sort_values("elapsed_s", kind="stable")
    if problems:
        warnings.append(f"{shown(path)}: {'; '.join(problems)}; those values were ignored")
    return table.reset_index(drop=True), has_eval


def _blank_out_of_range(
    table: pd.DataFrame, column: str, low: float, high: float, problems: list[str]
) -> None:
    values = table[column]
    outside = values.notna() & ((values < low) | (values > high))
    if outside.any():
        problems.append(f"{int(outside.sum())} {column} value(s) outside [{low}, {high}]")
        table.loc[outside, column] = np.nan


def counting_rows(epochs: pd.DataFrame, has_eval: bool) -> pd.DataFrame:
    """The rows whose evaluation can reach the target: scheduled ones (protocol 1: all)."""
    rows = epochs[epochs["eval"] == EVAL_SCHEDULED] if has_eval else epochs
    return rows.dropna(subset=["val_top1"])


def first_crossing(epochs: pd.DataFrame, target_top1: float,
                   has_eval: bool = True) -> pd.Series | None:
    """The first counting row with val_top1 >= target (not the best one), or None."""
    rows = counting_rows(epochs, has_eval)
    hits = rows[rows["val_top1"] >= target_top1]
    return hits.iloc[0] if len(hits) else None
