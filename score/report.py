"""What `python -m score` prints: a summary line, the references, then compact tables.

Runs and per-model results are listed under one heading per machine and hardware (so no row
repeats them); long reasons (compliance, notes, spans) are numbered notes; the store is its
fingerprint's first 8 characters, with its counts below the runs. score.md and score.csv keep
every column and the full text.
"""

from __future__ import annotations

from pathlib import Path

from formats.results import STATUS_IN_PROGRESS
from score.load import COMPLIANT, Run
from score.reference import Reference
from score.stats import BenchmarkResult, ModelResult
from score.tables import run_count
from score.terminal import Block, Notes, render, wrap

SHORT_STORE = 8  # hex characters of a store fingerprint in the terminal
FORMULA = "score = t_ref / t_bench x n_gpu_ref / n_gpu_bench (above 1: faster per GPU)"
METHOD = "t_bench: the single run, the median of 2-4 runs, the olympic mean of 5 or more"


def _fmt(value: float | None, digits: int = 1, suffix: str = "") -> str:
    return "-" if value is None else f"{value:.{digits}f}{suffix}"


def _place(machine: str, hardware: str) -> str:
    return f"{machine}, {hardware}"


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def summary_line(runs: list[Run], benchmarks: list[BenchmarkResult]) -> str:
    """What was found: runs, models, machines, how many compliant, the benchmark score(s)."""
    configs = {run.config for run in runs}
    machines = {run.machine for run in runs}
    compliant = sum(not run.compliance_issues for run in runs)
    running = sum(run.status == STATUS_IN_PROGRESS for run in runs)
    text = (f"{_plural(len(runs), 'run')} ({compliant} compliant"
            f"{f', {running} in progress' if running else ''}), "
            f"{_plural(len(configs), 'model')}, {_plural(len(machines), 'machine')}")
    scored = [b for b in benchmarks if b.mean is not None]
    chosen = [b for b in scored if b.compliance == COMPLIANT] or scored
    if not chosen:
        text += "; no benchmark score"
    elif len(chosen) == 1:
        row = chosen[0]
        kind = "" if row.compliance == COMPLIANT else "non-compliant, "
        # The file name: the reference lines below give its path.
        text += f"; benchmark score {row.mean:.3f} ({kind}{Path(row.reference).name})"
    else:
        low, high = min(b.mean for b in chosen), max(b.mean for b in chosen)
        kind = "compliant" if chosen[0].compliance == COMPLIANT else "non-compliant"
        text += f"; {len(chosen)} {kind} benchmark scores, {low:.3f} to {high:.3f}"
    return text


def reference_lines(references: list[Reference]) -> list[str]:
    lines = []
    for reference in references:
        gpus = sorted(set(reference.gpus.values()))
        times = ", ".join(f"{c} {t:g} s" for c, t in reference.t_ref_s.items())
        lines += wrap(f"Reference {reference.source} ({reference.machine}, n_gpu_ref "
                      f"{'/'.join(map(str, gpus))}): {times}")
    return lines


def _order(item: Run | ModelResult | BenchmarkResult) -> tuple:
    """Machine, then hardware, then config, compliant first, then run id (where there are)."""
    issues = getattr(item, "compliance_issues", None) or getattr(item, "issues", [])
    return (item.machine, getattr(item, "gpus", 0), item.hardware,
            getattr(item, "config", ""), issues != [], getattr(item, "run_id", ""))


def _by_place(items: list) -> list[tuple[str, list]]:
    """Items under one heading per machine and hardware."""
    places: dict[str, list] = {}
    for item in sorted(items, key=_order):
        places.setdefault(_place(item.machine, item.hardware), []).append(item)
    return list(places.items())


def _run_status(run: Run, notes: Notes) -> str:
    parts = [run.status]
    if run.compliance_issues:
        parts.append(notes.labelled("non-compliant", run.compliance_issues))
    if run.resumed:
        parts.append(f"resumed (lost {run.lost_s:.0f} s)")
    spans = []
    if run.attempts.spans_machines:
        spans.append(f"spans machines: {' / '.join(run.attempts.machines) or '?'}")
    if run.attempts.spans_commits:
        spans.append(f"spans commits: {' / '.join(run.attempts.commits) or '?'}")
    if spans:
        parts.append(notes.labelled("spans", spans))
    return ", ".join(parts)


def _store(run: Run) -> str:
    if run.store is None:
        return "-"
    return run.store.short[:SHORT_STORE] if run.store.fingerprint else "no fingerprint"


def run_block(runs: list[Run], notes: Notes) -> Block:
    sections = []
    for place, members in _by_place(runs):
        rows = []
        for run in members:
            best = run.epochs["val_top1"].max() if len(run.epochs) else None
            best = None if best is not None and best != best else best  # NaN: no evaluation
            rows.append([run.config, run.run_id, str(len(run.epochs)),
                         f"{_fmt(best, 2)} / {run.target_top1:g}", _fmt(run.t_bench_s),
                         _store(run), _run_status(run, notes)])
        sections.append((place, rows))
    stores = {}
    for run in runs:
        if run.store is not None and run.store.fingerprint:
            stores.setdefault(_store(run), run.store)
    store_lines = [line for short, store in stores.items() for line in wrap(
        f"store {short}: {store.videos} videos, {store.clips} clips (train+val), "
        f"{store.failed} failed")]
    headers = ["config", "run", "epochs", "top-1 / target", "t_bench (s)", "store", "status"]
    return Block("Runs (top-1: the best evaluation; t_bench: the first scheduled evaluation at "
                 "the target)", headers, {2, 3, 4}, sections, notes.new_lines() + store_lines,
                 labels={6})


def _range(result: ModelResult) -> str:
    if result.t_min_s is None or result.t_min_s == result.t_max_s:
        return "-"
    return f"{result.t_min_s:.0f}-{result.t_max_s:.0f}"


def model_block(results: list[ModelResult], compliant: bool, notes: Notes) -> Block:
    sections = []
    for place, members in _by_place(results):
        rows = []
        for r in members:
            cv = None if r.cv is None else 100 * r.cv
            row = [r.config, run_count(r), _fmt(r.t_bench_s), _range(r), _fmt(cv, 1, "%"),
                   _fmt(r.t_ref_s, 2), _fmt(r.score, 3), notes.refs(r.notes)]
            rows.append(row if compliant else [notes.labelled("non-compliant", r.issues), *row])
        sections.append((place, rows))
    headers = ["config", "runs", "t_bench (s)", "min-max (s)", "CV", "t_ref (s)", "score",
               "notes"]
    numeric = {2, 3, 4, 5, 6}
    title = f"Per-model scores: {FORMULA}\n{METHOD}"
    if not compliant:
        headers, numeric = ["class", *headers], {i + 1 for i in numeric}
        title = "Per-model scores of NON-COMPLIANT runs (not comparable with the reference)"
    labels = {len(headers) - 1} | ({0} if not compliant else set())
    return Block(title, headers, numeric, sections, notes.new_lines(), labels)


def benchmark_block(rows: list[BenchmarkResult], reference: Reference, compliant: bool,
                    notes: Notes) -> Block:
    models = list(reference.t_ref_s)
    if len(models) < 2:
        return Block(f"No benchmark score: the reference holds only {', '.join(models)}",
                     [], set(), [])
    sections = []
    for place, members in _by_place(rows):
        body = []
        for row in members:
            cells = [_fmt(row.scores[m], 3) for m in models]
            cells += [_fmt(row.mean, 3), _fmt(row.geomean, 3)]
            # A non-compliant row's note repeats its per-model labels: the class says it.
            note = row.note if compliant or row.mean is None else ""
            cells.append(notes.refs([note] if note else []))
            body.append(cells if compliant else
                        [notes.labelled("non-compliant", row.issues), *cells])
        sections.append((place, body))
    headers = [*models, "score (mean)", "geomean", "notes"]
    numeric = set(range(len(models) + 2))
    title = (f"Benchmark score against {reference.source}: mean of the per-model scores "
             "(geometric mean beside it)")
    if not compliant:
        headers, numeric = ["class", *headers], {i + 1 for i in numeric}
        title = f"Benchmark score against {reference.source} of NON-COMPLIANT runs"
    labels = {len(headers) - 1} | ({0} if not compliant else set())
    return Block(title, headers, numeric, sections, notes.new_lines(), labels)


def terminal_report(runs: list[Run], results: list[ModelResult],
                    benchmarks: list[tuple[Reference, list[BenchmarkResult]]]) -> str:
    """Everything printed on stdout before the list of written files."""
    notes = Notes()
    everything = [row for _, rows in benchmarks for row in rows]
    lines = wrap(summary_line(runs, everything))
    lines += reference_lines([reference for reference, _ in benchmarks]) + [""]
    blocks = [run_block(runs, notes)]
    for compliant in (True, False):
        chosen = [r for r in results if (r.compliance == COMPLIANT) == compliant]
        if not chosen:
            if compliant:
                blocks.append(Block("Per-model scores: no compliant run (the non-compliant "
                                    "ones are below)", [], set(), []))
            continue
        blocks.append(model_block(chosen, compliant, notes))
        for reference, rows in benchmarks:
            # A reference none of whose configs has a result here adds no empty table (the
            # one reference given on the command line always has its table).
            if len(benchmarks) > 1 and not any(r.config in reference.t_ref_s for r in chosen):
                continue
            if len(reference.t_ref_s) < 2 and not compliant:
                continue
            mine = [b for b in rows if (b.compliance == COMPLIANT) == compliant]
            blocks.append(benchmark_block(mine, reference, compliant, notes))
    return "\n".join(lines) + "\n" + "\n".join(render(block) for block in blocks)
