"""A run as an MLPerf Training style log (``:::MLLOG`` lines), and the check of such a log.

The lines are written by the ``mlperf-logging`` package's mllog: submission info (the system
as platform), run_start, one epoch_start/epoch_stop per epoch, eval_start/eval_accuracy/
eval_stop at each scheduled evaluation (extra evaluations are off the clock and left out),
the target, and run_stop with its status. As in MLPerf, the clock stops at the target: a run
that reached it ends at that evaluation with status "success" (run_stop - run_start is the
run's t_bench); one that did not ends at its last epoch with status "aborted".

configs/mlperf_rules.yaml is the rules file for mlperf-logging's compliance checker. The
checker executes the code written in a rules file, so `check_log` only ever passes it the
project's own file.
"""

from __future__ import annotations

import io
import logging
import os
import subprocess
import sys
import tempfile
from datetime import datetime
from pathlib import Path

from mlperf_logging.mllog import constants, mllog

from formats.results import EVAL_SCHEDULED, RUN_FILE
from score import ScoreError
from score.load import Run
from score.readers import read_json_object

ROOT = Path(__file__).resolve().parent.parent
RULES_FILE = ROOT / "configs" / "mlperf_rules.yaml"
TARGET_KEY = "target_accuracy"  # not an mllog constant: MLPerf fixes targets in its rules
ORG = "Video Model Benchmark"
CHECK_TIMEOUT_S = 120


def _start_ms(run: Run) -> int:
    """The run's first launch (run.json attempts), else its run.json's time minus its length."""
    try:
        started = read_json_object(run.path / RUN_FILE, required=True)["attempts"][0]["started"]
        return int(datetime.fromisoformat(started.replace("Z", "+00:00")).timestamp() * 1000)
    except (ScoreError, ValueError, KeyError, IndexError, TypeError, AttributeError):
        last = float(run.epochs["elapsed_s"].max()) if len(run.epochs) else 0.0
        try:
            return int(((run.path / RUN_FILE).stat().st_mtime - last) * 1000)
        except OSError:
            return 0


def _scheduled(run: Run) -> list[bool]:
    """Which rows carry a scheduled evaluation (protocol 1: every row with an accuracy)."""
    epochs = run.epochs
    if (run.protocol or 1) >= 2 and "eval" in epochs:
        return list(epochs["eval"] == EVAL_SCHEDULED)
    return list(epochs["val_top1"].notna())


def mlperf_log(run: Run, system: str) -> str:
    """The run's MLPerf style log as text (one ``:::MLLOG`` line per event)."""
    stream = io.StringIO()
    logger = logging.Logger(f"mlperf-export-{id(stream)}")  # private: no global handlers
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger.addHandler(handler)
    log = mllog.MLLogger(logger=logger, root_dir=str(ROOT))  # "file": score/mlperf.py
    t0 = _start_ms(run)
    log.event(constants.SUBMISSION_ORG, ORG, time_ms=t0)
    log.event(constants.SUBMISSION_PLATFORM, system or run.machine, time_ms=t0)
    log.event(constants.SUBMISSION_DIVISION, constants.OPEN, time_ms=t0)
    log.event(constants.SUBMISSION_STATUS, constants.RESEARCH, time_ms=t0)
    log.event(constants.SUBMISSION_BENCHMARK, run.config, time_ms=t0)
    log.event(TARGET_KEY, run.target_top1, time_ms=t0)
    log.event(constants.SEED, run.run_id, time_ms=t0)
    log.start(constants.INIT_START, time_ms=t0)
    log.end(constants.INIT_STOP, time_ms=t0)
    log.start(constants.RUN_START, time_ms=t0)
    stop_ms, status = t0, constants.ABORTED
    for (_, row), scheduled in zip(run.epochs.iterrows(), _scheduled(run), strict=True):
        epoch = int(row["epoch"]) if row["epoch"] == row["epoch"] else 0  # NaN: damaged
        end = t0 + int(1000 * float(row["elapsed_s"]))
        train_s = float(row["train_s"])
        begin = end - int(1000 * train_s) if train_s == train_s else stop_ms  # NaN: unknown
        meta = {constants.EPOCH_NUM: epoch}
        log.start(constants.EPOCH_START, metadata=meta, time_ms=max(stop_ms, min(begin, end)))
        log.end(constants.EPOCH_STOP, metadata=meta, time_ms=end)
        stop_ms = end
        if scheduled and row["val_top1"] == row["val_top1"]:
            accuracy = float(row["val_top1"])
            log.start(constants.EVAL_START, metadata=meta, time_ms=end)
            log.event(constants.EVAL_ACCURACY, accuracy, metadata=meta, time_ms=end)
            log.end(constants.EVAL_STOP, metadata=meta, time_ms=end)
            if accuracy >= run.target_top1:
                status = constants.SUCCESS
                break  # MLPerf's clock stops at the target
    log.end(constants.RUN_STOP, metadata={constants.STATUS: status}, time_ms=stop_ms)
    return stream.getvalue()


def check_log(path: Path) -> tuple[bool, str]:
    """(passes, the checker's messages) for an MLPerf log, with configs/mlperf_rules.yaml."""
    with tempfile.TemporaryDirectory() as folder:
        output = Path(folder) / "checker.log"
        command = [sys.executable, "-m", "mlperf_logging.compliance_checker", "--usage",
                   "training", "--ruleset", "5.1.0", "--config", str(RULES_FILE),
                   "--log_output", str(output), str(Path(path).resolve())]
        done = subprocess.run(command, capture_output=True, text=True, cwd=folder,
                              timeout=CHECK_TIMEOUT_S, env=os.environ | {"PYTHONPATH": ""})
    return done.returncode == 0, (done.stdout + done.stderr).strip()
