"""Plots that show where the time went: accuracy against wall time, and per-epoch throughput.

One panel per config; one colour per machine and hardware (GPUs, or CPU processes), the same
in every panel and both figures. Non-compliant runs are dashed, runs still in progress are faded.
"""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: never needs a display

import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from formats.results import STATUS_IN_PROGRESS  # noqa: E402
from score.files import atomic_output  # noqa: E402
from score.load import Run  # noqa: E402
from score.readers import safe_text  # noqa: E402

PANEL_SIZE = (6.0, 4.2)


def _label(text: str, limit: int = 60) -> str:
    """Plot text in ASCII (a glyph missing from the font would be a library warning), with
    "$" escaped (matplotlib reads text between two "$" as a formula, and fails on a bad one)."""
    text = safe_text(text, limit).encode("ascii", "backslashreplace").decode("ascii")
    return text.replace("$", r"\$")


def _machine_key(run: Run) -> str:
    return f"{_label(run.machine)} ({run.hardware})"


def _style(runs: list[Run]) -> dict[str, str]:
    cycle = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    keys = sorted({_machine_key(run) for run in runs})
    return {key: cycle[i % len(cycle)] for i, key in enumerate(keys)}


def _line_kwargs(run: Run, colours: dict[str, str]) -> dict:
    return {
        "color": colours[_machine_key(run)],
        "linestyle": "-" if not run.compliance_issues else "--",
        "alpha": 0.45 if run.status == STATUS_IN_PROGRESS else 0.9,
        "marker": ".",
        "linewidth": 1.2,
    }


def _legend(ax: plt.Axes, runs: list[Run], colours: dict[str, str], extra: list) -> None:
    handles = [Line2D([], [], color=colours[key], label=key)
               for key in sorted({_machine_key(run) for run in runs})]
    if any(run.compliance_issues for run in runs):
        handles.append(Line2D([], [], color="black", linestyle="--", label="non-compliant"))
    ax.legend(handles=handles + extra, fontsize=7, loc="best")


def _save(fig: plt.Figure, path: Path) -> None:
    fig.tight_layout()
    with atomic_output(path) as temporary:
        fig.savefig(temporary, format="png", dpi=100)
    plt.close(fig)


def _by_config(runs: list[Run]) -> list[tuple[str, list[Run]]]:
    configs = sorted({run.config for run in runs})
    return [(config, [run for run in runs if run.config == config]) for config in configs]


def plot_accuracy_vs_time(runs: list[Run], path: Path) -> None:
    """val top-1 against elapsed seconds for every run; targets as horizontal lines."""
    colours = _style(runs)
    panels = _by_config(runs)
    fig, axes = plt.subplots(1, len(panels), squeeze=False,
                             figsize=(PANEL_SIZE[0] * len(panels), PANEL_SIZE[1]))
    for ax, (config, members) in zip(axes[0], panels, strict=True):
        for run in members:
            epochs = run.epochs.dropna(subset=["val_top1"])
            ax.plot(epochs["elapsed_s"], epochs["val_top1"], **_line_kwargs(run, colours))
            if run.t_bench_s is not None:
                ax.plot([run.t_bench_s], [run.crossing_top1], "o", markersize=7,
                        fillstyle="none", color=colours[_machine_key(run)])
        target_lines = []
        for target in sorted({run.target_top1 for run in members}):
            ax.axhline(target, color="dimgray", linestyle=":", linewidth=1.2)
            target_lines.append(Line2D([], [], color="dimgray", linestyle=":",
                                       label=f"target {target:g}%"))
        crossing_mark = Line2D([], [], marker="o", fillstyle="none", linestyle="",
                               color="black", label="t_bench (first scheduled crossing)")
        ax.set(title=_label(config), xlabel="elapsed wall time (s)", ylabel="val top-1 (%)")
        ax.grid(alpha=0.3)
        _legend(ax, members, colours, target_lines + [crossing_mark])
    _save(fig, path)


def plot_throughput(runs: list[Run], path: Path) -> None:
    """Training clips/s and the share of training time spent waiting for data, per epoch."""
    colours = _style(runs)
    panels = _by_config(runs)
    fig, axes = plt.subplots(2, len(panels), squeeze=False, sharex="col",
                             figsize=(PANEL_SIZE[0] * len(panels), 2 * PANEL_SIZE[1]))
    for column, (config, members) in enumerate(panels):
        speed_ax, wait_ax = axes[0][column], axes[1][column]
        for run in members:
            style = _line_kwargs(run, colours)
            speed_ax.plot(run.epochs["epoch"], run.epochs["clips_per_s"], **style)
            wait_ax.plot(run.epochs["epoch"], 100 * run.epochs["data_wait_frac"], **style)
        speed_ax.set(title=f"{_label(config)}: training throughput", ylabel="clips/s")
        wait_ax.set(title=f"{_label(config)}: time waiting for data",
                    ylabel="data wait (% of train)", xlabel="epoch", ylim=(0, 100))
        for ax in (speed_ax, wait_ax):
            ax.grid(alpha=0.3)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        _legend(speed_ax, members, colours, [])
    _save(fig, path)
