"""The score as a person reads it: each config against its own reference, a summary line,
tables of at most 120 columns with numbered notes, one warning for many copies, honest plots."""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from score.__main__ import main
from score.load import load_results
from score.plots import accuracy_figure, colours_of, throughput_figure
from score.reference import load_references
from score.terminal import WIDTH, Notes
from tests.helpers.score import (
    DEMO_ISSUE,
    DEMO_STORE,
    reaching_at,
    write_demo_pair,
    write_reference,
    write_run,
)

REPO = Path(__file__).resolve().parent.parent
NOTE = re.compile(r"^\[(\d+)\] (.*)$")


def _score(results: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "score", "--results", str(results), *args],
                          cwd=REPO, capture_output=True, text=True, timeout=120)


def _lines_with(out: str, *texts: str) -> list[str]:
    return [line for line in out.splitlines() if all(text in line for text in texts)]


def test_demo_runs_are_scored_against_the_demo_reference_without_flags(tmp_path):
    results = tmp_path / "results"
    write_demo_pair(results, t_x3d=118.5, t_mvit=109.2)
    done = _score(results)
    assert done.returncode == 0 and done.stderr == "", done.stderr

    x3d, mvit = 120.0 / 118.5, 110.0 / 109.2  # configs/reference_demo.yaml, 1 process each
    benchmark = (x3d + mvit) / 2
    out = done.stdout
    first = out.splitlines()[0]
    assert first.startswith("2 runs (0 compliant), 2 models, 1 machine; ")
    assert f"benchmark score {benchmark:.3f} (non-compliant, reference_demo.yaml)" in first
    assert _lines_with(out, "Reference configs/reference_demo.yaml", "demo_X3D_M 120 s")
    assert not _lines_with(out, "Reference configs/reference.yaml")  # no run of its configs
    # A per-model score for both, and the benchmark score of the pair.
    assert _lines_with(out, "non-compliant [1]", "demo_X3D_M", "118.5", f"{x3d:.3f}")
    assert _lines_with(out, "non-compliant [1]", "demo_MVIT_B_16x4", "109.2", f"{mvit:.3f}")
    assert _lines_with(out, "non-compliant [1]", f"{x3d:.3f}", f"{mvit:.3f}", f"{benchmark:.3f}")
    assert f"\n[1] {DEMO_ISSUE}\n" in out
    assert "(none)" not in out

    table = pd.read_csv(results / "score.csv")
    models = table[table.row == "model"].set_index("config")
    assert models.loc["demo_X3D_M", "score"] == pytest.approx(x3d)
    assert models.loc["demo_MVIT_B_16x4", "reference"] == "configs/reference_demo.yaml"
    [bench] = table[table.row == "benchmark"].score
    assert bench == pytest.approx(benchmark)


def test_an_explicit_reference_overrides_for_every_config(tmp_path):
    results = tmp_path / "results"
    write_demo_pair(results)
    write_run(results, "X3D_M", "x0", **reaching_at(1000.0))
    reference = write_reference(tmp_path / "mine.yaml", {"demo_X3D_M": 237.0, "X3D_M": 500.0},
                                gpus=1)
    done = _score(results, "--reference", str(reference))
    assert done.returncode == 0, done.stderr
    [warning] = done.stderr.splitlines()  # MViT-B's demo preset is not in that file
    assert "no reference lists config 'demo_MVIT_B_16x4'" in warning
    models = pd.read_csv(results / "score.csv").query("row == 'model'").set_index("config")
    assert models.loc["demo_X3D_M", "score"] == pytest.approx(2.0)  # 237 / 118.5 x 1 / 1
    assert models.loc["X3D_M", "score"] == pytest.approx(0.125)  # 500 / 1000 x 1 / 4


def test_a_config_in_two_reference_files_is_scored_against_the_first(tmp_path, monkeypatch):
    configs = tmp_path / "configs"
    configs.mkdir()
    write_reference(configs / "reference.yaml", {"X3D_M": 100.0, "MVIT_B_16x4": 200.0})
    write_reference(configs / "reference_more.yaml", {"X3D_M": 1.0, "demo_X3D_M": 2.0})
    monkeypatch.setattr("score.reference.CONFIGS", configs)
    warnings: list[str] = []
    first, second = load_references(None, warnings)
    assert (first.t_ref_s, second.t_ref_s) == ({"X3D_M": 100.0, "MVIT_B_16x4": 200.0},
                                               {"demo_X3D_M": 2.0})
    [warning] = warnings
    assert "X3D_M is also in" in warning and "reference.yaml" in warning


def test_notes_are_numbered_once_per_distinct_text():
    notes = Notes()
    assert notes.refs(["b", "a"]) == "[1,2]"
    assert notes.labelled("non-compliant", ["a"]) == "non-compliant [2]"
    assert notes.refs([]) == "" and notes.refs(["c", "b"]) == "[1,3]"
    assert notes.new_lines() == ["[1] b", "[2] a", "[3] c"]
    assert notes.new_lines() == []  # each listed once


def _crowded_results(root: Path) -> Path:
    """Three machines (one with a very long name), long config and run names, runs of every
    kind, and non-compliant groups with long and repeated reasons."""
    results = root / "results"
    # A store record whose facts give long reasons (its settings and its dataset).
    odd_store = DEMO_STORE | {"short_side": 256, "jpeg_quality": 75}
    machines = [("4 x NVIDIA TITAN RTX", 4), ("8 x NVIDIA H100 80GB HBM3 " + "x" * 90, 8),
                ("cpu: AMD EPYC 7B13 64-Core Processor (2 cores)", 1)]
    for m, (machine, gpus) in enumerate(machines):
        for config in ("X3D_M", "MVIT_B_16x4"):
            for i in range(6):
                write_run(results / f"m{m}", config, f"20261207T0{i}0000Z-{m}{i:03d}-extra-long-id",
                          machine=machine, gpus=gpus, **reaching_at(1000.0 * (m + 1) + 10 * i,
                                                                    config))
            write_run(results / f"m{m}", config, f"bad-{m}", machine=machine, gpus=gpus,
                      store=odd_store, **reaching_at(500.0, config))
            write_run(results / f"m{m}", config, f"amp-{m}", machine=machine, gpus=gpus,
                      changed_keys=("precision",), **reaching_at(400.0, config))
    name = "X3D_M_with_a_very_long_experimental_preset_name_" + "y" * 40
    write_run(results / "long", name, "r" * 110, resumed=True, lost_s=12.0,
              attempts=[{"machine": "a" * 80, "git_commit": "abc"},
                        {"machine": "b" * 80, "git_commit": "def"}], **reaching_at(900.0))
    return results


def test_every_line_fits_120_columns_and_each_reason_is_one_note(tmp_path, capsys):
    results = _crowded_results(tmp_path)
    assert main(["--results", str(results)]) == 0
    out, err = capsys.readouterr()
    assert all(line.startswith("warning: ") for line in err.splitlines())
    lines = out.splitlines()
    wide = [line for line in lines if len(line) > WIDTH]
    assert not wide, wide
    # 36 clean runs; not compliant: 6 on other stores, 6 changed, 1 across two machines.
    assert lines[0].startswith("49 runs (36 compliant), 3 models, 3 machines; ")

    notes = [NOTE.match(line) for line in lines if NOTE.match(line)]
    numbers = [int(match[1]) for match in notes]
    assert numbers == list(range(1, len(numbers) + 1))  # each number listed once, in order
    texts = [match[2] for match in notes]
    assert len(set(texts)) == len(texts)
    assert sum(text.startswith("store settings differ:") for text in texts) == 1
    assert sum(text == DEMO_ISSUE for text in texts) == 1
    assert sum(text == "changed: precision" for text in texts) == 1
    referenced = {int(n) for refs in re.findall(r"\[([\d,]+)\]", out) for n in refs.split(",")}
    assert referenced == set(numbers)  # every reference has its note, every note is used
    # The long values are whole in score.md and score.csv.
    markdown = (results / "score.md").read_text()
    assert "x" * 90 in markdown and "r" * 110 in markdown
    runs = pd.read_csv(results / "score.csv").query("row == 'run'")
    assert runs.fingerprint.str.len().min() == len("sha256:") + 64


def test_many_copies_of_a_run_are_one_warning(tmp_path):
    results = tmp_path / "results"
    original = write_run(results / "a", **reaching_at(1000.0))
    for i in range(200):
        shutil.copytree(original, results / f"copy{i:03d}" / "X3D_M" / original.name)
    done = _score(results)
    assert done.returncode == 0, done.stderr
    [warning] = done.stderr.splitlines()
    assert warning.startswith("warning: 200 run folder(s) hold a run already read")
    assert str(results / "copy000" / "X3D_M" / original.name) in warning
    assert "and 197 more" in warning
    models = pd.read_csv(results / "score.csv").query("row == 'model'")
    assert models.runs.item() == 1


def test_plots_start_at_zero_and_keep_one_colour_per_machine(tmp_path):
    results = tmp_path / "results"
    for i in range(2):
        write_run(results, "X3D_M", f"t{i}", **reaching_at(1000.0 + i))
        write_run(results, "MVIT_B_16x4", f"t{i}", **reaching_at(1000.0 + i, "MVIT_B_16x4"))
    write_run(results, "X3D_M", "l4", machine="1 x NVIDIA L4", gpus=1, **reaching_at(3000.0))
    runs = load_results(results, [])
    colours = colours_of(runs)
    accuracy, throughput = accuracy_figure(runs, colours), throughput_figure(runs, colours)
    for ax in throughput.axes:  # clips/s of 50-60 and data waits of 46-50 % from zero
        low, high = ax.get_ylim()
        assert low == 0 and high > 50
    drawn = {}
    for figure in (accuracy, throughput):
        for ax in figure.axes:
            legend = {text.get_text() for text in ax.get_legend().get_texts()}
            assert "bench-host: 4 x NVIDIA TITAN RTX (4 GPUs)" in legend
            for line in ax.get_lines():
                if line.get_label().startswith("_child") and line.get_linestyle() == "-":
                    drawn.setdefault(line.get_color(), 0)
                    drawn[line.get_color()] += 1
    assert set(drawn) == set(colours.values()) and len(colours) == 2
    titles = " ".join(figure.get_suptitle() for figure in (accuracy, throughput))
    assert "t_bench" in titles and "waiting for the loader" in titles
    legend = {t.get_text() for t in accuracy.axes[0].get_legend().get_texts()}
    assert {"target top-1 20.59%", "t_bench: first scheduled eval at target"} <= legend
