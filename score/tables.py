"""Tables of runs, per-model results and benchmark scores: terminal text, Markdown and CSV."""

import math
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from score.files import atomic_output, write_text_atomic
from score.load import COMPLIANT, Run
from score.reference import Reference
from score.stats import BenchmarkResult, ModelResult

FORMULA = "score = t_ref / t_bench x n_gpu_ref / n_gpu_bench (above 1: faster per GPU)"
CSV_COLUMNS = (
    "row", "compliance", "machine", "gpus", "config", "run_id", "epochs", "runs", "reached",
    "not_reached", "in_progress", "method", "t_bench_s", "t_min_s", "t_max_s", "cv", "t_ref_s",
    "gpus_ref", "score", "score_geomean", "notes",
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


def _run_count(result: ModelResult) -> str:
    counted = result.count("reached") + result.count("not reached")
    text = f"{result.count('reached')}/{counted} reached"
    running = result.count("in progress/incomplete")
    return text + (f" +{running} running" if running else "")


def run_table(runs: list[Run]) -> Table:
    rows = []
    for run in sorted(runs, key=lambda r: (r.compliance_issues != [], r.machine, r.config,
                                           r.run_id)):
        best = run.epochs["val_top1"].max() if len(run.epochs) else None
        rows.append([
            run.config, run.machine, str(run.gpus), run.run_id, str(len(run.epochs)),
            f"{_fmt(best, 2)} / {run.target_top1:g}", _fmt(run.t_bench_s),
            ", ".join(run.labels),
        ])
    headers = ["config", "machine", "gpus", "run", "epochs", "best / target top-1",
               "t_bench (s)", "labels"]
    return Table("Runs", headers, rows, {2, 4, 6})


NON_COMPLIANT_TITLE = "NON-COMPLIANT runs (changed workload or dirty code; not comparable)"


def model_table(results: list[ModelResult], compliant: bool) -> Table:
    rows = [
        ([] if compliant else [r.compliance])
        + [
            r.config, r.machine, str(r.gpus), _run_count(r), r.method, _fmt(r.t_bench_s),
            _fmt(r.t_min_s), _fmt(r.t_max_s), _fmt(None if r.cv is None else 100 * r.cv, 1, "%"),
            _fmt(r.t_ref_s, 2), "-" if r.gpus_ref is None else str(r.gpus_ref),
            _fmt(r.score, 3), "; ".join(r.notes),
        ]
        for r in results
    ]
    headers = ["config", "machine", "gpus", "runs", "method", "t_bench (s)", "min", "max", "CV",
               "t_ref (s)", "gpus_ref", "score", "notes"]
    numeric = {2, 5, 6, 7, 8, 9, 10, 11}
    title = f"Per-model scores: {FORMULA}"
    if not compliant:
        headers, numeric = ["class", *headers], {i + 1 for i in numeric}
        title = f"Per-model scores, {NON_COMPLIANT_TITLE}"
    return Table(title, headers, rows, numeric)


def benchmark_table(rows: list[BenchmarkResult], models: list[str], compliant: bool) -> Table:
    body = [
        [row.machine, str(row.gpus)]
        + [_fmt(row.scores[m], 3) for m in models]
        + [_fmt(row.mean, 3), _fmt(row.geomean, 3), row.note]
        for row in rows
    ]
    headers = ["machine", "gpus", *models, "benchmark score (mean)", "geometric mean", "notes"]
    numeric = set(range(1, 4 + len(models)))
    title = "Benchmark score: arithmetic mean of the per-model scores (geometric mean beside it)"
    if not compliant:
        title = f"Benchmark score, {NON_COMPLIANT_TITLE}"
    return Table(title, headers, body, numeric)


def score_tables(runs: list[Run], results: list[ModelResult],
                 benchmarks: list[BenchmarkResult], models: list[str]) -> list[Table]:
    """Runs, then compliant scores, then (only if there are any) non-compliant ones apart."""
    tables = [run_table(runs)]
    for compliant in (True, False):
        chosen = [r for r in results if (r.compliance == COMPLIANT) == compliant]
        rows = [b for b in benchmarks if (b.compliance == COMPLIANT) == compliant]
        if compliant or chosen:
            tables.append(model_table(chosen, compliant))
            if len(models) >= 2:
                tables.append(benchmark_table(rows, models, compliant))
            elif compliant:
                title = f"No benchmark score: the reference holds only {', '.join(models)}"
                tables.append(Table(title, [], [], set()))
    return tables


def render_text(table: Table) -> str:
    if not table.headers:
        return f"{table.title}\n"
    if not table.rows:
        return f"{table.title}\n  (none)\n"
    widths = [max(len(h), *(len(row[i]) for row in table.rows))
              for i, h in enumerate(table.headers)]

    def line(cells: list[str]) -> str:
        parts = [cell.rjust(w) if i in table.numeric else cell.ljust(w)
                 for i, (cell, w) in enumerate(zip(cells, widths, strict=True))]
        return "  ".join(parts).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([table.title, line(table.headers), rule, *map(line, table.rows)]) + "\n"


def render_markdown(table: Table) -> str:
    if not table.headers:
        return f"## {table.title}\n"
    if not table.rows:
        return f"## {table.title}\n\n(none)\n"

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"

    align = ["---:" if i in table.numeric else "---" for i in range(len(table.headers))]
    return "\n".join([f"## {table.title}", "", line(table.headers), line(align),
                      *map(line, table.rows)]) + "\n"


def reference_line(reference: Reference) -> str:
    times = ", ".join(f"{c} {t:.2f} s on {reference.gpus[c]} GPU(s)"
                      for c, t in reference.t_ref_s.items())
    text = f"Reference: {reference.machine} ({reference.source}): {times}."
    return text + (f"\n{reference.description}" if reference.description else "")


def write_markdown(path: Path, reference: Reference, tables: list[Table],
                   warnings: list[str], plots: list[str]) -> None:
    parts = ["# Benchmark score", "", reference_line(reference), ""]
    parts += [render_markdown(table) for table in tables]
    if warnings:
        parts += ["## Warnings", "", *(f"- {w}" for w in warnings), ""]
    parts += [f"![{Path(name).stem}]({name})\n" for name in plots]
    write_text_atomic(path, "\n".join(parts))


def write_csv(path: Path, runs: list[Run], results: list[ModelResult],
              benchmarks: list[BenchmarkResult], models: list[str]) -> None:
    """One tidy CSV: `row` says whether a line is a run, a per-model result or a benchmark."""
    records = [
        {"row": "run", "compliance": run.compliance, "machine": run.machine, "gpus": run.gpus,
         "config": run.config, "run_id": run.run_id, "epochs": len(run.epochs),
         "t_bench_s": run.t_bench_s, "notes": "; ".join(run.labels)}
        for run in runs
    ]
    records += [
        {"row": "model", "compliance": r.compliance, "machine": r.machine, "gpus": r.gpus,
         "config": r.config, "runs": len(r.runs), "reached": r.count("reached"),
         "not_reached": r.count("not reached"), "in_progress": r.count("in progress/incomplete"),
         "method": r.method, "t_bench_s": r.t_bench_s, "t_min_s": r.t_min_s,
         "t_max_s": r.t_max_s, "cv": r.cv, "t_ref_s": r.t_ref_s, "gpus_ref": r.gpus_ref,
         "score": r.score, "notes": "; ".join(r.notes)}
        for r in results
    ]
    records += [
        {"row": "benchmark", "compliance": b.compliance, "machine": b.machine, "gpus": b.gpus,
         "config": "+".join(models), "score": b.mean, "score_geomean": b.geomean,
         "notes": b.note}
        for b in benchmarks
    ]
    frame = pd.DataFrame.from_records(records, columns=list(CSV_COLUMNS))
    with atomic_output(path) as temporary:
        frame.to_csv(temporary, index=False, float_format="%.10g")
