"""Damaged and hand-edited result files: skipped or cleaned with a one-line warning, no crash."""

from pathlib import Path

import pytest

from score import ScoreError
from score.load import load_results, load_run
from score.reference import read_reference_file
from tests.helpers.score import EPOCH_HEADER, reaching_at, write_reference, write_run


def _warnings_for(results, expected_runs: int) -> list[str]:
    warnings: list[str] = []
    runs = load_results(results, warnings)
    assert len(runs) == expected_runs
    assert all("\n" not in warning for warning in warnings)
    return warnings


def test_garbage_cells_nan_negative_times_and_disorder_are_cleaned(tmp_path):
    csv = "\n".join([
        EPOCH_HEADER,
        "2,300,1,1,0.01,2,20,25.0,40,25,60,0.3,1",      # out of order, above target
        "0,100,1,1,0.01,2,20,abc,40,25,50,0.5,1",       # non-numeric accuracy
        "1,-5,1,1,0.01,2,20,90.0,40,25,55,0.4,1",       # negative time: row dropped
        "x,,1,1,0.01,2,20,95.0,40,25,55,0.4,1",          # no time at all
        "3,NaN,1,1,0.01,2,20,96.0,40,25,55,0.4,1",
        "1,250,1,1,0.01,2,20,21.0,40,25,55,7.5,1",      # first crossing; wait share invalid
        "4,400,1,1,0.01,2,20,150.0,40,25,inf,0.2,1",    # accuracy above 100
        "5,500,1,1,0.01,2,20,30.0,40,25,60,0.2,1,extra,fields",
    ]) + "\n"
    folder = write_run(tmp_path, val_top1=[21.0], elapsed_s=[250.0], epochs_csv=csv, protocol=1)
    warnings: list[str] = []
    run = load_run(folder, warnings)
    assert run.t_bench_s == 250.0
    assert list(run.epochs["elapsed_s"]) == [100.0, 250.0, 300.0, 400.0]
    assert run.epochs["data_wait_frac"].isna().sum() == 1
    [warning] = warnings
    assert str(folder / "epochs.csv") in warning
    for problem in ("zero or negative elapsed_s", "out of time order", "too many fields",
                    "1 val_top1 value(s) not a number", "val_top1 value(s) outside"):
        assert problem in warning


def test_missing_columns_and_unreadable_files_skip_only_that_run(tmp_path):
    write_run(tmp_path, run_id="good", **reaching_at(1000.0))
    write_run(tmp_path, run_id="no-columns", val_top1=[21.0], epochs_csv="epoch,lr\n0,0.1\n")
    write_run(tmp_path, run_id="empty", val_top1=[21.0], epochs_csv="")
    write_run(tmp_path, run_id="binary", val_top1=[21.0],
              epochs_csv="\x00\x01\x02,\"unterminated\n")
    bad_json = write_run(tmp_path, run_id="bad-json", **reaching_at(900.0))
    (bad_json / "run.json").write_text("{not json")
    no_json = write_run(tmp_path, run_id="no-json", **reaching_at(900.0))
    (no_json / "run.json").unlink()
    no_csv = write_run(tmp_path, run_id="no-csv", **reaching_at(900.0))
    (no_csv / "epochs.csv").unlink()
    list_json = write_run(tmp_path, run_id="list-json", **reaching_at(900.0))
    (list_json / "run.json").write_text("[1, 2]")

    warnings = _warnings_for(tmp_path, expected_runs=1)
    text = "\n".join(warnings)
    assert "missing column(s) elapsed_s, val_top1" in text
    assert str(tmp_path / "X3D_M" / "empty" / "epochs.csv") in text
    for name in ("binary", "bad-json", "no-json", "no-csv", "list-json"):
        assert f"/{name}/" in text
    assert len(warnings) == 7
    assert all(warning.endswith("run skipped") for warning in warnings)


def test_header_only_csv_is_a_run_with_no_epochs_yet(tmp_path):
    write_run(tmp_path, val_top1=[], finished=False, epochs_csv=EPOCH_HEADER + "\n")
    [run] = load_results(tmp_path, [])
    assert run.status == "in progress"
    assert len(run.epochs) == 0


def test_run_json_with_bad_fields_is_skipped_with_a_message(tmp_path):
    folder = write_run(tmp_path, **reaching_at(1000.0))
    text = (folder / "run.json").read_text().replace('"gpus": 4', '"gpus": "four"')
    (folder / "run.json").write_text(text)
    [warning] = _warnings_for(tmp_path, expected_runs=0)
    assert "'gpus' missing or not a number" in warning


def test_run_json_disagreeing_with_epochs_csv_warns(tmp_path):
    folder = write_run(tmp_path, **reaching_at(1000.0))
    text = (folder / "run.json").read_text().replace('"t_target_s": 1000.0', '"t_target_s": 7.0')
    (folder / "run.json").write_text(text)
    [warning] = _warnings_for(tmp_path, expected_runs=1)
    assert "t_target_s 7.0 s but epochs.csv reaches the target 1000.0 s" in warning


def test_missing_results_folder_is_a_user_error(tmp_path):
    with pytest.raises(ScoreError, match="results folder not found"):
        load_results(tmp_path / "nowhere", [])


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("gpus: 4\n", "'t_ref_s' must map"),
        ("gpus: 0\nt_ref_s: {X3D_M: 1}\n", "'gpus' must be a positive whole number"),
        ("- a\n- b\n", "must be a mapping"),
        ("gpus: 4\nt_ref_s: {X3D_M: -1}\n", "no usable t_ref_s entry"),
        ("gpus: [4\n", "not valid YAML"),
    ],
)
def test_unusable_reference_file_is_a_user_error(tmp_path, text, message):
    path = tmp_path / "ref.yaml"
    path.write_text(text)
    with pytest.raises(ScoreError, match=message):
        read_reference_file(path, [])


def test_reference_entry_with_bad_time_is_ignored_with_a_warning(tmp_path):
    path = write_reference(tmp_path / "ref.yaml", {"X3D_M": 100.0, "MVIT_B_16x4": "slow"})
    warnings: list[str] = []
    reference = read_reference_file(path, warnings)
    assert reference.t_ref_s == {"X3D_M": 100.0}
    [warning] = warnings
    assert str(path) in warning and "MVIT_B_16x4" in warning


def test_shipped_reference_holds_the_workload_times():
    reference = read_reference_file(
        Path(__file__).parent.parent / "configs" / "reference.yaml", []
    )
    assert reference.t_ref_s == {"X3D_M": 7456.88, "MVIT_B_16x4": 7725.12}
    assert reference.gpus == {"X3D_M": 4, "MVIT_B_16x4": 4}
    assert "TITAN RTX" in reference.machine
