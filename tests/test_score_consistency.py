"""A run folder that disagrees with itself (hand-edited or damaged) is labelled, never scored
clean: rows missing or repeated, run.json's epochs_done or t_target_s against epochs.csv."""

from __future__ import annotations

import json

import pytest

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


def test_a_consistent_folder_stays_compliant(tmp_path):
    assert load_run(write_run(tmp_path, **reaching_at(500.0)), []).compliance == COMPLIANT


@pytest.mark.parametrize(("damage", "issue"), [
    (lambda f: _edit_run_json(f, t_target_s=42.0),
     "run.json t_target_s 42.0 but epochs.csv reaches the target at 500 s"),
    (lambda f: _edit_run_json(f, t_target_s=None),
     "run.json t_target_s None but epochs.csv reaches the target at 500 s"),
    (lambda f: _edit_run_json(f, epochs_done=20), "run.json says 20 epochs done, epochs.csv has 3"),
    (lambda f: _drop_row(f, 0), "epochs.csv lacks epoch(s) 0"),
    (lambda f: _repeat_row(f, 1), "epochs.csv repeats epoch(s) 1"),
])
def test_a_folder_that_disagrees_with_itself_is_labelled(tmp_path, damage, issue):
    folder = write_run(tmp_path, **reaching_at(500.0))
    damage(folder)
    run = load_run(folder, [])
    assert issue in run.compliance_issues and run.compliance != COMPLIANT


def test_a_run_killed_between_its_row_and_its_run_json_is_not_called_inconsistent(tmp_path):
    folder = write_run(tmp_path, finished=False, **reaching_at(500.0))
    _edit_run_json(folder, epochs_done=2, t_target_s=None, reached=False)  # one epoch behind
    assert not [i for i in load_run(folder, []).compliance_issues if "run.json" in i]
