"""Each score traceable: the store its runs read (fingerprint and counts, different stores
flagged), runs spanning machines or commits labelled, and CPU runs shown as CPU processes."""

import pandas as pd
import pytest

from score.__main__ import main
from score.load import hardware_label, load_results, load_run
from score.plots import _machine_key
from score.stats import group_models
from tests.helpers.score import FINGERPRINT, STORE, reaching_at, write_reference, write_run

# Another compliant store of Kinetics-20 (rebuilt, say, with another JPEG encoder).
OTHER_STORE = dict(STORE, fingerprint="9" * 64, clips={"train": 11480, "val": 900})


def test_group_shows_its_store_fingerprint_and_counts(tmp_path):
    for i in range(2):
        write_run(tmp_path, run_id=f"r{i}", **reaching_at(1000.0 + i))
    [result] = group_models(load_results(tmp_path, []))
    assert result.store == f"{FINGERPRINT[7:19]} (1276+100 videos, 11484+900 clips, 0 failed)"
    assert not any("different stores" in note for note in result.notes)


def test_group_whose_runs_read_different_stores_is_flagged(tmp_path):
    write_run(tmp_path, run_id="a", **reaching_at(1000.0))
    write_run(tmp_path, run_id="b", store=OTHER_STORE, **reaching_at(1100.0))
    write_run(tmp_path, run_id="c", store=dict(STORE, failed_videos=None), **reaching_at(900.0))
    [result] = group_models(load_results(tmp_path, []))
    assert result.store.startswith("DIFFERENT STORES: ")
    assert "999999999999 (1276+100 videos, 11480+900 clips, 0 failed)" in result.store
    assert "(1276+100 videos, 11484+900 clips, ? failed)" in result.store
    assert "runs read 3 different stores" in result.notes


def test_run_on_a_store_other_than_the_workload_is_non_compliant_with_its_reason(tmp_path):
    reason = ("store settings differ: short_side 128, jpeg_quality 50 (the workload's: "
              "short_side 320, jpeg_quality 90)")
    write_run(tmp_path, run_id="ok", **reaching_at(1000.0))
    write_run(tmp_path, run_id="small", compliance_issues=[reason],
              store=dict(STORE, short_side=128, jpeg_quality=50), **reaching_at(200.0))
    groups = {r.compliance: r for r in group_models(load_results(tmp_path, []))}
    assert set(groups) == {"compliant", f"non-compliant ({reason})"}
    assert groups["compliant"].t_bench_s == 1000.0


def test_runs_spanning_machines_or_commits_are_labelled(tmp_path):
    attempts = [
        {"started": "t0", "host": "a", "machine": "4 x A100", "git_commit": "abc1234",
         "git_dirty": False, "restart": 0},
        {"started": "t1", "host": "b", "machine": "4 x H100", "git_commit": "def5678",
         "git_dirty": False, "restart": 0},
    ]
    write_run(tmp_path, run_id="two", attempts=attempts, resumed=True,
              compliance_issues=["spans 2 machines", "spans 2 commits"], **reaching_at(1000.0))
    # The flag alone (attempts unreadable) is enough.
    write_run(tmp_path, run_id="flag", attempts=[], extra={"spans_machines": True},
              **reaching_at(1000.0))
    runs = {run.run_id: run for run in load_results(tmp_path, [])}
    labels = runs["two"].labels
    assert "spans machines (4 x A100 / 4 x H100)" in labels
    assert "spans commits (abc1234 / def5678)" in labels
    assert runs["two"].attempts.count == 2
    assert "spans machines (?)" in runs["flag"].labels
    groups = group_models(list(runs.values()))
    assert any("1 run(s) span machines or commits" in r.notes for r in groups)


@pytest.mark.parametrize(
    ("device", "processes", "nodes", "label"),
    [("cpu", 1, 1, "1 CPU process"), ("cpu", 2, 1, "2 CPU processes"), ("cuda", 1, 1, "1 GPU"),
     ("cuda", 8, 2, "8 GPUs on 2 nodes"), ("xpu", 2, 1, "2 XPU processes"),
     ("", 4, 1, "4 GPUs")],
)
def test_hardware_label(device, processes, nodes, label):
    assert hardware_label(device, processes, nodes) == label


def test_cpu_runs_are_labelled_with_their_process_count_not_as_gpus(tmp_path, capsys):
    results = tmp_path / "results"
    write_run(results, run_id="cpu", device="cpu", gpus=1, machine="2-core box",
              **reaching_at(900.0))
    write_run(results, run_id="gpu", device="cuda", gpus=1, machine="2-core box",
              **reaching_at(100.0))
    cpu = load_run(results / "X3D_M" / "cpu", [])
    assert _machine_key(cpu) == "bench-host: 2-core box (1 CPU process)"  # system: machine
    # CPU and GPU runs of one machine are separate groups.
    assert sorted(r.hardware for r in group_models(load_results(results, []))) == [
        "1 CPU process", "1 GPU"]

    reference = write_reference(tmp_path / "ref.yaml", {"X3D_M": 1000.0, "MVIT_B_16x4": 1.0})
    assert main(["--results", str(results), "--reference", str(reference)]) == 0
    out = capsys.readouterr().out
    cpu_lines = [line for line in out.splitlines() if "CPU" in line]
    assert cpu_lines and all("GPU" not in line for line in cpu_lines)
    table = pd.read_csv(results / "score.csv")
    runs = table[table.row == "run"].set_index("run_id")
    assert (runs.loc["cpu", "device"], runs.loc["cpu", "hardware"]) == ("cpu", "1 CPU process")
    assert runs.loc["gpu", "hardware"] == "1 GPU"
    assert runs.loc["cpu", "store"].startswith(FINGERPRINT[7:19])


def test_runs_on_the_jpeg_and_the_decoded_store_are_one_group_that_names_each_format(
        tmp_path, capsys):
    decoded = dict(STORE, path="data/frames/kinetics20_raw", format="raw")
    write_run(tmp_path, run_id="jpeg", **reaching_at(1000.0))
    write_run(tmp_path, run_id="decoded", store=decoded, **reaching_at(990.0))
    [result] = group_models(load_results(tmp_path, []))
    assert not result.store.startswith("DIFFERENT STORES")  # same pixels, same fingerprint
    reference = write_reference(tmp_path / "ref.yaml", {"X3D_M": 1000.0, "MVIT_B_16x4": 1.0})
    assert main(["--results", str(tmp_path), "--reference", str(reference)]) == 0
    capsys.readouterr()
    table = pd.read_csv(tmp_path / "score.csv")
    runs = table[table.row == "run"].set_index("run_id")
    assert runs.loc["jpeg", "store"].endswith(", jpg store")
    assert runs.loc["decoded", "store"].endswith(", raw store")
