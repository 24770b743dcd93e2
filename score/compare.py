"""Several results folders and packages scored together, and the systems x models table.

`make score RESULTS="a.tar.gz b.tar.gz results/"`: each folder is read as it is; each package
is unpacked safely into a temporary folder (score/unpack.py) and its manifest checked. A run
of a package whose check found a changed, missing, extra or refused file is labelled with a
compliance issue, so it is never scored as compliant: the file's own run when the file is in
a run folder, every run of the package otherwise (the description, the tables, the logs).
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

from formats.results import STATUS_IN_PROGRESS, STATUS_REACHED, SYSTEM_DESCRIPTION_FILE
from score import ScoreError
from score.load import COMPLIANT, Run, load_results
from score.package import system_of
from score.readers import read_json_object, safe_text, shown
from score.stats import BenchmarkResult, ModelResult
from score.unpack import Package, read_package

PACKAGE_SUFFIXES = (".tar.gz", ".tgz")


def is_package(path: Path) -> bool:
    return path.name.endswith(PACKAGE_SUFFIXES) and not path.is_dir()


def _describe(run: Run) -> None:
    """Fix the system name and description on the run while its files are still there."""
    run.system = system_of(run)
    try:
        run.system_description = read_json_object(run.path / SYSTEM_DESCRIPTION_FILE,
                                                  required=False)
    except ScoreError:
        run.system_description = {}  # shown without it; the run itself is still scored


def _label(runs: list[Run], package: Package) -> None:
    if not package.has_manifest:
        for run in runs:
            run.compliance_issues.append("package without manifest: unchecked")
        return
    general = []
    folders = [(run, run.path.relative_to(package.root).as_posix()) for run in runs]
    for name, problem in sorted(package.problems.items()):
        owners = [run for run, folder in folders if name.startswith(f"{folder}/")]
        if not owners:
            general.append(f"{name} {problem}")
        for run in owners:
            run.compliance_issues.append(f"package check: {name.rsplit('/', 1)[-1]} {problem}")
    for run in runs:
        if general:
            run.compliance_issues.append(f"package check: {', '.join(general[:3])}"
                                         f"{' and more' if len(general) > 3 else ''}")


def load_inputs(paths: list[Path], warnings: list[str]) -> list[Run]:
    """Every run of every folder and package, with `system` and `system_description` set."""
    runs: list[Run] = []
    for path in paths:
        if not is_package(path):
            try:
                found = load_results(path, warnings)
            except ScoreError as error:
                if len(paths) == 1:
                    raise
                warnings.append(f"{error}; skipped")
                continue
            for run in found:
                _describe(run)
            runs += found
            continue
        with tempfile.TemporaryDirectory(prefix="vmb-package-") as folder:
            try:
                package = read_package(path, Path(folder), warnings)
                found = load_results(package.root, warnings)
            except ScoreError as error:
                warnings.append(f"{error}; skipped")
                continue
            _label(found, package)
            for run in found:
                _describe(run)
                # Shown as where it came from: the temporary folder is gone after this.
                run.path = Path(f"{path}:{run.path.relative_to(package.root).as_posix()}")
            runs += found
    return _once(runs, warnings)


def _once(runs: list[Run], warnings: list[str]) -> list[Run]:
    """A run given twice (its package and its folder) is counted once, with a warning."""
    seen: dict[tuple[str, str, str], Run] = {}
    kept = []
    for run in runs:
        key = (run.system, run.config, run.run_id)
        if key in seen:
            warnings.append(f"{shown(run.path)}: the same run as {shown(seen[key].path)} "
                            "(given twice?); counted once")
            continue
        seen[key] = run
        kept.append(run)
    return kept


@dataclass
class Row:
    system: str
    config: str
    gpus: int
    hardware: str
    reached: str
    t_bench_s: float | None
    cv: float | None
    score: float | None
    benchmark: float | None
    compliance: str


def _system_key(runs: list[Run]) -> str:
    return " / ".join(sorted({getattr(run, "system", None) or system_of(run) for run in runs}))


def comparison_rows(results: list[ModelResult], benchmarks: list[BenchmarkResult]) -> list[Row]:
    """One row per system, config, GPU count and compliance class."""
    rows = []
    for result in results:
        # Benchmark rows have one non-compliant class per place ("non-compliant").
        kind = COMPLIANT if result.compliance == COMPLIANT else "non-compliant"
        benchmark = next((b.mean for b in benchmarks if (b.machine, b.hardware, b.compliance)
                          == (result.machine, result.hardware, kind)), None)
        reached = result.count(STATUS_REACHED)
        running = result.count(STATUS_IN_PROGRESS)
        rows.append(Row(_system_key(result.runs), result.config, result.gpus, result.hardware,
                        f"{reached}/{reached + result.missed}" + (f" +{running}" if running
                                                                   else ""),
                        result.t_bench_s, result.cv, result.score, benchmark,
                        "compliant" if result.compliance == COMPLIANT else "non-compliant"))
    return sorted(rows, key=lambda r: (r.system, r.config, r.gpus, r.compliance))


def _fmt(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


HEADERS = ("system", "config", "hardware", "reached", "t_bench (s)", "CV", "score", "benchmark",
           "compliance")
NUMERIC = {3, 4, 5, 6, 7}  # right-aligned columns


def row_cells(row: Row) -> list[str]:
    cv = None if row.cv is None else 100 * row.cv
    return [safe_text(row.system, 40), row.config, row.hardware, row.reached,
            _fmt(row.t_bench_s, 1), "-" if cv is None else f"{cv:.1f}%", _fmt(row.score, 3),
            _fmt(row.benchmark, 3), row.compliance]


def comparison_text(rows: list[Row]) -> str:
    """The systems x models table as plain text (the page has the same as HTML)."""
    table = [list(HEADERS)] + [row_cells(row) for row in rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(HEADERS))]
    lines = ["Comparison of systems (score: per model, as above; benchmark: "
             "the mean over the reference's models)"]
    for line in table:
        lines.append("  ".join(cell.rjust(w) if i in NUMERIC else cell.ljust(w)
                               for i, (cell, w) in enumerate(zip(line, widths, strict=True)))
                     .rstrip())
    return "\n".join(lines)


def default_out(paths: list[Path]) -> Path:
    """Where the tables and the page go: the first folder given, else ./comparison."""
    folders = [path for path in paths if not is_package(path)]
    return folders[0] if folders else Path("comparison")


def shown_inputs(paths: list[Path]) -> str:
    return ", ".join(shown(path) for path in paths)
