"""Tables of runs, per-model results and benchmark scores with every column and the full text,
for score.md and score.csv (the terminal's compact version is score/report.py)."""

import math
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from formats.files import atomic_path, atomic_write
from formats.results import (
    STATUS_ABANDONED,
    STATUS_DIVERGED,
    STATUS_IN_PROGRESS,
    STATUS_NOT_CONVERGED,
    STATUS_REACHED,
)
from score.load import COMPLIANT, Run
from score.readers import safe_text
from score.reference import Reference
from score.stats import BenchmarkResult, ModelResult

FORMULA = "score = t_ref / t_bench x n_gpu_ref / n_gpu_bench (above 1: faster per GPU)"
CSV_COLUMNS = (
    "row", "compliance", "machine", "hardware", "device", "gpus", "nodes", "config", "run_id",
    "status", "protocol", "epochs", "runs", "reached", "missed", "not_converged", "stopped",
    "abandoned", "in_progress", "method", "t_bench_s", "t_min_s", "t_max_s", "cv", "t_ref_s",
    "gpus_ref", "reference", "score", "score_geomean", "store", "fingerprint", "path", "notes",
)


@dataclass
class Table:
    title: str
    headers: list[str]
    rows: list[list[str]]
    # Columns holding numbers are right-aligned in the terminal.
    numeric: set[int]


def _fmt(value: float | None, digits: int = 1, suffix: str = "") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.{digits}f}{suffix}"


def run_count(result: ModelResult) -> str:
    """"3/5 reached (P 0.23-0.88)": reached of finished runs, with the 95% Wilson interval."""
    reached = result.count(STATUS_REACHED)
    text = f"{reached}/{reached + result.missed} reached"
    interval = result.reached_interval
    if interval is not None:  # 95% Wilson interval of P(reach)
        text += f" (P {interval[0]:.2f}-{interval[1]:.2f})"
    running = result.count(STATUS_IN_PROGRESS)
    return text + (f" +{running} running" if running else "")


def _store(run: Run) -> str:
    return run.store.short + run.store.format_text if run.store else "not recorded"


def run_table(runs: list[Run]) -> Table:
    rows = []
    for run in sorted(runs, key=lambda r: (r.compliance_issues != [], r.machine, r.config,
                                           r.run_id)):
        best = run.epochs["val_top1"].max() if len(run.epochs) else None
        rows.append([
            run.config, run.machine, run.hardware, run.run_id, str(len(run.epochs)),
            f"{_fmt(best, 2)} / {run.target_top1:g}", _fmt(run.t_bench_s), _store(run),
            ", ".join(run.labels),
        ])
    headers = ["config", "machine", "hardware", "run", "epochs", "best / target top-1",
               "t_bench (s)", "store", "labels"]
    return Table("Runs (best: any evaluation; t_bench: the first scheduled one at the target)",
                 headers, rows, {4, 6})


NON_COMPLIANT_TITLE = ("NON-COMPLIANT runs (older protocol, changed workload or store, or dirty "
                       "code; not comparable)")


def model_table(results: list[ModelResult], compliant: bool) -> Table:
    rows = [
        ([] if compliant else [r.compliance])
        + [
            r.config, r.machine, r.hardware, run_count(r), r.method, _fmt(r.t_bench_s),
            _fmt(r.t_min_s), _fmt(r.t_max_s), _fmt(None if r.cv is None else 100 * r.cv, 1, "%"),
            _fmt(r.t_ref_s, 2), "-" if r.gpus_ref is None else str(r.gpus_ref),
            _fmt(r.score, 3), r.store, "; ".join(r.notes),
        ]
        for r in results
    ]
    headers = ["config", "machine", "hardware", "runs", "method", "t_bench (s)", "min", "max",
               "CV", "t_ref (s)", "gpus_ref", "score", "store", "notes"]
    numeric = {5, 6, 7, 8, 9, 10, 11}
    title = f"Per-model scores: {FORMULA}"
    if not compliant:
        headers, numeric = ["class", *headers], {i + 1 for i in numeric}
        title = f"Per-model scores, {NON_COMPLIANT_TITLE}"
    return Table(title, headers, rows, numeric)


def benchmark_table(rows: list[BenchmarkResult], models: list[str], compliant: bool,
                    source: str) -> Table:
    body = [
        [row.machine, row.hardware]
        + [_fmt(row.scores[m], 3) for m in models]
        + [_fmt(row.mean, 3), _fmt(row.geomean, 3), row.note]
        for row in rows
    ]
    headers = ["machine", "hardware", *models, "benchmark score (mean)", "geometric mean",
               "notes"]
    numeric = set(range(2, 4 + len(models)))
    title = (f"Benchmark score against {source}: arithmetic mean of the per-model scores "
             "(geometric mean beside it)")
    if not compliant:
        title = f"Benchmark score against {source}, {NON_COMPLIANT_TITLE}"
    return Table(title, headers, body, numeric)


def score_tables(runs: list[Run], results: list[ModelResult],
                 benchmarks: list[tuple[Reference, list[BenchmarkResult]]]) -> list[Table]:
    """Runs, then compliant scores, then (only if there are any) non-compliant ones apart;
    one benchmark table per reference."""
    tables = [run_table(runs)]
    for compliant in (True, False):
        chosen = [r for r in results if (r.compliance == COMPLIANT) == compliant]
        if not (compliant or chosen):
            continue
        tables.append(model_table(chosen, compliant))
        for reference, rows in benchmarks:
            models = list(reference.t_ref_s)
            if len(models) >= 2:
                mine = [b for b in rows if (b.compliance == COMPLIANT) == compliant]
                tables.append(benchmark_table(mine, models, compliant, reference.source))
            elif compliant:
                title = f"No benchmark score: the reference holds only {', '.join(models)}"
                tables.append(Table(title, [], [], set()))
    return tables


def render_markdown(table: Table) -> str:
    if not table.headers:
        return f"## {table.title}\n"
    if not table.rows:
        return f"## {table.title}\n\n(none)\n"

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(safe_text(cell).replace("|", "\\|") for cell in cells) + " |"

    align = ["---:" if i in table.numeric else "---" for i in range(len(table.headers))]
    return "\n".join([f"## {table.title}", "", line(table.headers), line(align),
                      *map(line, table.rows)]) + "\n"


def reference_line(reference: Reference) -> str:
    times = ", ".join(f"{c} {t:.2f} s on {reference.gpus[c]} GPU(s)"
                      for c, t in reference.t_ref_s.items())
    text = safe_text(f"Reference: {reference.machine} ({reference.source}): {times}.")
    return text + (f"\n{safe_text(reference.description)}" if reference.description else "")


def write_markdown(path: Path, summary: str, references: list[Reference], tables: list[Table],
                   warnings: list[str], plots: list[str]) -> None:
    parts = ["# Benchmark score", "", safe_text(summary) + ".", ""]
    for reference in references:
        parts += [reference_line(reference), ""]
    parts += [render_markdown(table) for table in tables]
    if warnings:
        parts += ["## Warnings", "", *(f"- {safe_text(w)}" for w in warnings), ""]
    parts += [f"![{Path(name).stem}]({name})\n" for name in plots]
    atomic_write(path, "\n".join(parts))


def write_csv(path: Path, runs: list[Run], results: list[ModelResult],
              benchmarks: list[BenchmarkResult]) -> None:
    """One tidy CSV: `row` says whether a line is a run, a per-model result or a benchmark."""
    records = [
        {"row": "run", "compliance": run.compliance, "machine": run.machine,
         "hardware": run.hardware, "device": run.device, "gpus": run.gpus, "nodes": run.nodes,
         "config": run.config, "run_id": run.run_id, "status": run.status,
         "protocol": run.protocol, "epochs": len(run.epochs), "t_bench_s": run.t_bench_s,
         "store": run.store.summary + run.store.format_text if run.store else "not recorded",
         "fingerprint": run.store.fingerprint if run.store else "",
         "path": str(run.path), "notes": "; ".join(run.labels)}
        for run in runs
    ]
    records += [
        {"row": "model", "compliance": r.compliance, "machine": r.machine,
         "hardware": r.hardware, "device": r.runs[0].device, "gpus": r.gpus,
         "nodes": r.runs[0].nodes, "config": r.config, "runs": len(r.runs),
         "reached": r.count(STATUS_REACHED), "missed": r.missed,
         "not_converged": r.count(STATUS_NOT_CONVERGED), "stopped": r.count(STATUS_DIVERGED),
         "abandoned": r.count(STATUS_ABANDONED), "in_progress": r.count(STATUS_IN_PROGRESS),
         "method": r.method, "t_bench_s": r.t_bench_s, "t_min_s": r.t_min_s,
         "t_max_s": r.t_max_s, "cv": r.cv, "t_ref_s": r.t_ref_s, "gpus_ref": r.gpus_ref,
         "reference": r.reference, "score": r.score, "store": r.store, "notes": "; ".join(r.notes)}
        for r in results
    ]
    records += [
        {"row": "benchmark", "compliance": b.compliance, "machine": b.machine,
         "hardware": b.hardware, "config": "+".join(b.scores), "reference": b.reference,
         "score": b.mean,
         "score_geomean": b.geomean, "notes": b.note}
        for b in benchmarks
    ]
    # Every text cell is made writable: a lone surrogate would stop the UTF-8 encoder.
    records = [{key: safe_text(value) if isinstance(value, str) else value
                for key, value in record.items()} for record in records]
    frame = pd.DataFrame.from_records(records, columns=list(CSV_COLUMNS))
    with atomic_path(path) as temporary:
        frame.to_csv(temporary, index=False, float_format="%.10g")
