"""`python -m score` end to end on hand-made result folders: tables, files, labels, exit codes."""

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from score.__main__ import main
from tests.helpers.score import NEVER_REACHING, reaching_at, write_reference, write_run

REPO = Path(__file__).resolve().parent.parent
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def two_model_results(tmp_path) -> Path:
    """A reference-like machine with both models, one resumed run, one non-compliant run,
    one run in progress and one damaged run."""
    results = tmp_path / "results"
    for i, t in enumerate([3700.0, 3728.44, 3800.0]):
        write_run(results, "X3D_M", f"x{i}", **reaching_at(t))
    write_run(results, "X3D_M", "x-resumed", resumed=True, lost_s=120.0, **reaching_at(3750.0))
    write_run(results, "X3D_M", "x-amp", changed_keys=("precision",), **reaching_at(1000.0))
    write_run(results, "MVIT_B_16x4", "m0", **reaching_at(7725.12))
    write_run(results, "MVIT_B_16x4", "m-running", finished=False, **NEVER_REACHING)
    damaged = write_run(results, "MVIT_B_16x4", "m-damaged", **reaching_at(1.0))
    (damaged / "run.json").write_text("{")
    return results


def _rows(csv: Path, row: str) -> pd.DataFrame:
    table = pd.read_csv(csv)
    return table[table["row"] == row].reset_index(drop=True)


def test_scores_labels_and_writes_every_output(two_model_results, tmp_path, capsys):
    reference = write_reference(tmp_path / "ref.yaml", {"X3D_M": 7456.88, "MVIT_B_16x4": 7725.12})
    assert main(["--results", str(two_model_results), "--reference", str(reference)]) == 0
    out, err = capsys.readouterr()

    # The damaged run is named in a one-line warning; everything else is scored.
    assert all(line.startswith("warning: ") for line in err.splitlines())
    assert "m-damaged/run.json" in err
    for text in ("Per-model scores", "Benchmark score", "resumed (lost 120 s)",
                 "non-compliant [1]", "\n[1] changed: precision\n", "in progress"):
        assert text in out

    models = _rows(two_model_results / "score.csv", "model")
    compliant_x3d = models[(models.config == "X3D_M") & (models.compliance == "compliant")]
    # Four compliant runs: median of 3700, 3728.44, 3750, 3800 = (3728.44 + 3750) / 2.
    assert compliant_x3d.t_bench_s.item() == pytest.approx(3739.22)
    assert compliant_x3d.score.item() == pytest.approx(7456.88 / 3739.22)
    assert compliant_x3d.notes.item() == "includes resumed runs"
    mvit = models[models.config == "MVIT_B_16x4"]
    assert (mvit.score.item(), mvit.in_progress.item(), mvit.missed.item()) == (1.0, 1, 0)
    amp = models[models.compliance == "non-compliant (changed: precision)"]
    assert amp.score.item() == pytest.approx(7456.88 / 1000.0)

    bench = _rows(two_model_results / "score.csv", "benchmark").set_index("compliance")
    expected = (7456.88 / 3739.22 + 1.0) / 2
    assert bench.loc["compliant", "score"] == pytest.approx(expected, rel=1e-5)
    assert bench.loc["compliant", "score_geomean"] == pytest.approx(
        (7456.88 / 3739.22) ** 0.5, rel=1e-5)
    # The non-compliant X3D_M is scored apart, with the compliant MViT-B beside it.
    assert bench.loc["non-compliant", "score"] == pytest.approx((7456.88 / 1000 + 1) / 2, 1e-5)

    runs = _rows(two_model_results / "score.csv", "run")
    assert len(runs) == 7
    assert "resumed" in runs.set_index("run_id").loc["x-resumed", "notes"]

    markdown = (two_model_results / "score.md").read_text()
    assert "| non-compliant (changed: precision) |" in markdown
    assert "](accuracy_vs_time.png)" in markdown and "m-damaged" in markdown
    for name in ("accuracy_vs_time.png", "throughput.png"):
        data = (two_model_results / name).read_bytes()
        assert data.startswith(PNG_SIGNATURE)
        assert 10_000 < len(data) < 2_000_000
    assert not list(two_model_results.glob(".*tmp*"))


def test_reference_can_be_a_results_folder_from_another_machine(tmp_path, capsys):
    # Reference machine: 4 GPUs, X3D_M in 1000 s (median of three runs).
    for i, t in enumerate([900.0, 1000.0, 1100.0]):
        write_run(tmp_path / "ref", "X3D_M", f"r{i}", **reaching_at(t))
    # Machine under test: 1 GPU, X3D_M in 2000 s -> 1000 / 2000 x 4 / 1 = 2.0.
    write_run(tmp_path / "new", "X3D_M", "n0", machine="1 x NVIDIA L4", gpus=1,
              **reaching_at(2000.0))
    code = main(["--results", str(tmp_path / "new"), "--reference", str(tmp_path / "ref"),
                 "--out", str(tmp_path / "report")])
    assert code == 0
    models = _rows(tmp_path / "report" / "score.csv", "model")
    assert models.score.item() == pytest.approx(2.0)
    assert (models.t_ref_s.item(), models.gpus_ref.item()) == (1000.0, 4)
    out = capsys.readouterr().out
    assert "only X3D_M" in out  # a one-model reference gives no benchmark score
    assert not (tmp_path / "new" / "score.csv").exists()


def test_configs_without_a_reference_are_named_once_in_one_line(tmp_path, capsys):
    results = tmp_path / "results"
    for i in range(3):
        write_run(results, "demo_X3D_M", f"d{i}", **reaching_at(50.0 + i, "demo_X3D_M"))
    for i in range(2):
        write_run(results, "my_preset", f"p{i}", **reaching_at(60.0 + i))
    reference = write_reference(tmp_path / "ref.yaml", {"X3D_M": 7456.88, "MVIT_B_16x4": 1.0})
    assert main(["--results", str(results), "--reference", str(reference)]) == 0
    out, err = capsys.readouterr()
    [warning] = err.splitlines()  # not one per run, nor one per config
    assert warning.startswith("warning: no reference lists config 'demo_X3D_M' (")
    assert "'my_preset'" in warning and str(results / "demo_X3D_M") in warning
    assert "t_bench shown without a score" in warning
    assert "config not in reference" not in out
    models = _rows(results / "score.csv", "model").set_index("config")
    assert models.loc["demo_X3D_M", "t_bench_s"] == 51.0
    assert pd.isna(models.loc["demo_X3D_M", "score"])


def test_nothing_to_score_exits_2_with_one_line(tmp_path, capsys):
    (tmp_path / "results" / "X3D_M" / "r0").mkdir(parents=True)
    (tmp_path / "results" / "X3D_M" / "r0" / "run.json").write_text("oops")
    assert main(["--results", str(tmp_path / "results")]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[-1].startswith("error: ") and "no readable run" in err[-1]
    assert main(["--results", str(tmp_path / "missing")]) == 2
    assert "results folder not found" in capsys.readouterr().err


def test_unusable_reference_exits_2(tmp_path, capsys):
    write_run(tmp_path / "results", **reaching_at(1000.0))
    assert main(["--results", str(tmp_path / "results"),
                 "--reference", str(tmp_path / "none.yaml")]) == 2
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith("error: ") and "none.yaml: reference file not found" in line


def test_module_entry_point_with_the_shipped_reference(tmp_path):
    write_run(tmp_path / "results", "X3D_M", **reaching_at(3728.44))
    done = subprocess.run(
        [sys.executable, "-m", "score", "--results", str(tmp_path / "results")],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "7456.88" in done.stdout
    assert "MVIT_B_16x4 not measured" in done.stdout
    models = _rows(tmp_path / "results" / "score.csv", "model")
    assert models.score.item() == pytest.approx(2.0)


def test_a_tree_mixing_old_and_new_runs_is_scored_with_the_old_ones_labelled(tmp_path, capsys):
    results = tmp_path / "results"
    for i, t in enumerate([3700.0, 3800.0]):
        write_run(results, "X3D_M", f"new{i}", **reaching_at(t))
    write_run(results, "X3D_M", "old", protocol=1, **reaching_at(1000.0))
    write_run(results / "demo", "demo_X3D_M", "demo", protocol=1, device="cpu", gpus=1,
              **reaching_at(60.0))
    assert main(["--results", str(results)]) == 0
    out, err = capsys.readouterr()
    assert "protocol 1 (evaluation after every epoch, clip-weighted metric)" in out
    assert "1 CPU process" in out
    models = _rows(results / "score.csv", "model").set_index(["config", "compliance"])
    assert models.loc[("X3D_M", "compliant"), "t_bench_s"] == pytest.approx(3750.0)
    old = models.loc["X3D_M"].drop("compliant")
    assert len(old) == 1 and old.index[0].startswith("non-compliant (protocol 1")
    runs = _rows(results / "score.csv", "run").set_index("run_id")
    assert runs.loc["old", "protocol"] == 1 and runs.loc["new0", "protocol"] == 2
    assert runs.loc["old", "store"] == "not recorded"
