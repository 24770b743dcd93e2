"""Does a run folder agree with itself? run.json is a summary of epochs.csv under the run's own
schedule (its config.yaml); a hand-edited or damaged folder where they disagree is labelled,
never scored clean. Only protocol-2 folders are checked (older ones are labelled already).

Checked: every epoch has exactly one row (none missing, none repeated); run.json's
``epochs_done`` equal to the rows (a run killed between its row and its run.json may have one
row more); ``t_target_s`` equal to the first scheduled evaluation at the target in epochs.csv;
the rows marked "scheduled" exactly the epochs that config.yaml's ``epochs`` and ``eval_period``
schedule (up to the last row), no row past its last epoch, and run.json's ``eval_epochs`` that
same schedule. An epoch cell that is not a whole number from 0 to MAX_EPOCHS - 1 is labelled
too (and left out of the other checks, which stay bounded in time and memory).
"""

from __future__ import annotations

from collections import Counter

import pandas as pd

from formats.results import EVAL_SCHEDULED, scheduled_epochs
from score.record import is_number, whole_number

MAX_EPOCHS = 100_000  # more is a damaged file, not a schedule or a row to expand
T_TARGET_TOLERANCE_S = 0.002  # both are written to the millisecond


def _listed(values: list[int]) -> str:
    shown = ", ".join(str(v) for v in values[:5])
    return shown + (f" and {len(values) - 5} more" if len(values) > 5 else "")


def epoch_rows(epochs: pd.DataFrame) -> tuple[list[tuple[int, str]], int]:
    """(epoch, eval) of each row whose epoch is a whole number in [0, MAX_EPOCHS), and how
    many rows have an epoch cell that is not (empty cells are the reader's to report)."""
    rows, odd = [], 0
    for value, kind in zip(epochs["epoch"], epochs["eval"], strict=True):
        epoch = whole_number(value, 0, MAX_EPOCHS - 1)
        if epoch is not None:
            rows.append((epoch, kind))
        elif not pd.isna(value):
            odd += 1
    return rows, odd


def schedule_issues(config: dict | None, info: dict, rows: list[tuple[int, str]]) -> list[str]:
    """The "scheduled" rows and run.json's eval_epochs against config.yaml's own schedule (an
    unreadable config.yaml is labelled by the compliance check already)."""
    if config is None:
        return []
    total = whole_number(config.get("epochs"), 1, MAX_EPOCHS)
    period = whole_number(config.get("eval_period"), 1, MAX_EPOCHS)
    if total is None or period is None:
        return ["config.yaml epochs or eval_period unreadable: the evaluation schedule is "
                "unknown"]
    schedule = scheduled_epochs(total, period)
    on_schedule = set(schedule)
    issues = []
    beyond = sorted({e for e, _ in rows if e >= total})
    if beyond:
        issues.append(f"epochs.csv has epoch(s) {_listed(beyond)} past config.yaml's {total} "
                      "epochs")
    marked = {e for e, kind in rows if kind == EVAL_SCHEDULED}
    off = sorted(marked - on_schedule)
    if off:
        issues.append(f"epochs.csv marks epoch(s) {_listed(off)} scheduled, but config.yaml "
                      f"(epochs {total}, eval_period {period}) schedules "
                      f"{_listed(schedule)} only")
    skipped = sorted({e for e, _ in rows} & on_schedule - marked)
    if skipped:
        issues.append(f"epochs.csv lacks the scheduled evaluation after epoch(s) "
                      f"{_listed(skipped)}")
    recorded = info.get("eval_epochs")
    if recorded is not None and recorded != schedule:
        issues.append(f"run.json eval_epochs {str(recorded)[:60]} but config.yaml schedules "
                      f"{schedule[:20]}")
    return issues


def consistency_issues(info: dict, epochs: pd.DataFrame, t_bench_s: float | None,
                       config: dict | None) -> list[str]:
    """One line per disagreement between run.json, epochs.csv and the run's schedule
    (config.yaml as a mapping; None when it cannot be read)."""
    rows, odd = epoch_rows(epochs)
    issues = [f"epochs.csv has {odd} row(s) whose epoch is not a whole number from 0 to "
              f"{MAX_EPOCHS - 1}"] if odd else []
    issues += schedule_issues(config, info, rows)
    counts = Counter(e for e, _ in rows)
    repeated = sorted(e for e, n in counts.items() if n > 1)
    if repeated:
        issues.append(f"epochs.csv repeats epoch(s) {_listed(repeated)}")
    missing = sorted(set(range(max(counts) + 1)) - set(counts)) if counts else []
    if missing:
        issues.append(f"epochs.csv lacks epoch(s) {_listed(missing)}")
    done = info.get("epochs_done")
    found = len(counts)
    if isinstance(done, int) and not isinstance(done, bool):
        if found != done and not (not info.get("finished") and found == done + 1):
            issues.append(f"run.json says {done} epochs done, epochs.csv has {found}")
    elif done is not None:
        issues.append("run.json epochs_done unreadable")
    recorded_t = info.get("t_target_s")
    if not info.get("finished") and isinstance(done, int) and found == done + 1:
        return issues  # killed between a row and its run.json: the record lags by one epoch
    if recorded_t is not None and not is_number(recorded_t):
        issues.append("run.json t_target_s unreadable")
    elif (recorded_t is None) != (t_bench_s is None) or (
            recorded_t is not None and abs(recorded_t - t_bench_s) > T_TARGET_TOLERANCE_S):
        at = "never" if t_bench_s is None else f"at {t_bench_s:g} s"
        issues.append(f"run.json t_target_s {recorded_t} but epochs.csv reaches the target {at}")
    return issues
