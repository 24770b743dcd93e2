"""`python -m score`: score every run under a results folder against a reference.

Prints the tables, writes score.csv, score.md, accuracy_vs_time.png and throughput.png.
Exit code 0 if any run was read, 2 (one-line error) if nothing can be scored.
"""

import argparse
import sys
import warnings as warnings_module
from pathlib import Path

from score import ScoreError
from score.energy import energy_tables
from score.load import load_results
from score.plots import plot_accuracy_vs_time, plot_throughput
from score.readers import safe_text, shown
from score.reference import Reference, apply_reference, load_reference
from score.stats import benchmark_scores, group_models
from score.tables import reference_line, render_text, score_tables, write_csv, write_markdown

DEFAULT_REFERENCE = Path(__file__).resolve().parent.parent / "configs" / "reference.yaml"
PLOT_FILES = ("accuracy_vs_time.png", "throughput.png")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m score",
        description="Score training runs: time to target accuracy against a reference.",
    )
    parser.add_argument("--results", type=Path, default=Path("results"),
                        help="results folder; runs are found at any depth under it, e.g. "
                             "<results>/<config>/<run_id>/ (default: results)")
    parser.add_argument("--reference", type=Path, default=DEFAULT_REFERENCE,
                        help="reference YAML file, or a results folder measured on another "
                             "machine (default: configs/reference.yaml)")
    parser.add_argument("--out", type=Path, default=None,
                        help="folder for score.csv, score.md and the plots "
                             "(default: the results folder)")
    return parser.parse_args(argv)


def print_warnings(warnings: list[str]) -> None:
    for warning in warnings:
        print(f"warning: {safe_text(warning)}", file=sys.stderr)


def run(args: argparse.Namespace) -> int:
    warnings: list[str] = []
    reference: Reference = load_reference(args.reference, warnings)
    runs = load_results(args.results, warnings)
    if not runs:
        print_warnings(warnings)
        raise ScoreError(f"{shown(args.results)}: no readable run (looked for folders holding "
                         "run.json and epochs.csv at any depth under it)")

    results = group_models(runs)
    apply_reference(results, reference, warnings)
    models = list(reference.t_ref_s)
    benchmarks = benchmark_scores(results, models)
    print_warnings(warnings)

    tables = score_tables(runs, results, benchmarks, models)
    tables += energy_tables(runs, results, reference)
    print(reference_line(reference) + "\n")
    print("\n".join(render_text(table) for table in tables))

    out = args.out or args.results
    with warnings_module.catch_warnings():
        # Absurd values from a hand-edited file (1e308 s) make matplotlib's tick arithmetic
        # overflow: the plot is still written; its library warning would not be one line.
        warnings_module.simplefilter("ignore", RuntimeWarning)
        plot_accuracy_vs_time(runs, out / PLOT_FILES[0])
        plot_throughput(runs, out / PLOT_FILES[1])
    write_csv(out / "score.csv", runs, results, benchmarks, models)
    write_markdown(out / "score.md", reference, tables, warnings, list(PLOT_FILES))
    written = ", ".join(shown(out / name) for name in ("score.csv", "score.md", *PLOT_FILES))
    print(f"Wrote {written}")
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
