"""The scorer's energy tables: energy to the target per run and per group, clips per joule,
"not measured" where a run has no energy, and no energy ratio (the reference has none)."""

from pathlib import Path

from score.__main__ import main
from score.energy import NOT_MEASURED_LINE, clips_per_joule, energy_to_target_j
from score.load import load_run
from tests.helpers.score import write_reference, write_run

COUNTER = {"energy_method": "counter", "energy_lost_j": 0.0}


def _lines(text: str, title: str) -> list[str]:
    """The body of the table titled ``title`` in the scorer's text output."""
    block = text.split(title, 1)[1].split("\n\n", 1)[0]
    return block.splitlines()[3:]


def test_energy_to_target_per_run_and_group(tmp_path, capsys):
    results = tmp_path / "results"
    # The demo presets evaluate after every epoch, target 35 %: run a reaches it at its second
    # epoch, run b at its first.
    a = write_run(results, "demo_X3D_M", "a", val_top1=[5.0, 40.0, 45.0],
                  energy_j=[1000.0, 2000.0, 3000.0], extra=COUNTER)
    write_run(results, "demo_X3D_M", "b", val_top1=[40.0, 41.0, 42.0],
              energy_j=[1500.0, 1500.0, 1500.0], extra={**COUNTER, "energy_lost_j": 250.0})
    write_run(results, "demo_MVIT_B_16x4", "old", val_top1=[80.0])  # not measured
    run = load_run(a, [])
    assert energy_to_target_j(run) == 3000.0
    # Clips per joule to the target: (50 clips/s x 80 s + 55 clips/s x 160 s) / 3000 J.
    assert abs(clips_per_joule(run) - (50 * 80 + 55 * 160) / 3000.0) < 1e-9
    reference = write_reference(tmp_path / "ref.yaml", {"demo_X3D_M": 7456.88})
    assert main(["--results", str(results), "--reference", str(reference),
                 "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    runs = {line.split()[1]: line for line in _lines(out, "Energy per run")}
    assert "counter" in runs["a"] and " 3.00 " in runs["a"] and " 6.00 " in runs["a"]
    assert "4.267" in runs["a"]
    assert " 1.50 " in runs["b"] and " 0.25 " in runs["b"]  # lost work, reported
    assert runs["old"].count("not measured") == 4  # method, to target, all epochs, CPU
    groups = _lines(out, "Energy to target per group")
    (x3d,) = [line for line in groups if line.split()[0] == "demo_X3D_M"]
    assert "median" in x3d and " 2.25 " in x3d  # the median of 3.00 and 1.50 kJ
    (mvit,) = [line for line in groups if line.split()[0].startswith("demo_MVIT")]
    assert "not measured" in mvit
    assert "energy ratio: none: no reference records an energy to the target" in out
    assert "## Energy to target per group" in (tmp_path / "score.md").read_text()


def test_a_results_folder_of_an_older_format_reads_as_not_measured(tmp_path, capsys):
    results = tmp_path / "results"
    folder = write_run(results, "X3D_M", "v2", val_top1=[25.0])
    old_header = ("epoch,elapsed_s,train_s,eval,eval_s,untimed_s,lr,train_loss,train_top1,"
                  "val_top1,val_top1_clips,val_top5,val_video_top1,clips_per_s,"
                  "data_wait_frac,peak_mem_mb")
    (folder / "epochs.csv").write_text(
        f"{old_header}\n0,100.0,80.0,scheduled,10.0,0.0,0.01,2.5,27.5,25.0,25.0,50.0,25.0,"
        "50,0.5,1024\n")
    run = load_run(Path(folder), [])
    assert energy_to_target_j(run) is None and clips_per_joule(run) is None
    reference = write_reference(tmp_path / "ref.yaml", {"X3D_M": 7456.88})
    assert main(["--results", str(results), "--reference", str(reference),
                 "--out", str(tmp_path)]) == 0
    captured = capsys.readouterr()
    assert "warning" not in captured.err
    assert NOT_MEASURED_LINE in captured.out  # one line, not a table of empty cells
