"""MLPerf style logs of runs, checked by mlperf-logging's compliance checker with the project's
rules file (configs/mlperf_rules.yaml)."""

import json
import tarfile

from score.load import load_run
from score.mlperf import check_log, mlperf_log
from score.package import main as package_main
from tests.helpers.compare import write_system
from tests.helpers.score import NEVER_REACHING, reaching_at, write_run


def _events(text: str) -> list[dict]:
    lines = text.splitlines()
    assert lines and all(line.startswith(":::MLLOG {") for line in lines)
    return [json.loads(line.removeprefix(":::MLLOG ")) for line in lines]


def _log(tmp_path, name: str, **run) -> tuple:
    folder = write_run(tmp_path / "results", "X3D_M", name, **run)
    text = mlperf_log(load_run(folder, []), "node-a")
    path = tmp_path / f"{name}.txt"
    path.write_text(text)
    return path, _events(text)


def test_a_good_run_logs_every_event_and_passes_the_checker(tmp_path):
    # Evaluations at epochs 1 and 3 only; the target is reached at the second one (300 s).
    path, events = _log(tmp_path, "good", val_top1=[10.0, 15.0, 18.0, 21.0, 24.0],
                        elapsed_s=[100.0, 150.0, 200.0, 300.0, 400.0],
                        evals=["", "scheduled", "", "scheduled", "extra"])
    keys = [event["key"] for event in events]
    for key in ("submission_org", "submission_platform", "submission_division",
                "submission_benchmark", "target_accuracy", "run_start", "run_stop"):
        assert keys.count(key) == 1, key
    assert keys.count("epoch_start") == 4 and keys.count("epoch_stop") == 4  # stops at target
    accuracies = [(e["metadata"]["epoch_num"], e["value"]) for e in events
                  if e["key"] == "eval_accuracy"]
    assert accuracies == [(1, 15.0), (3, 21.0)]
    start = next(e for e in events if e["key"] == "run_start")
    stop = next(e for e in events if e["key"] == "run_stop")
    assert stop["metadata"]["status"] == "success"
    assert stop["time_ms"] - start["time_ms"] == 300_000  # MLPerf's time is t_bench
    assert next(e for e in events if e["key"] == "submission_platform")["value"] == "node-a"
    passed, messages = check_log(path)
    assert passed, messages


def test_a_missing_run_stop_fails_the_checker(tmp_path):
    path, _ = _log(tmp_path, "cut", **reaching_at(300.0))
    lines = [line for line in path.read_text().splitlines() if '"key": "run_stop"' not in line]
    path.write_text("\n".join(lines) + "\n")
    passed, messages = check_log(path)
    assert not passed and "run_stop" in messages


def test_a_run_below_the_target_at_its_stop_fails_the_checker(tmp_path):
    path, events = _log(tmp_path, "short", **NEVER_REACHING)
    assert events[-1]["key"] == "run_stop" and events[-1]["metadata"]["status"] == "aborted"
    passed, messages = check_log(path)
    assert not passed and "last_accuracy" in messages
    # A log edited to claim success below the target fails too.
    path.write_text(path.read_text().replace('"status": "aborted"', '"status": "success"'))
    passed, messages = check_log(path)
    assert not passed and "s['last_accuracy'] >= s['target']" in messages


def test_a_package_holds_one_checked_log_per_run(tmp_path):
    write_system(tmp_path / "results", "node-a", 300.0, runs=1)
    archive = tmp_path / "node-a.tar.gz"
    assert package_main(["--results", str(tmp_path / "results"), "--system", "node-a",
                         "--out", str(archive)]) == 0
    with tarfile.open(archive) as tar:
        tar.extractall(tmp_path / "plain", filter="data")
    logs = sorted((tmp_path / "plain" / "node-a" / "mlperf").glob("result_*.txt"))
    assert [p.name for p in logs] == ["result_0.txt", "result_1.txt"]
    benchmarks = set()
    for path in logs:
        passed, messages = check_log(path)
        assert passed, messages
        benchmarks |= {e["value"] for e in _events(path.read_text())
                       if e["key"] == "submission_benchmark"}
    assert benchmarks == {"X3D_M", "MVIT_B_16x4"}
