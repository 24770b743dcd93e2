"""Launchers: srun without torchrun is refused in one line; torchrun's restart markers do not
pile up under the results folder."""

from __future__ import annotations

import os
import time

from tests.helpers.train import ONE_THREAD_ENV, TINY, train_cli
from train.rundir import attempts


def test_srun_starting_copies_without_torchrun_is_refused_with_the_launch_to_use(
        tiny_store, tmp_path):
    # What srun -n 4 sets for the second of its 4 tasks (no torchrun: no RANK).
    slurm = {"SLURM_PROCID": "1", "SLURM_LOCALID": "1", "SLURM_NTASKS": "4",
             "SLURM_STEP_NUM_TASKS": "4", "SLURM_JOB_ID": "77"}
    done = train_cli("--config", str(TINY), "--data", str(tiny_store), "--out", str(tmp_path),
                     env={**ONE_THREAD_ENV, **slurm})
    assert done.returncode == 2
    (line,) = [line for line in done.stderr.splitlines() if line.strip()]
    assert line.startswith("error: started by srun as 4 separate copies (SLURM_STEP_NUM_TASKS=4)")
    assert "srun --ntasks-per-node=1 torchrun --nnodes=$SLURM_NNODES" in line
    assert not (tmp_path / "test_tiny").exists()


def test_a_batch_scripts_single_process_is_not_refused(tiny_store, tmp_path):
    # Inside an allocation of 4 tasks, the batch script itself runs one copy: no step tasks.
    done = train_cli("--config", str(TINY), "--data", str(tiny_store), "--out", str(tmp_path),
                     "--set", "epochs=1",
                     env={**ONE_THREAD_ENV, "SLURM_NTASKS": "4", "SLURM_PROCID": "0"})
    assert done.returncode == 0, done.stderr[-2000:]


def test_a_finished_launch_leaves_no_marker_and_old_markers_are_removed(tiny_store, tmp_path):
    markers = tmp_path / attempts.MARKER_DIR
    markers.mkdir()
    old, recent = markers / "old-launch.json", markers / "recent-launch.json"
    for path in (old, recent):
        path.write_text('{"run_dir": "/gone"}\n')
    week_ago = time.time() - attempts.MARKER_KEPT_S - 60
    os.utime(old, (week_ago, week_ago))
    done = train_cli("--config", str(TINY), "--data", str(tiny_store), "--out", str(tmp_path),
                     "--set", "epochs=1", torchrun=1)
    assert done.returncode == 0, done.stderr[-2000:]
    assert sorted(p.name for p in markers.iterdir()) == ["recent-launch.json"]
