"""Every run is classified (reached, not converged, stopped, abandoned, in progress), and
stopped and abandoned runs count as missed runs in their group, as not-converged ones do."""

import os
import time

import pytest

from formats.results import ABANDONED_AFTER_S, HEARTBEAT_FILE, RUN_FILE
from score.load import load_results, load_run
from score.stats import group_models
from tests.helpers.score import NEVER_REACHING, reaching_at, write_run

OLD = ABANDONED_AFTER_S + 60  # seconds: just past the limit


def _age(path, seconds: float) -> None:
    then = time.time() - seconds
    os.utime(path, (then, then))


def test_each_status(tmp_path):
    def status(run_id: str, **kwargs) -> str:
        return load_run(write_run(tmp_path, run_id=run_id, **kwargs), []).status

    assert status("reached", **reaching_at(100.0)) == "reached"
    # Reached at a scheduled evaluation and still training: its t_bench is fixed.
    assert status("reached-running", finished=False, **reaching_at(100.0)) == "reached"
    assert status("below", **NEVER_REACHING) == "not converged"
    assert status("nan", finished=False, state="stopped", **NEVER_REACHING) == "stopped"
    assert status("alive", finished=False, **NEVER_REACHING) == "in progress"
    assert status("recent", finished=False, heartbeat_age_s=ABANDONED_AFTER_S - 600,
                  **NEVER_REACHING) == "in progress"
    assert status("gone", finished=False, heartbeat_age_s=OLD, **NEVER_REACHING) == "abandoned"
    # Stopped by Ctrl-C or SIGTERM and not resumed: not running, however fresh its heartbeat.
    assert status("ctrl-c", finished=False, state="interrupted", **NEVER_REACHING) == \
        "abandoned"


def test_without_a_heartbeat_the_age_of_run_json_decides(tmp_path):
    fresh = write_run(tmp_path, run_id="fresh", finished=False, **NEVER_REACHING)
    (fresh / HEARTBEAT_FILE).unlink()
    old = write_run(tmp_path, run_id="old", finished=False, protocol=1, **NEVER_REACHING)
    _age(old / RUN_FILE, OLD)
    assert load_run(fresh, []).status == "in progress"
    assert load_run(old, []).status == "abandoned"


def test_a_fresh_heartbeat_outweighs_an_old_run_json(tmp_path):
    folder = write_run(tmp_path, finished=False, **NEVER_REACHING)
    _age(folder / RUN_FILE, 10 * ABANDONED_AFTER_S)
    assert load_run(folder, []).status == "in progress"


def test_unknown_state_warns_and_falls_back_on_finished(tmp_path):
    folder = write_run(tmp_path, extra={"state": "paused"}, **NEVER_REACHING)
    warnings: list[str] = []
    assert load_run(folder, warnings).status == "not converged"
    [warning] = warnings
    assert str(folder / RUN_FILE) in warning and "'paused'" in warning


def test_five_runs_with_two_crashes_are_not_scored_on_the_survivors(tmp_path):
    for i, t in enumerate([1000.0, 1100.0, 1200.0]):
        write_run(tmp_path, run_id=f"ok{i}", **reaching_at(t))
    write_run(tmp_path, run_id="nan", finished=False, state="stopped", **NEVER_REACHING)
    write_run(tmp_path, run_id="crash", finished=False, heartbeat_age_s=OLD, **NEVER_REACHING)
    write_run(tmp_path, run_id="live", finished=False, **NEVER_REACHING)  # not counted
    [result] = group_models(load_results(tmp_path, []))
    assert (result.method, result.t_bench_s) == ("olympic mean", None)
    assert result.missed == 2
    assert "2 of 5 runs did not reach the target" in "; ".join(result.notes)
    assert "missed: 1 stopped on NaN/inf, 1 abandoned" in result.notes
    assert "1 run(s) in progress (not counted)" in result.notes


@pytest.mark.parametrize("kind", ["stopped", "abandoned", "not converged"])
def test_a_stopped_or_abandoned_run_counts_as_a_not_converged_one_does(tmp_path, kind):
    for i, t in enumerate([100.0, 200.0, 300.0]):
        write_run(tmp_path, run_id=f"ok{i}", **reaching_at(t))
    options = {"stopped": {"finished": False, "state": "stopped"},
               "abandoned": {"finished": False, "heartbeat_age_s": OLD},
               "not converged": {}}[kind]
    write_run(tmp_path, run_id="missed", **options, **NEVER_REACHING)
    [result] = group_models(load_results(tmp_path, []))
    assert result.t_bench_s == pytest.approx(250.0)  # median of 100, 200, 300, never
    assert "1 of 4 runs did not reach the target (counted as slowest)" in result.notes
    assert result.count(kind) == 1
