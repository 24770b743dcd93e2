"""Results are grouped by system: two hosts with the same GPUs stay apart, one name on two
machines is flagged (never merged), older runs without a name go by their host, and every
group says how many of its runs reached the target with a 95% interval."""

from __future__ import annotations

import pytest

from score.load import load_results
from score.stats import group_models, wilson_interval
from tests.helpers.score import TITAN, reaching_at, write_run

NEVER = {"val_top1": [10.0, 12.0]}


def test_two_systems_with_the_same_gpus_are_two_groups_and_one_name_on_two_machines_is_flagged(
        tmp_path):
    for i in range(3):
        write_run(tmp_path, run_id=f"a{i}", extra={"system": "node-a"}, **reaching_at(500.0 + i))
    write_run(tmp_path, run_id="b0", extra={"system": "node-b"}, **reaching_at(700.0))
    write_run(tmp_path, run_id="b1", extra={"system": "node-b"}, machine="8 x NVIDIA H100",
              gpus=8, **reaching_at(100.0))
    groups = {(r.runs[0].system, r.machine): r for r in group_models(load_results(tmp_path, []))}
    assert sorted(groups) == [("node-a", f"node-a: {TITAN}"), ("node-b", f"node-b: {TITAN}"),
                              ("node-b", "node-b: 8 x NVIDIA H100")]
    assert [len(groups[k].runs) for k in sorted(groups)] == [3, 1, 1]
    assert not any("is named on" in note for note in groups[("node-a", f"node-a: {TITAN}")].notes)
    for key in [("node-b", f"node-b: {TITAN}"), ("node-b", "node-b: 8 x NVIDIA H100")]:
        assert any(note.startswith("system node-b is named on 2 machines") and "not merged" in note
                   for note in groups[key].notes)


def test_an_older_run_without_a_system_name_is_labelled_with_its_host(tmp_path):
    write_run(tmp_path, **reaching_at(500.0))  # run.json without "system"; system.json's host
    [result] = group_models(load_results(tmp_path, []))
    assert result.runs[0].system == "bench-host" and result.machine == f"bench-host: {TITAN}"


def test_each_group_says_how_many_runs_reached_with_a_wilson_interval(tmp_path):
    for i in range(4):
        write_run(tmp_path, run_id=f"r{i}", **reaching_at(500.0 + i))
    write_run(tmp_path, run_id="miss", **NEVER)
    [result] = group_models(load_results(tmp_path, []))
    low, high = result.reached_interval
    assert (low, high) == pytest.approx(wilson_interval(4, 5))
    # Wilson's 95% interval for 4 of 5, computed by hand: (0.3755, 0.9638).
    assert (low, high) == pytest.approx((0.3755, 0.9638), abs=1e-4)
    assert wilson_interval(5, 5)[1] == pytest.approx(1.0) and wilson_interval(0, 0) is None
