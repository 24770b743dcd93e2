"""One static HTML page comparing systems: opens from disk with no network access.

Everything is inside the file: the style, the systems x models table, per system its
description, its accuracy-vs-time and throughput plots (PNG from score/plots.py, inlined as
base64) and its runs with their labels, then the scorer's warnings. All text from result
files is HTML-escaped; the page has no script.
"""

from __future__ import annotations

import base64
import html
import tempfile
import warnings as warnings_module
from pathlib import Path

from formats.files import atomic_write
from score.compare import HEADERS, NUMERIC, Row, row_cells
from score.load import Run
from score.plots import colours_of, plot_accuracy_vs_time, plot_throughput
from score.readers import safe_text

PAGE_FILE = "comparison.html"
STYLE = """
body { font-family: sans-serif; margin: 1.5em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; }
th, td { border: 1px solid #bbb; padding: 0.25em 0.6em; text-align: left; }
td.n { text-align: right; font-variant-numeric: tabular-nums; }
th { background: #eef; }
tr.non-compliant td { color: #a33; }
img { max-width: 48%; vertical-align: top; border: 1px solid #ddd; margin: 0 0.5em 0.5em 0; }
.labels { font-size: 0.9em; }
"""


def _e(text: object) -> str:
    """Text from result files, safe in HTML and in UTF-8 (lone surrogates, control chars)."""
    return html.escape(safe_text(text), quote=True)


def _table(headers: list[str] | tuple[str, ...], rows: list[list[str]], numeric: set[int],
           classes: list[str] | None = None, table_id: str = "") -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = []
    for i, cells in enumerate(rows):
        cls = f' class="{_e(classes[i])}"' if classes else ""
        tds = "".join(f'<td class="n">{_e(c)}</td>' if j in numeric else f"<td>{_e(c)}</td>"
                      for j, c in enumerate(cells))
        body.append(f"<tr{cls}>{tds}</tr>")
    ident = f' id="{table_id}"' if table_id else ""
    return f"<table{ident}><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _plots(runs: list[Run], colours: dict[str, str]) -> str:
    """The two plots of these runs as inline PNG images."""
    images = []
    with tempfile.TemporaryDirectory() as folder, warnings_module.catch_warnings():
        warnings_module.simplefilter("ignore", RuntimeWarning)  # as score/__main__.py
        for name, plot in (("accuracy vs time", plot_accuracy_vs_time),
                           ("throughput", plot_throughput)):
            path = Path(folder) / "plot.png"
            plot(runs, path, colours)
            data = base64.b64encode(path.read_bytes()).decode("ascii")
            images.append(f'<img alt="{_e(name)}" src="data:image/png;base64,{data}">')
    return "<div>" + "".join(images) + "</div>"


def _run_rows(runs: list[Run]) -> list[list[str]]:
    rows = []
    for run in sorted(runs, key=lambda r: (r.config, r.run_id)):
        best = run.epochs["val_top1"].max() if len(run.epochs) else None
        rows.append([run.config, run.run_id, run.hardware, run.machine,
                     "-" if best is None or best != best else f"{best:.1f} / {run.target_top1:g}",
                     "-" if run.t_bench_s is None else f"{run.t_bench_s:.1f}",
                     "; ".join(run.labels), str(run.path)])
    return rows


def page_html(title: str, summary: str, rows: list[Row], runs: list[Run],
              warnings: list[str]) -> str:
    colours = colours_of(runs)
    parts = [f"<h1>{_e(title)}</h1>", f"<p>{_e(summary)}</p>", "<h2>Systems and models</h2>",
             _table(HEADERS, [row_cells(row) for row in rows], NUMERIC,
                    [row.compliance for row in rows], "comparison"),
             "<p>One row per system, model, hardware and compliance class; rows in red are "
             "non-compliant (each run's labels below say why). score: t_ref / t_bench x "
             "n_gpu_ref / n_gpu_bench; benchmark: the mean of the reference's models.</p>"]
    systems = sorted({run.system for run in runs})
    for system in systems:
        mine = [run for run in runs if run.system == system]
        parts.append(f"<h2>System {_e(system)}</h2>")
        described = next((run.system_description for run in mine if run.system_description),
                         {})
        if described:
            parts.append(_table(["description", "value"],
                                [[key, value] for key, value in described.items()], set()))
        parts.append(_plots(mine, colours))
        parts.append(_table(["config", "run", "hardware", "machine", "top-1 / target",
                             "t_bench (s)", "labels", "from"], _run_rows(mine), {4, 5},
                            ["labels"] * len(mine)))
    if warnings:
        items = "".join(f"<li>{_e(w)}</li>" for w in warnings)
        parts.append(f"<h2>Warnings</h2><ul>{items}</ul>")
    body = "\n".join(parts)
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f"<title>{_e(title)}</title><style>{STYLE}</style></head>"
            f"<body>\n{body}\n</body></html>\n")


def write_page(path: Path, title: str, summary: str, rows: list[Row], runs: list[Run],
               warnings: list[str]) -> None:
    atomic_write(path, page_html(title, summary, rows, runs, warnings))
