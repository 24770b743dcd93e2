"""From runs to per-model results (aggregate t_bench, spread, score) and benchmark scores.

Aggregation rules (documented in the README, "Reading the results"):
- A group is the runs of one config on one system (its name, SYSTEM=, and its machine: one
  name seen on two machines is two groups, flagged) with one hardware (device, process and
  node count) and one compliance class. Runs in progress are shown but not counted.
- A run that did not reach the target is a missed run, whatever the reason: finished below
  the target (not converged), stopped on a NaN/infinite loss, or abandoned (its heartbeat
  stopped long ago). A group is never scored on its survivors only.
- 5 or more counted runs: olympic mean (drop the fastest and the slowest, average the rest).
  One missed run counts as the slowest and is dropped; with more than one, the group has no
  score.
- 2 to 4 counted runs: median, with missed runs counted as infinitely slow (the same rule as
  above). The group is flagged when any run missed the target, and has no score when the
  median itself is one of those runs (half or more of them missed it).
- 1 counted run: that run's t_bench, shown as a single run.
The spread (min, max, coefficient of variation = sample standard deviation / mean) is taken
over the runs that reached the target. A group whose runs read different frame stores (by
fingerprint) is flagged.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field

from formats.results import (
    MISSED_STATUSES,
    STATUS_ABANDONED,
    STATUS_DIVERGED,
    STATUS_IN_PROGRESS,
    STATUS_NOT_CONVERGED,
    STATUS_REACHED,
)
from score.load import COMPLIANT, Run

OLYMPIC_MIN_RUNS = 5


@dataclass
class Aggregate:
    method: str
    t_bench_s: float | None
    note: str = ""


@dataclass
class ModelResult:
    """One group: a config on one machine, hardware and compliance class."""

    config: str
    machine: str
    hardware: str  # Run.hardware: "4 GPUs", "1 CPU process"
    gpus: int  # processes in all, the n_gpu_bench of the score
    compliance: str
    runs: list[Run] = field(repr=False)
    method: str = ""
    t_bench_s: float | None = None
    t_min_s: float | None = None
    t_max_s: float | None = None
    cv: float | None = None
    notes: list[str] = field(default_factory=list)
    reference: str | None = None  # the reference file (or results folder) it is scored against
    t_ref_s: float | None = None
    gpus_ref: int | None = None
    score: float | None = None

    def count(self, *statuses: str) -> int:
        return sum(run.status in statuses for run in self.runs)

    @property
    def missed(self) -> int:
        return self.count(*MISSED_STATUSES)

    @property
    def reached_interval(self) -> tuple[float, float] | None:
        """95% Wilson interval of P(reach the target) over the finished runs."""
        reached = self.count(STATUS_REACHED)
        return wilson_interval(reached, reached + self.missed)

    @property
    def stores(self) -> list[str]:
        """The distinct stores its runs read (summary text), "store not recorded" included."""
        return sorted({run.store.summary if run.store else "store not recorded"
                       for run in self.runs})

    @property
    def issues(self) -> list[str]:
        """Why its runs are not comparable (one compliance class: the same reasons for all)."""
        return self.runs[0].compliance_issues

    @property
    def store(self) -> str:
        stores = self.stores
        if len(stores) == 1:
            return stores[0]
        return f"DIFFERENT STORES: {' | '.join(stores)}"


@dataclass
class BenchmarkResult:
    machine: str
    hardware: str
    compliance: str
    scores: dict[str, float | None]
    mean: float | None = None
    geomean: float | None = None
    note: str = ""
    reference: str = ""  # the reference whose configs form this benchmark
    issues: list[str] = field(default_factory=list)  # of its non-compliant per-model results


def aggregate(converged: list[float], not_converged: int) -> Aggregate:
    """Aggregate t_bench of a group from the times of its converged runs (see module doc)."""
    counted = len(converged) + not_converged
    missed = f"{not_converged} of {counted} runs did not reach the target"
    if counted == 0:
        return Aggregate("-", None, "no finished run yet")
    if counted == 1:
        if converged:
            return Aggregate("single run", converged[0])
        return Aggregate("single run", None, "did not reach the target")
    ordered = sorted(converged) + [math.inf] * not_converged
    if counted >= OLYMPIC_MIN_RUNS:
        if not_converged > 1:
            return Aggregate("olympic mean", None, f"{missed} (at most 1 allowed)")
        note = f"{missed} (counted as slowest, dropped)" if not_converged else ""
        return Aggregate("olympic mean", statistics.fmean(ordered[1:-1]), note)
    median = statistics.median(ordered)
    if math.isinf(median):
        return Aggregate("median", None, f"{missed}: median undefined")
    note = f"{missed} (counted as slowest)" if not_converged else ""
    return Aggregate("median", median, note)


def per_model_score(t_ref_s: float, gpus_ref: int, t_bench_s: float, gpus: int) -> float:
    """t_ref / t_bench x n_gpu_ref / n_gpu_bench: above 1 means faster per GPU than reference."""
    return t_ref_s / t_bench_s * gpus_ref / gpus


def group_models(runs: list[Run]) -> list[ModelResult]:
    """Group runs by (compliance, config, machine, hardware) and aggregate each group."""
    groups: dict[tuple[str, str, str, int, str], list[Run]] = {}
    for run in runs:
        key = (run.compliance, run.config, run.machine, run.gpus, run.hardware)
        groups.setdefault(key, []).append(run)

    def order(key: tuple[str, str, str, int, str]) -> tuple:
        compliance, config, machine, gpus, hardware = key
        return (compliance != COMPLIANT, compliance, machine, gpus, hardware, config)

    results = []
    for key in sorted(groups, key=order):
        compliance, config, machine, gpus, hardware = key
        members = sorted(groups[key], key=lambda run: run.run_id)
        result = ModelResult(config, machine, hardware, gpus, compliance, members)
        # Only reached runs have a t_bench: a missed run of any kind counts as never reaching.
        converged = [run.t_bench_s for run in members if run.status == STATUS_REACHED]
        summary = aggregate(converged, result.missed)
        result.method, result.t_bench_s = summary.method, summary.t_bench_s
        result.notes += [summary.note] if summary.note else []
        if converged:
            result.t_min_s, result.t_max_s = min(converged), max(converged)
        if len(converged) >= 2:
            result.cv = statistics.stdev(converged) / statistics.fmean(converged)
        result.notes += _status_notes(result)
        if len(result.stores) > 1:
            result.notes.append(f"runs read {len(result.stores)} different stores")
        if any(run.resumed for run in members):
            result.notes.append("includes resumed runs")
        spans = [run for run in members
                 if run.attempts.spans_machines or run.attempts.spans_commits]
        if spans:
            result.notes.append(f"{len(spans)} run(s) span machines or commits")
        results.append(result)
    _flag_systems(results)
    return results


def _flag_systems(results: list[ModelResult]) -> None:
    """A system name seen on more than one machine (hardware label) is a mistake or a changed
    machine: its groups stay apart and each says so (GPU and process counts may differ)."""
    places: dict[str, set[str]] = {}
    for result in results:
        places.setdefault(result.runs[0].system, set()).add(result.machine)
    for result in results:
        seen = places[result.runs[0].system]
        if len(seen) > 1:
            result.notes.append(f"system {result.runs[0].system} is named on {len(seen)} "
                                f"machines ({' | '.join(sorted(seen))}): not merged")


def wilson_interval(reached: int, runs: int, z: float = 1.96) -> tuple[float, float] | None:
    """95% Wilson score interval for the probability of reaching the target, from ``reached``
    of ``runs`` (None without runs). The targets are the reference run's own final accuracies,
    so even a faithful machine misses some runs: this says how often."""
    if runs <= 0:
        return None
    p = reached / runs
    centre = (p + z * z / (2 * runs)) / (1 + z * z / runs)
    half = z * math.sqrt(p * (1 - p) / runs + z * z / (4 * runs * runs)) / (1 + z * z / runs)
    return max(0.0, centre - half), min(1.0, centre + half)


def _status_notes(result: ModelResult) -> list[str]:
    """How many runs missed the target, by kind, and how many are still running."""
    kinds = [(STATUS_NOT_CONVERGED, "not converged"), (STATUS_DIVERGED, "stopped on NaN/inf"),
             (STATUS_ABANDONED, "abandoned")]
    missed = [f"{result.count(status)} {name}" for status, name in kinds if result.count(status)]
    notes = [f"missed: {', '.join(missed)}"] if missed else []
    if result.count(STATUS_IN_PROGRESS):
        notes.append(f"{result.count(STATUS_IN_PROGRESS)} run(s) in progress (not counted)")
    return notes


def benchmark_scores(results: list[ModelResult], models: list[str]) -> list[BenchmarkResult]:
    """Benchmark score per machine and hardware: mean of the per-model scores of `models`.

    Compliant and non-compliant results are never mixed into one compliant score; a
    non-compliant benchmark row uses the non-compliant result of a model where there is one
    and the compliant result otherwise.
    """
    if len(models) < 2:
        return []
    rows = []
    places = sorted({(r.machine, r.gpus, r.hardware) for r in results if r.config in models})
    for machine, _, hardware in places:
        here = [r for r in results
                if (r.machine, r.hardware) == (machine, hardware) and r.config in models]
        compliant = {r.config: r for r in here if r.compliance == COMPLIANT}
        if compliant:
            rows.append(_benchmark(machine, hardware, COMPLIANT, compliant, models))
        variants: dict[str, list[ModelResult]] = {}
        for result in here:
            if result.compliance != COMPLIANT:
                variants.setdefault(result.config, []).append(result)
        if not variants:
            continue
        several = sorted(config for config, found in variants.items() if len(found) > 1)
        if several:
            rows.append(BenchmarkResult(
                machine, hardware, "non-compliant", {m: None for m in models},
                note=f"no benchmark score: several non-compliant variants of {', '.join(several)}",
            ))
            continue
        chosen = compliant | {config: found[0] for config, found in variants.items()}
        rows.append(_benchmark(machine, hardware, "non-compliant", chosen, models))
    return rows


def _benchmark(
    machine: str, hardware: str, compliance: str, chosen: dict[str, ModelResult],
    models: list[str],
) -> BenchmarkResult:
    scores = {model: chosen[model].score if model in chosen else None for model in models}
    row = BenchmarkResult(machine, hardware, compliance, scores)
    row.issues = list(dict.fromkeys(issue for result in chosen.values() for issue in result.issues))
    absent = [model for model in models if model not in chosen]
    unscored = [model for model in models if model in chosen and scores[model] is None]
    if absent or unscored:
        reasons = [f"{', '.join(absent)} not measured"] if absent else []
        reasons += [f"{', '.join(unscored)} has no score"] if unscored else []
        row.note = "no benchmark score: " + "; ".join(reasons)
        return row
    values = [scores[model] for model in models]
    row.mean = statistics.fmean(values)
    row.geomean = statistics.geometric_mean(values)
    if compliance != COMPLIANT:
        row.note = "; ".join(f"{m}: {chosen[m].compliance}" for m in models)
    return row
