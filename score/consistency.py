"""Does a run folder agree with itself? run.json is a summary of epochs.csv under the run's own
schedule (its config.yaml); a hand-edited or damaged folder where they disagree is labelled,
never scored clean. Only protocol-2 folders are checked (older ones are labelled already).

Checked: every epoch has exactly one row (none missing, none repeated); run.json's
``epochs_done`` equal to the rows (a run killed between its row and its run.json may have one
row more); ``t_target_s`` equal to the first scheduled evaluation at the target in epochs.csv.
"""

from __future__ import annotations

import math

import pandas as pd

from score.record import is_number

T_TARGET_TOLERANCE_S = 0.002  # both are written to the millisecond


def _listed(values: list[int]) -> str:
    shown = ", ".join(str(v) for v in values[:5])
    return shown + (f" and {len(values) - 5} more" if len(values) > 5 else "")


def consistency_issues(info: dict, epochs: pd.DataFrame, t_bench_s: float | None) -> list[str]:
    """One line per disagreement between run.json, epochs.csv and the run's schedule."""
    issues = []
    numbers = [int(e) for e in epochs["epoch"] if is_number(e) and not math.isnan(e)]
    repeated = sorted({e for e in numbers if numbers.count(e) > 1})
    if repeated:
        issues.append(f"epochs.csv repeats epoch(s) {_listed(repeated)}")
    missing = sorted(set(range(max(numbers) + 1)) - set(numbers)) if numbers else []
    if missing:
        issues.append(f"epochs.csv lacks epoch(s) {_listed(missing)}")
    done = info.get("epochs_done")
    rows = len(set(numbers))
    if isinstance(done, int) and not isinstance(done, bool):
        if rows != done and not (not info.get("finished") and rows == done + 1):
            issues.append(f"run.json says {done} epochs done, epochs.csv has {rows}")
    elif done is not None:
        issues.append("run.json epochs_done unreadable")
    recorded_t = info.get("t_target_s")
    if not info.get("finished") and isinstance(done, int) and rows == done + 1:
        return issues  # killed between a row and its run.json: the record lags by one epoch
    if recorded_t is not None and not is_number(recorded_t):
        issues.append("run.json t_target_s unreadable")
    elif (recorded_t is None) != (t_bench_s is None) or (
            recorded_t is not None and abs(recorded_t - t_bench_s) > T_TARGET_TOLERANCE_S):
        found = "never" if t_bench_s is None else f"at {t_bench_s:g} s"
        issues.append(f"run.json t_target_s {recorded_t} but epochs.csv reaches the target "
                      f"{found}")
    return issues
