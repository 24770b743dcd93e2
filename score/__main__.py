"""`python -m score`: score every run under a results folder against its reference.

Each config is scored against the reference file in configs/ that lists it (or against the one
--reference for all). Prints a summary line and tables that fit 120 columns, writes score.csv,
score.md, accuracy_vs_time.png and throughput.png. --results may list several folders and
packages (score/compare.py): with more than one system a systems x models table follows, and
comparison.html (score/page.py) is written beside the tables. Exit code 0 if any run was read, 2
(one-line error) if nothing can be scored.
"""

import argparse
import sys
import warnings as warnings_module
from pathlib import Path

from score import ScoreError
from score.compare import (
    comparison_rows,
    comparison_text,
    default_out,
    load_inputs,
    shown_inputs,
)
from score.energy import NOT_MEASURED_LINE, energy_tables, measured
from score.page import PAGE_FILE, write_page
from score.plots import colours_of, plot_accuracy_vs_time, plot_throughput
from score.readers import safe_text, shown
from score.reference import apply_references, benchmarks_by_reference, load_references
from score.report import summary_line, terminal_report
from score.stats import group_models
from score.tables import score_tables, write_csv, write_markdown
from score.terminal import plain_block, render, wrap

PLOT_FILES = ("accuracy_vs_time.png", "throughput.png")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m score",
        description="Score training runs: time to target accuracy against a reference.",
    )
    parser.add_argument("--results", type=Path, nargs="+", default=[Path("results")],
                        help="results folders and/or packages (make package) scored "
                             "together; runs are found at any depth under a folder, e.g. "
                             "<results>/<config>/<run_id>/ (default: results)")
    parser.add_argument("--reference", type=Path, default=None,
                        help="reference YAML file, or a results folder measured on another "
                             "machine, for every config (default: each config against the "
                             "configs/reference*.yaml file that lists it)")
    parser.add_argument("--out", type=Path, default=None,
                        help="folder for score.csv, score.md and the plots "
                             "(default: the first results folder; packages only: comparison)")
    parser.add_argument("--no-page", action="store_true",
                        help=f"do not write {PAGE_FILE} (the comparison page)")
    return parser.parse_args(argv)


def print_warnings(warnings: list[str]) -> None:
    sys.stdout.flush()  # in order with what is printed before them, even into a pipe
    for warning in warnings:
        print(f"warning: {safe_text(warning)}", file=sys.stderr)


def run(args: argparse.Namespace) -> int:
    warnings: list[str] = []
    references = load_references(args.reference, warnings)
    runs = load_inputs(args.results, warnings)
    if not runs:
        print_warnings(warnings)
        raise ScoreError(f"{shown_inputs(args.results)}: no readable run (looked for folders "
                         "holding run.json and epochs.csv at any depth under it)")

    results = group_models(runs)
    apply_references(results, references, warnings)
    benchmarks = benchmarks_by_reference(results, references, everyone=args.reference is not None)
    flat = [row for _, rows in benchmarks for row in rows]
    print_warnings(warnings)
    print(terminal_report(runs, results, benchmarks))
    energy = energy_tables(runs, results)
    print("\n".join(render(plain_block(t.title, t.headers, t.rows, t.numeric)) for t in energy)
          if measured(runs) else NOT_MEASURED_LINE + "\n")

    out = args.out or default_out(args.results)
    out.mkdir(parents=True, exist_ok=True)
    colours = colours_of(runs)
    with warnings_module.catch_warnings():
        # Absurd values from a hand-edited file (1e308 s) make matplotlib's tick arithmetic
        # overflow: the plot is still written; its library warning would not be one line.
        warnings_module.simplefilter("ignore", RuntimeWarning)
        plot_accuracy_vs_time(runs, out / PLOT_FILES[0], colours)
        plot_throughput(runs, out / PLOT_FILES[1], colours)
    write_csv(out / "score.csv", runs, results, flat)
    write_markdown(out / "score.md", summary_line(runs, flat),
                   [reference for reference, _ in benchmarks],
                   score_tables(runs, results, benchmarks) + energy, warnings, list(PLOT_FILES))
    rows = comparison_rows(results, flat)
    written = ["score.csv", "score.md", *PLOT_FILES]
    if len({run.system for run in runs}) > 1:
        print("\n" + comparison_text(rows))
    if not args.no_page:
        write_page(out / PAGE_FILE, "Video Model Benchmark: comparison of systems",
                   summary_line(runs, flat), rows, runs, warnings)
        written.append(PAGE_FILE)
    print("\n".join(wrap(f"Wrote to {shown(out)}: {', '.join(written)}")))
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    for stream in (sys.stdout, sys.stderr):
        # A terminal whose encoding lacks a character gets an escape, not a crash.
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")
    try:
        return run(args)
    except ScoreError as error:
        print(f"error: {safe_text(error)}", file=sys.stderr)
        return 2
    except OSError as error:  # e.g. --out not writable
        name = shown(error.filename) if error.filename else ""
        print(f"error: {name}: {safe_text(error.strerror or error)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
