"""Plots that show where the time went: accuracy against wall time, and per-epoch throughput.

One panel per config; one colour per machine and hardware (GPUs, or CPU processes), the same
in every panel and both figures (`colours_of`, made once). Non-compliant runs are dashed, runs
still in progress are faded; the legend shows exactly those styles where they are drawn.
Throughput and data wait are drawn from zero, so a 10 % wobble looks like one.
"""

from pathlib import Path

import matplotlib
import numpy as np

matplotlib.use("Agg")  # files only: never needs a display

import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from formats.files import atomic_path  # noqa: E402
from formats.results import STATUS_IN_PROGRESS  # noqa: E402
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


def colours_of(runs: list[Run]) -> dict[str, str]:
    """One colour per machine and hardware, for every plot of these runs."""
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
    """One entry per colour drawn in this panel, in the style its runs are drawn in (dashed
    when they are all non-compliant), then the styles that appear in it."""
    handles = []
    for key in sorted({_machine_key(run) for run in runs}):
        mine = [run for run in runs if _machine_key(run) == key]
        dashed = all(run.compliance_issues for run in mine)
        handles.append(Line2D([], [], color=colours[key], marker=".",
                              linestyle="--" if dashed else "-",
                              label=f"{key}, non-compliant" if dashed else key))
    mixed = len({bool(run.compliance_issues) for run in runs}) > 1
    if mixed:
        handles.append(Line2D([], [], color="gray", linestyle="--", label="non-compliant run"))
    if any(run.status == STATUS_IN_PROGRESS for run in runs):
        handles.append(Line2D([], [], color="gray", alpha=0.45, label="run in progress"))
    ax.legend(handles=handles + extra, fontsize=7, loc="best")


def _save(fig: plt.Figure, path: Path) -> None:
    fig.tight_layout()
    with atomic_path(path) as temporary:
        fig.savefig(temporary, format="png", dpi=100)
    plt.close(fig)


def _by_config(runs: list[Run]) -> list[tuple[str, list[Run]]]:
    configs = sorted({run.config for run in runs})
    return [(config, [run for run in runs if run.config == config]) for config in configs]


def plot_accuracy_vs_time(runs: list[Run], path: Path, colours: dict[str, str]) -> None:
    _save(accuracy_figure(runs, colours), path)


def plot_throughput(runs: list[Run], path: Path, colours: dict[str, str]) -> None:
    _save(throughput_figure(runs, colours), path)


def accuracy_figure(runs: list[Run], colours: dict[str, str]) -> plt.Figure:
    """val top-1 against elapsed seconds for every run; targets as horizontal lines, each
    run's t_bench (its first scheduled evaluation at the target) as a circle."""
    panels = _by_config(runs)
    fig, axes = plt.subplots(1, len(panels), squeeze=False,
                             figsize=(PANEL_SIZE[0] * len(panels), PANEL_SIZE[1]))
    for ax, (config, members) in zip(axes[0], panels, strict=True):
        for run in members:
            epochs = run.epochs.dropna(subset=["val_top1"])
            ax.plot(epochs["elapsed_s"], epochs["val_top1"], **_line_kwargs(run, colours))
            if run.t_bench_s is not None:
                ax.plot([run.t_bench_s], [run.crossing_top1], "o", markersize=8,
                        fillstyle="none", markeredgewidth=1.5,
                        color=colours[_machine_key(run)])
        extra = []
        for target in sorted({run.target_top1 for run in members}):
            ax.axhline(target, color="dimgray", linestyle=":", linewidth=1.2)
            extra.append(Line2D([], [], color="dimgray", linestyle=":",
                                label=f"target top-1 {target:g}%"))
        if any(run.t_bench_s is not None for run in members):
            extra.append(Line2D([], [], marker="o", fillstyle="none", linestyle="",
                                color="gray", label="t_bench: first scheduled eval at target"))
        ax.set(title=_label(config),
               xlabel="elapsed wall time (s)", ylabel="val top-1 (%)")
        ax.set_xlim(left=0)
        ax.grid(alpha=0.3)
        _legend(ax, members, colours, extra)
    fig.suptitle("Time to target accuracy: val top-1 against wall time; the circle, t_bench, is "
                 "the time scored (earlier is better)", fontsize=10)
    return fig


def throughput_figure(runs: list[Run], colours: dict[str, str]) -> plt.Figure:
    """Training clips/s and the share of training time spent waiting for data, per epoch,
    both on axes from zero."""
    panels = _by_config(runs)
    fig, axes = plt.subplots(2, len(panels), squeeze=False, sharex="col",
                             figsize=(PANEL_SIZE[0] * len(panels), 2 * PANEL_SIZE[1]))
    for column, (config, members) in enumerate(panels):
        speed_ax, wait_ax = axes[0][column], axes[1][column]
        highest_wait = highest_speed = last_epoch = 0.0
        for run in members:
            last_epoch = max(last_epoch, _highest(run.epochs["epoch"]))
            style = _line_kwargs(run, colours)
            speed_ax.plot(run.epochs["epoch"], run.epochs["clips_per_s"], **style)
            wait = 100 * run.epochs["data_wait_frac"]
            wait_ax.plot(run.epochs["epoch"], wait, **style)
            highest_wait = max(highest_wait, _highest(wait))
            highest_speed = max(highest_speed, _highest(run.epochs["clips_per_s"]))
        speed_ax.set(title=f"{_label(config)}: training throughput (higher is better)",
                     ylabel="clips/s (all processes)")
        # From zero, with room above the highest point; a data wait of a few percent is drawn
        # on at least 0-5 % so that it stays visible.
        if highest_speed > 0:
            speed_ax.set_ylim(0, 1.15 * highest_speed)
        else:
            speed_ax.set_ylim(bottom=0)
        wait_ax.set(title=f"{_label(config)}: time waiting for data (lower is better)",
                    ylabel="data wait (% of train time)", xlabel="epoch",
                    ylim=(0, min(100.0, max(5.0, 1.2 * highest_wait))))
        # Whole epochs on the axis, even for a run with one epoch so far.
        speed_ax.set_xlim(-0.25, max(last_epoch, 1.0) + 0.25)
        for ax in (speed_ax, wait_ax):
            ax.grid(alpha=0.3)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        _legend(speed_ax, members, colours, [])
        _legend(wait_ax, members, colours, [])
    fig.suptitle("Where the time went, per epoch: training throughput and the share of it spent "
                 "waiting for the loader", fontsize=10)
    return fig


def _highest(values) -> float:
    """The largest finite value, 0 for none (a hand-edited file may hold NaN or inf)."""
    finite = values[np.isfinite(values)]
    return float(finite.max()) if len(finite) else 0.0
