"""A run folder that disagrees with itself (hand-edited or damaged) is labelled, never scored
clean: rows missing or repeated, run.json's epochs_done, t_target_s or eval_epochs against
epochs.csv, evaluations marked scheduled off the run's own schedule (config.yaml)."""

from __future__ import annotations

import json

import pytest
import yaml

from score.load import COMPLIANT, load_run
from tests.helpers.score import reaching_at, write_run


def _edit_run_json(folder, **changes) -> None:
    record = json.loads((folder / "run.json").read_text())
    (folder / "run.json").write_text(json.dumps({**record, **changes}))


def _drop_row(folder, epoch: int) -> None:
    lines = (folder / "epochs.csv").read_text().splitlines()
    (folder / "epochs.csv").write_text("\n".join(
        line for line in lines if not line.startswith(f"{epoch},")) + "\n")


def _repeat_row(folder, epoch: int) -> None:
    lines = (folder / "epochs.csv").read_text().splitlines()
    row = next(line for line in lines if line.startswith(f"{epoch},"))
    (folder / "epochs.csv").write_text("\n".join([*lines, row]) + "\n")


def _mark(folder, epoch: int, kind: str) -> None:
    """Set the eval cell of one row (the fourth column, formats.results.EPOCH_COLUMNS)."""
    lines = (folder / "epochs.csv").read_text().splitlines()
    assert lines[0].split(",")[3] == "eval"
    for i, line in enumerate(lines):
        if line.startswith(f"{epoch},"):
            cells = line.split(",")
            cells[3] = kind
            lines[i] = ",".join(cells)
    (folder / "epochs.csv").write_text("\n".join(lines) + "\n")


def _set_epoch(folder, epoch: int, value: str) -> None:
    """Write ``value`` into the epoch cell of epoch ``epoch``'s row."""
    lines = (folder / "epochs.csv").read_text().splitlines()
    lines = [value + line[len(f"{epoch}"):] if line.startswith(f"{epoch},") else line
             for line in lines]
    (folder / "epochs.csv").write_text("\n".join(lines) + "\n")


def _edit_config(folder, **changes) -> None:
    config = yaml.safe_load((folder / "config.yaml").read_text())
    (folder / "config.yaml").write_text(yaml.safe_dump({**config, **changes}))


def test_a_consistent_folder_stays_compliant(tmp_path):
    assert load_run(write_run(tmp_path, **reaching_at(500.0)), []).compliance == COMPLIANT


@pytest.mark.parametrize(("damage", "issue"), [
    (lambda f: _edit_run_json(f, t_target_s=42.0),
     "run.json t_target_s 42.0 but epochs.csv reaches the target at 500 s"),
    (lambda f: _edit_run_json(f, t_target_s=None),
     "run.json t_target_s None but epochs.csv reaches the target at 500 s"),
    (lambda f: _edit_run_json(f, epochs_done=12),
     "run.json says 12 epochs done, epochs.csv has 20"),
    (lambda f: _drop_row(f, 0), "epochs.csv lacks epoch(s) 0"),
    (lambda f: _repeat_row(f, 1), "epochs.csv repeats epoch(s) 1"),
    (lambda f: _mark(f, 4, "scheduled"), "epochs.csv marks epoch(s) 4 scheduled, but config.yaml "
     "(epochs 20, eval_period 10) schedules 9, 19 only"),
    (lambda f: _mark(f, 9, "extra"), "epochs.csv lacks the scheduled evaluation after epoch(s) 9"),
    (lambda f: _edit_config(f, epochs=10), "epochs.csv has epoch(s) 10, 11, 12, 13, 14 and 5 more "
     "past config.yaml's 10 epochs"),
    (lambda f: _edit_config(f, eval_period="ten"),
     "config.yaml epochs or eval_period unreadable: the evaluation schedule is unknown"),
    (lambda f: _edit_run_json(f, eval_epochs=[4, 19]),
     "run.json eval_epochs [4, 19] but config.yaml schedules [9, 19]"),
    # Epoch cells no row can have: once a memory blow-up (1e308: a set of range(1e308)).
    (lambda f: _set_epoch(f, 5, "1e308"),
     "epochs.csv has 1 row(s) whose epoch is not a whole number from 0 to 99999"),
    (lambda f: _set_epoch(f, 5, "-5"),
     "epochs.csv has 1 row(s) whose epoch is not a whole number from 0 to 99999"),
    (lambda f: _set_epoch(f, 5, "4.5"),
     "epochs.csv has 1 row(s) whose epoch is not a whole number from 0 to 99999"),
])
def test_a_folder_that_disagrees_with_itself_is_labelled(tmp_path, damage, issue):
    folder = write_run(tmp_path, **reaching_at(500.0))
    damage(folder)
    run = load_run(folder, [])
    assert issue in run.compliance_issues and run.compliance != COMPLIANT


def test_a_run_stopped_at_the_target_before_its_last_epoch_is_consistent(tmp_path):
    folder = write_run(tmp_path, val_top1=[None] * 9 + [30.0],
                       elapsed_s=[100.0 * (e + 1) for e in range(10)])
    run = load_run(folder, [])
    assert run.compliance == COMPLIANT and run.t_bench_s == 1000.0


def test_a_run_killed_between_its_row_and_its_run_json_is_not_called_inconsistent(tmp_path):
    folder = write_run(tmp_path, finished=False, **reaching_at(500.0))
    _edit_run_json(folder, epochs_done=19, t_target_s=None, reached=False)  # one epoch behind
    assert not [i for i in load_run(folder, []).compliance_issues if "run.json" in i]


def test_a_long_hostile_table_is_checked_in_bounded_time(tmp_path):
    """20 000 rows all marked scheduled against a config of 100 000 epochs evaluated every
    7th: each row against the schedule is a set lookup (as a list scan it was 10^8 steps)."""
    folder = write_run(tmp_path, **reaching_at(500.0))
    _edit_config(folder, epochs=100_000, eval_period=7)
    lines = (folder / "epochs.csv").read_text().splitlines()
    template = lines[1].split(",")
    rows = [",".join([str(e), *template[1:3], "scheduled", *template[4:]]) for e in range(20_000)]
    (folder / "epochs.csv").write_text("\n".join([lines[0], *rows]) + "\n")
    issues = load_run(folder, []).compliance_issues
    assert ("epochs.csv marks epoch(s) 0, 1, 2, 3, 4 and 17138 more scheduled, but config.yaml "
            "(epochs 100000, eval_period 7) schedules 6, 13, 20, 27, 34 and 14281 more only") \
        in issues
