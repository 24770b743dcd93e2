"""Energy to the target beside time to the target: what the GPUs used to reach it.

Per run, from epochs.csv: the energy to the target is the sum of ``energy_j`` (the GPUs'
joules over each epoch's timed span, all nodes; after a resume the lost work's included)
through the first scheduled evaluation at the target, the row that gives t_bench. Clips per
joule: training clips (``clips_per_s`` x ``train_s``) over the GPU energy of the same epochs.
Per group (a config on one machine, as t_bench is grouped): the reached runs' energies
aggregated the way t_bench is (score/stats.py: single run, median or olympic mean).

"not measured": a run folder without energy columns (results format 2 and older), a machine
without NVML, or a run where any epoch up to the target lacks its energy; never an estimate.
CPU package energy (RAPL) is shown apart, where the run had it. The reference holds no energy
figure today (configs/reference.yaml has times only), so no energy ratio can be given.
"""

from __future__ import annotations

import math
import statistics

import pandas as pd

from formats.results import STATUS_REACHED
from score.load import COMPLIANT, Run
from score.stats import ModelResult, aggregate
from score.tables import Table

NOT_MEASURED = "not measured"


def _sum(rows: pd.DataFrame, column: str) -> float | None:
    if column not in rows or not len(rows) or rows[column].isna().any():
        return None
    return float(rows[column].sum())


def _through_target(run: Run) -> pd.DataFrame | None:
    if run.t_bench_s is None:
        return None
    return run.epochs[run.epochs["elapsed_s"] <= run.t_bench_s]


def energy_to_target_j(run: Run, column: str = "energy_j") -> float | None:
    """The run's GPU (``cpu_energy_j``: CPU package) energy to the target; None if the run
    did not reach it or it was not measured."""
    rows = _through_target(run)
    return None if rows is None else _sum(rows, column)


def total_j(run: Run, column: str = "energy_j") -> float | None:
    return _sum(run.epochs, column)


def clips_per_joule(run: Run) -> float | None:
    """Training clips per GPU joule over the epochs to the target (all, if not reached)."""
    rows = _through_target(run)
    rows = run.epochs if rows is None else rows
    joules = _sum(rows, "energy_j")
    if not joules:
        return None
    clips = (rows["clips_per_s"] * rows["train_s"]).sum()
    return None if math.isnan(clips) else float(clips) / joules


def _kj(joules: float | None) -> str:
    return NOT_MEASURED if joules is None else f"{joules / 1000:.2f}"


def _how(run: Run) -> str:
    method = run.energy.get("method")
    if method is None and total_j(run) is None:
        return NOT_MEASURED
    return method or "?"


def run_energy_table(runs: list[Run]) -> Table:
    rows = []
    for run in sorted(runs, key=lambda r: (r.compliance_issues != [], r.machine, r.config,
                                           r.run_id)):
        lost = run.energy.get("lost_j")
        per_joule = clips_per_joule(run)
        cpu = total_j(run, "cpu_energy_j")
        rows.append([
            run.config, run.run_id, _how(run),
            _kj(energy_to_target_j(run)) if run.t_bench_s is not None else "-",
            _kj(total_j(run)), "-" if not lost else f"{lost / 1000:.2f}",
            "-" if per_joule is None else f"{per_joule:.3f}",
            _kj(cpu),
        ])
    headers = ["config", "run", "read by", "to target (kJ)", "all epochs (kJ)", "lost (kJ)",
               "clips/J", "RAPL packages (kJ)"]
    return Table("Energy per run (machines: the runs table): the GPUs' board energy over the "
                 "run clock's timed spans (NVML; RAPL: the processors' packages, apart), not the "
                 "wall socket", headers, rows, {3, 4, 5, 6})


def group_energy_table(results: list[ModelResult]) -> Table:
    rows = []
    for r in results:
        reached = [run for run in r.runs if run.status == STATUS_REACHED]
        energies = [energy_to_target_j(run) for run in reached]
        per_joule = [c for c in map(clips_per_joule, r.runs) if c is not None]
        if any(e is None for e in energies) or not r.runs or all(
                total_j(run) is None for run in r.runs):
            method, value, low, high = "-", None, None, None
            note = NOT_MEASURED
        else:
            summary = aggregate([e for e in energies if e is not None], r.missed)
            method, value, note = summary.method, summary.t_bench_s, summary.note
            low, high = (min(energies), max(energies)) if energies else (None, None)
        rows.append([
            r.config, f"{r.machine}, {r.hardware}",
            "" if r.compliance == COMPLIANT else "non-compliant", method,
            _kj(value) if note != NOT_MEASURED else NOT_MEASURED,
            "-" if low is None else f"{low / 1000:.2f}", "-" if high is None else
            f"{high / 1000:.2f}",
            "-" if not per_joule else f"{statistics.median_low(per_joule):.3f}",
            "-", note or "",
        ])
    headers = ["config", "machine", "class", "method", "to target (kJ)", "min", "max",
               "clips/J (median run)", "energy ratio", "notes"]
    title = ("Energy to target per group (aggregated as t_bench is); energy ratio: "
             f"{REFERENCE_ENERGY_NOTE}")
    return Table(title, headers, rows, {4, 5, 6, 7})


def measured(runs: list[Run]) -> bool:
    """Whether any run recorded energy (else the terminal says so in one line)."""
    return any(total_j(run) is not None or total_j(run, "cpu_energy_j") is not None
               for run in runs)


NOT_MEASURED_LINE = ("Energy to the target: not measured (no run recorded any: no NVML or RAPL "
                     "on its machine, or an older run)")


REFERENCE_ENERGY_NOTE = "none: no reference records an energy to the target"


def energy_tables(runs: list[Run], results: list[ModelResult]) -> list[Table]:
    """The energy tables the scorer prints after the time tables."""
    return [run_energy_table(runs), group_energy_table(results)]
