"""t_bench of a run, the aggregate of a group (olympic mean / median) and the score formula."""

import statistics

import pytest

from score.load import load_results, load_run
from score.reference import apply_reference, read_reference_file
from score.stats import aggregate, benchmark_scores, group_models
from tests.helpers.score import NEVER_REACHING, reaching_at, write_reference, write_run


def test_t_bench_is_the_first_crossing_not_the_best_epoch(tmp_path):
    # The demo preset evaluates after every epoch (target 35 %): crosses it at 200 s, dips
    # below, then peaks much higher at 400 s.
    folder = write_run(tmp_path, "demo_X3D_M", val_top1=[5.0, 36.0, 30.0, 50.0],
                       elapsed_s=[100.0, 200.0, 300.0, 400.0])
    run = load_run(folder, [])
    assert run.t_bench_s == 200.0
    assert run.status == "reached"


def test_t_bench_counts_an_accuracy_exactly_at_the_target(tmp_path):
    folder = write_run(tmp_path, "demo_X3D_M", val_top1=[10.0, 35.0, 40.0],
                       elapsed_s=[50.0, 90.0, 130.0])
    assert load_run(folder, []).t_bench_s == 90.0


def test_never_reaching_finished_run_is_not_converged_and_unfinished_is_in_progress(tmp_path):
    done = load_run(write_run(tmp_path, run_id="a", **NEVER_REACHING), [])
    running = load_run(write_run(tmp_path, run_id="b", finished=False, **NEVER_REACHING), [])
    assert (done.t_bench_s, done.status) == (None, "not converged")
    assert (running.t_bench_s, running.status) == (None, "in progress")
    assert "in progress" in running.labels


def test_olympic_mean_drops_fastest_and_slowest():
    result = aggregate([700.0, 100.0, 1000.0, 300.0, 200.0], not_converged=0)
    assert result.method == "olympic mean"
    assert result.t_bench_s == pytest.approx((200 + 300 + 700) / 3)  # the median would be 300


def test_olympic_mean_counts_one_non_converged_run_as_slowest():
    result = aggregate([900.0, 100.0, 250.0, 200.0], not_converged=1)
    # Sorted: 100, 200, 250, 900, never -> drop 100 and "never".
    assert result.t_bench_s == pytest.approx((200 + 250 + 900) / 3)
    assert "1 of 5 runs did not reach the target" in result.note


def test_olympic_mean_with_two_non_converged_runs_has_no_score():
    result = aggregate([100.0, 200.0, 300.0, 400.0], not_converged=2)
    assert result.t_bench_s is None
    assert "2 of 6 runs did not reach the target" in result.note


def test_olympic_mean_of_seven_runs_keeps_the_middle_five():
    times = [700.0, 100.0, 500.0, 300.0, 200.0, 600.0, 400.0]
    assert aggregate(times, 0).t_bench_s == pytest.approx((200 + 300 + 400 + 500 + 600) / 5)


def test_median_for_fewer_than_five_runs():
    assert aggregate([1000.0, 100.0, 400.0, 200.0], 0).t_bench_s == pytest.approx(300.0)
    three = aggregate([300.0, 100.0, 200.0], 0)
    assert (three.method, three.t_bench_s) == ("median", 200.0)


def test_median_counts_non_converged_runs_as_slowest_and_flags_the_group():
    flagged = aggregate([100.0, 200.0, 300.0], not_converged=1)
    assert flagged.t_bench_s == pytest.approx(250.0)  # median of 100, 200, 300, never
    assert "1 of 4 runs did not reach the target" in flagged.note
    undefined = aggregate([100.0, 200.0], not_converged=2)
    assert undefined.t_bench_s is None
    assert aggregate([100.0], not_converged=1).t_bench_s is None


def test_single_run_is_shown_as_such():
    assert aggregate([123.0], 0).method == "single run"
    assert aggregate([123.0], 0).t_bench_s == 123.0
    assert aggregate([], 1).t_bench_s is None


def test_group_ignores_runs_in_progress_and_reports_spread(tmp_path):
    for i, t in enumerate([1000.0, 1200.0, 1100.0]):
        write_run(tmp_path, run_id=f"r{i}", **reaching_at(t))
    write_run(tmp_path, run_id="r9", finished=False, **NEVER_REACHING)
    [result] = group_models(load_results(tmp_path, []))
    assert (result.method, result.t_bench_s) == ("median", 1100.0)
    assert (result.count("reached"), result.missed) == (3, 0)
    assert result.count("in progress") == 1
    assert (result.t_min_s, result.t_max_s) == (1000.0, 1200.0)
    assert result.cv == pytest.approx(statistics.stdev([1000, 1200, 1100]) / 1100)


@pytest.mark.parametrize(
    ("gpus", "t_bench", "expected"),
    [
        (1, 7456.88, 4.0),   # same time as the reference with a quarter of its GPUs
        (4, 3728.44, 2.0),   # twice as fast on as many GPUs
        (8, 1864.22, 2.0),   # four times as fast with twice the GPUs
        (8, 7456.88, 0.5),   # as fast as the reference with twice the GPUs
    ],
)
def test_score_formula_for_1_4_and_8_gpus(tmp_path, gpus, t_bench, expected):
    reference = read_reference_file(
        write_reference(tmp_path / "ref.yaml", {"X3D_M": 7456.88}, gpus=4), []
    )
    write_run(tmp_path / "results", gpus=gpus, **reaching_at(t_bench))
    [result] = group_models(load_results(tmp_path / "results", []))
    apply_reference([result], reference, [])
    assert result.score == pytest.approx(expected)


def test_benchmark_is_mean_of_two_models_with_geometric_mean_beside(tmp_path):
    reference = read_reference_file(
        write_reference(tmp_path / "ref.yaml", {"X3D_M": 1000.0, "MVIT_B_16x4": 1000.0}), []
    )
    write_run(tmp_path / "res", "X3D_M", **reaching_at(500.0))           # score 2.0
    write_run(tmp_path / "res", "MVIT_B_16x4", **reaching_at(2000.0))    # score 0.5
    write_run(tmp_path / "res", "X3D_M", "solo", machine="1 x L4", gpus=1,
              **reaching_at(4000.0))                                      # score 1.0, alone
    results = group_models(load_results(tmp_path / "res", []))
    apply_reference(results, reference, [])
    rows = {row.machine: row for row in benchmark_scores(results, ["X3D_M", "MVIT_B_16x4"])}
    assert rows["bench-host: 4 x NVIDIA TITAN RTX"].mean == pytest.approx(1.25)
    assert rows["bench-host: 4 x NVIDIA TITAN RTX"].geomean == pytest.approx(1.0)
    assert rows["bench-host: 1 x L4"].scores["X3D_M"] == pytest.approx(1.0)
    assert rows["bench-host: 1 x L4"].mean is None
    assert "MVIT_B_16x4 not measured" in rows["bench-host: 1 x L4"].note


def test_non_compliant_runs_form_their_own_group(tmp_path):
    for i, t in enumerate([1000.0, 1100.0, 1200.0]):
        write_run(tmp_path, run_id=f"ok{i}", **reaching_at(t))
    write_run(tmp_path, run_id="fast-lr", changed_keys=("lr",), **reaching_at(10.0))
    write_run(tmp_path, run_id="dirty", git_dirty=True, **reaching_at(20.0))
    results = group_models(load_results(tmp_path, []))
    by_class = {r.compliance: r for r in results}
    assert by_class["compliant"].t_bench_s == 1100.0
    assert by_class["compliant"].count("reached") == 3
    assert by_class["non-compliant (changed: lr)"].t_bench_s == 10.0
    assert by_class["non-compliant (git dirty)"].t_bench_s == 20.0
