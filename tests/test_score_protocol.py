"""Scheduled evaluations only reach the target; older protocols and incomplete records are
labelled non-compliant with their reason, never read as compliant."""


import pytest
import yaml

from formats.results import PROTOCOL_VERSION
from score.load import load_run
from score.record import PROTOCOL_1
from tests.helpers.score import EPOCH_HEADER_V2, STORE, reaching_at, write_run

# X3D-M's 20 epochs: scheduled evaluations after epochs 10 and 20 (0-based 9 and 19), extra
# ones (eval_every, off the clock) after epochs 5 and 15.
EVALS = {4: ("extra", 19.0), 9: ("scheduled", 19.5), 14: ("extra", 30.0), 19: ("scheduled", 22.0)}
PROTOCOL_2_CURVE = {
    "val_top1": [EVALS.get(e, ("", None))[1] for e in range(20)],
    "elapsed_s": [100.0 * (e + 1) for e in range(20)],
    "evals": [EVALS.get(e, ("", None))[0] for e in range(20)],
}


def test_only_a_scheduled_evaluation_reaches_the_target(tmp_path):
    # The extra evaluation after epoch 15 is far above the target; it does not count.
    warnings: list[str] = []
    run = load_run(write_run(tmp_path, **PROTOCOL_2_CURVE), warnings)
    assert (run.t_bench_s, run.crossing_top1, run.status) == (2000.0, 22.0, "reached")
    assert run.compliance_issues == []
    assert warnings == []  # rows without an evaluation are normal
    assert run.epochs["val_top1"].isna().sum() == 16


def test_extra_evaluations_above_the_target_never_make_a_run_reach_it(tmp_path):
    curve = dict(PROTOCOL_2_CURVE, val_top1=[*PROTOCOL_2_CURVE["val_top1"][:19], 20.0])
    run = load_run(write_run(tmp_path, **curve), [])
    assert (run.t_bench_s, run.status) == (None, "not converged")


def test_protocol_1_files_count_every_evaluation_and_are_labelled(tmp_path):
    run = load_run(write_run(tmp_path, protocol=1, **reaching_at(1000.0)), [])
    assert run.t_bench_s == 1000.0 and run.protocol == 1
    assert run.compliance_issues == [PROTOCOL_1]
    assert run.compliance == f"non-compliant ({PROTOCOL_1})"
    assert "rerun with this version" in run.compliance


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (1, PROTOCOL_1),
        (PROTOCOL_VERSION + 1, f"protocol {PROTOCOL_VERSION + 1} (newer than this scorer's"),
        ("2", "protocol version unreadable"),
        (2.5, "protocol version unreadable"),
    ],
)
def test_protocol_other_than_this_version_is_non_compliant(tmp_path, value, reason):
    run = load_run(write_run(tmp_path, extra={"protocol": value}, **reaching_at(1000.0)), [])
    assert len(run.compliance_issues) == 1
    assert run.compliance_issues[0].startswith(reason)


def test_protocol_2_record_with_a_protocol_1_table_is_labelled(tmp_path):
    csv = EPOCH_HEADER_V2.replace(",eval,", ",") + "\n"
    csv += "0,500,1,1,0,0.01,2,20,25.0,25.0,40,25,50,0.5,1\n"
    run = load_run(write_run(tmp_path, val_top1=[25.0], epochs_csv=csv), [])
    assert run.t_bench_s == 500.0  # read as its own protocol did
    assert run.compliance_issues == ["epochs.csv has no eval column"]


def test_damaged_eval_cells_are_one_warning_and_never_reach(tmp_path):
    csv = "\n".join([
        EPOCH_HEADER_V2,
        "0,100,80,sched,1,0,0.01,2,20,30.0,30.0,40,30,50,0.5,1",   # unknown eval value
        "1,200,80,scheduled,1,0,0.01,2,20,,,,,50,0.5,1",           # scheduled, no value
        "2,300,80,,,0,0.01,2,20,,,,,50,0.5,1",                     # no evaluation: normal
        "3,400,80,scheduled,1,0,0.01,2,20,25.0,25.0,40,25,50,0.5,1",
    ]) + "\n"
    folder = write_run(tmp_path, val_top1=[25.0], elapsed_s=[400.0], epochs_csv=csv)
    warnings: list[str] = []
    run = load_run(folder, warnings)
    assert run.t_bench_s == 400.0
    [warning] = warnings
    assert str(folder / "epochs.csv") in warning
    assert "1 row(s) with an eval value other than scheduled" in warning
    assert "1 scheduled evaluation(s) without a usable val_top1" in warning


SMALL_STORE = {**STORE, "short_side": 128, "videos": {"train": 600, "val": 50}}


@pytest.mark.parametrize(
    ("extra", "issues"),
    [
        # The recorded reasons and flags are not read: the facts decide.
        ({"compliance_issues": ["store settings differ: short_side 128"]}, []),
        ({"compliance_issues": [""], "compliant": True, "git_dirty": True}, ["git dirty"]),
        # A store record that claims Kinetics-20 at other settings and with other counts.
        ({"compliance_issues": [], "compliant": True, "store": SMALL_STORE},
         ["store settings differ: short_side 128 (the workload's: short_side 320, "
          "jpeg_quality 90)", "store holds 600 train + 50 val videos and 0 failed, its dataset "
          "check expected 1376"]),
        ({"compliance_issues": [], "compliant": True,
          "attempts": [{"machine": "m", "git_commit": "c", "git_dirty": True}]}, ["git dirty"]),
        ({"compliance_issues": [], "compliant": False}, ["marked non-compliant in run.json"]),
        ({"store": None}, ["store not recorded"]),
    ],
)
def test_compliance_is_recomputed_from_the_facts_never_read_from_flags(tmp_path, extra, issues):
    folder = write_run(tmp_path, extra=extra, **reaching_at(1000.0))
    assert load_run(folder, []).compliance_issues == issues


def test_a_config_changed_by_hand_is_not_compliant_whatever_run_json_says(tmp_path):
    folder = write_run(tmp_path, extra={"compliance_issues": [""], "compliant": True},
                       **reaching_at(1000.0))
    config = yaml.safe_load((folder / "config.yaml").read_text())
    (folder / "config.yaml").write_text(yaml.safe_dump({**config, "lr": 0.5, "epochs": 12}))
    issues = load_run(folder, []).compliance_issues
    assert issues[0] == "changed: epochs, lr"
    assert "epochs.csv has epoch(s) 12, 13, 14, 15, 16 and 3 more past config.yaml's 12 epochs" \
        in issues
    (folder / "config.yaml").write_text("lr: [unclosed\n")
    assert load_run(folder, []).compliance_issues[0].startswith("config.yaml unusable")
