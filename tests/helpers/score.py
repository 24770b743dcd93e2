"""Hand-made result folders for the scorer tests, written exactly as the results format says
(formats/results.py): `<results>/<config>/<run_id>/` with config.yaml, system.json, epochs.csv,
run.json and, for an unfinished run, a heartbeat.

`protocol=2` (the default) writes today's files: an ``eval`` column ("scheduled" on the epochs
the config's own schedule names, empty elsewhere, unless `evals` says otherwise), the store,
the attempts and the compliance reasons in run.json. `protocol=1` writes the files of the
previous protocol: no ``eval`` column, no protocol, state, store or attempts.

This module holds helpers only (no tests); the test_score_* modules import it.
"""

import json
import os
import time
from pathlib import Path

import yaml

import opts
from formats.results import (
    EPOCH_COLUMNS,
    EVAL_NONE,
    EVAL_SCHEDULED,
    HEARTBEAT_FILE,
    PROTOCOL_VERSION,
    RESULTS_FORMAT,
    STATE_FINISHED,
    STATE_RUNNING,
    scheduled_epochs,
)

# epochs.csv header of protocol 1 (evaluation after every epoch); hand-written rows below use it.
EPOCH_HEADER = (
    "epoch,elapsed_s,train_s,eval_s,lr,train_loss,train_top1,val_top1,val_top5,"
    "val_video_top1,clips_per_s,data_wait_frac,peak_mem_mb"
)
EPOCH_HEADER_V2 = ",".join(EPOCH_COLUMNS)
TARGETS = {"X3D_M": 20.11, "MVIT_B_16x4": 20.59, "demo_X3D_M": 35.0, "demo_MVIT_B_16x4": 35.0}
MODELS = {"X3D_M": "x3d_m", "MVIT_B_16x4": "mvit_b_16x4", "demo_X3D_M": "x3d_m",
          "demo_MVIT_B_16x4": "mvit_b_16x4"}
TITAN = "4 x NVIDIA TITAN RTX"
FINGERPRINT = "sha256:5f0c1e2d3b4a69788776655443322110ffeeddccbbaa99887766554433221100"
STORE = {
    "path": "data/frames/kinetics20_jpg", "format": "jpg", "short_side": 320,
    "jpeg_quality": 90, "fingerprint": FINGERPRINT, "videos": {"train": 1276, "val": 100},
    "clips": {"train": 11484, "val": 900}, "failed_videos": 0,
    "dataset_matches_kinetics20": True,
    "dataset_check": {"record": "ok", "matches_kinetics20": True, "missing": 0, "extra": 0,
                      "expected": 1376, "found": 1376, "differences": "dataset_check.csv"},
}


def epoch_rows(val_top1: list[float | None], elapsed_s: list[float]) -> list[str]:
    """Protocol 1: one CSV line per epoch with plausible values in every column (it evaluated
    after every epoch: a None is an evaluation far below any target)."""
    rows = []
    for epoch, (accuracy, elapsed) in enumerate(zip(val_top1, elapsed_s, strict=True)):
        accuracy = 1.0 if accuracy is None else accuracy
        rows.append(
            f"{epoch},{elapsed},{elapsed * 0.8:.3f},{elapsed * 0.1:.3f},0.01,2.5,"
            f"{accuracy * 1.1:.2f},{accuracy},{min(100.0, accuracy * 2):.2f},{accuracy},"
            f"{50 + 5 * epoch},{0.5 - 0.02 * epoch:.2f},1024"
        )
    return rows


def epoch_rows_v2(val_top1: list[float | None], elapsed_s: list[float],
                  evals: list[str], energy_j: list[float | None] | None = None) -> list[str]:
    """Protocol 2: rows without an evaluation ("") have empty val_* cells; ``energy_j`` the
    GPUs' joules per epoch (None, the default: not measured, empty cells)."""
    rows = []
    energy_j = energy_j or [None] * len(val_top1)
    untimed = 0.0
    for epoch, (accuracy, elapsed, kind) in enumerate(
            zip(val_top1, elapsed_s, evals, strict=True)):
        untimed += 3.0 if kind == "extra" else 0.0
        evaluated = kind != "" and accuracy is not None
        cells = {
            "epoch": epoch, "elapsed_s": elapsed, "train_s": f"{elapsed * 0.8:.3f}",
            "eval": kind, "eval_s": f"{elapsed * 0.1:.3f}" if kind else "",
            "untimed_s": untimed, "lr": 0.01, "train_loss": 2.5,
            "train_top1": f"{(accuracy or 10) * 1.1:.2f}",
            "val_top1": accuracy if evaluated else "",
            "val_top1_clips": accuracy if evaluated else "",
            "val_top5": f"{min(100.0, accuracy * 2):.2f}" if evaluated else "",
            "val_video_top1": accuracy if evaluated else "",
            "clips_per_s": 50 + 5 * epoch, "data_wait_frac": f"{0.5 - 0.02 * epoch:.2f}",
            "peak_mem_mb": 1024, "energy_j": "" if energy_j[epoch] is None else energy_j[epoch],
            "cpu_energy_j": "",
        }
        rows.append(",".join(str(cells[name]) for name in EPOCH_COLUMNS))
    return rows


def resolved_config(config: str, target: float, gpus: int, results: Path,
                    changed_keys: tuple[str, ...] = ()) -> dict:
    """config.yaml as the trainer writes it: the preset of that name (X3D-M's, renamed, for a
    name without one) resolved, with each changed key given another value."""
    preset = opts.CONFIG_DIR / f"{config}.yaml"
    base = opts.read_preset(preset if preset.is_file() else opts.CONFIG_DIR / "X3D_M.yaml")
    if MODELS.get(config, base["model"]) != base["model"]:
        base = opts.read_preset(opts.CONFIG_DIR / "MVIT_B_16x4.yaml")
    values = {**base, "name": config, "target_top1": target, "gpus": gpus, "workers": 8,
              "data": "data/frames/kinetics20_jpg", "out": str(results)}
    resolved = opts.resolve(values, config)
    for key in changed_keys:
        value, choices = resolved.get(key), opts.valid_keys(resolved["model"])[key].choices
        resolved[key] = (not value if isinstance(value, bool) else value * 2
                         if isinstance(value, int | float) else
                         next(c for c in choices if c != value) if choices else f"{value}-x")
    return resolved


def write_run(
    results: Path,
    config: str = "X3D_M",
    run_id: str = "20261124T151500Z-0001",
    *,
    val_top1: list[float],
    elapsed_s: list[float] | None = None,
    gpus: int = 4,
    machine: str = TITAN,
    finished: bool = True,
    changed_keys: tuple[str, ...] = (),
    git_dirty: bool = False,
    resumed: bool = False,
    lost_s: float = 0.0,
    epochs_csv: str | None = None,
    protocol: int = PROTOCOL_VERSION,
    evals: list[str] | None = None,
    state: str | None = None,
    device: str = "cuda",
    nodes: int = 1,
    compliance_issues: list[str] | None = None,
    store: dict | None = STORE,
    attempts: list[dict] | None = None,
    heartbeat_age_s: float | None = None,
    extra: dict | None = None,
    energy_j: list[float | None] | None = None,
) -> Path:
    """Write one run folder as the trainer would; `epochs_csv` replaces the CSV text verbatim,
    `extra` adds or replaces run.json keys, `heartbeat_age_s` ages the heartbeat of an
    unfinished protocol-2 run (fresh by default)."""
    target = TARGETS.get(config, 20.11)
    if elapsed_s is None:
        elapsed_s = [100.0 * (i + 1) for i in range(len(val_top1))]
    resolved = resolved_config(config, target, gpus, results, changed_keys)
    schedule = scheduled_epochs(resolved["epochs"], resolved["eval_period"])
    if evals is None:
        evals = [EVAL_SCHEDULED if epoch in schedule else EVAL_NONE
                 for epoch in range(len(val_top1))]
    folder = results / config / run_id
    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text(yaml.safe_dump(resolved))
    system = {
        "host": "bench-host", "platform": "Linux", "python": "3.11.7",
        "cpu": {"model": "AMD EPYC", "cores": 32}, "memory_gb": 256.0, "device": device,
        "gpus": [{"name": "NVIDIA TITAN RTX", "memory_mb": 24576}] * gpus,
        "gpu_count": gpus, "driver": "550.54", "cuda": "12.4", "torch": "2.14.1",
        "torchvision": "0.29.1", "libraries": {}, "git_commit": "abc1234",
        "git_dirty": git_dirty, "machine": machine,
    }
    (folder / "system.json").write_text(json.dumps(system))
    if epochs_csv is None:
        lines = ([EPOCH_HEADER, *epoch_rows(val_top1, elapsed_s)] if protocol < 2 else
                 [EPOCH_HEADER_V2, *epoch_rows_v2(val_top1, elapsed_s, evals, energy_j)])
        epochs_csv = "\n".join(lines) + "\n"
    (folder / "epochs.csv").write_text(epochs_csv)

    # What the trainer records: the first counting evaluation at or above the target.
    counted = [v for v, kind in zip(val_top1, evals, strict=True)
               if protocol < 2 or kind == "scheduled"]
    times = [t for t, kind in zip(elapsed_s, evals, strict=True)
             if protocol < 2 or kind == "scheduled"]
    t_target = next((t for v, t in zip(counted, times, strict=True)
                     if v is not None and v >= target), None)
    run = {
        "config": config, "model": MODELS.get(config, "x3d_m"), "run_id": run_id,
        "target_top1": target, "reached": t_target is not None, "t_target_s": t_target,
        "epochs_done": len(val_top1), "finished": finished, "gpus": gpus, "workers": 8,
        "device": device, "machine": machine,
        "compliant": not changed_keys and not git_dirty, "changed_keys": list(changed_keys),
        "git_dirty": git_dirty, "resumed": resumed, "lost_s": lost_s, "seed": 0,
    }
    if protocol >= 2:
        if compliance_issues is None:
            compliance_issues = ([f"changed: {', '.join(changed_keys)}"] if changed_keys else [])
            compliance_issues += ["git dirty"] if git_dirty else []
        run |= {
            "format": RESULTS_FORMAT, "protocol": protocol,
            "state": state or (STATE_FINISHED if finished else STATE_RUNNING),
            "compliance_issues": compliance_issues,
            "compliant": not compliance_issues, "nodes": nodes, "restarts": 0,
            "untimed_s": 0.0, "eval_epochs": schedule,
            "attempts": attempts if attempts is not None else [
                {"started": "2026-11-24T15:15:00Z", "host": "bench-host", "machine": machine,
                 "git_commit": "abc1234", "git_dirty": git_dirty, "restart": 0}],
            "spans_machines": False, "spans_commits": False,
        }
        if store is not None:
            run["store"] = store
    run |= extra or {}
    (folder / "run.json").write_text(json.dumps(run, indent=1))
    if protocol >= 2 and not finished:
        heartbeat = folder / HEARTBEAT_FILE
        heartbeat.write_text("12.5\n")
        if heartbeat_age_s is not None:
            then = time.time() - heartbeat_age_s
            os.utime(heartbeat, (then, then))
    return folder


def write_reference(path: Path, t_ref_s: dict[str, float], gpus: int = 4) -> Path:
    path.write_text(yaml.safe_dump({
        "description": "test reference", "machine": TITAN, "gpus": gpus, "t_ref_s": t_ref_s,
    }))
    return path


def on_schedule(config: str, evaluations: list[float], t_last: float) -> dict:
    """An epoch curve on the config's own schedule: `evaluations` are the top-1 values of its
    first scheduled evaluations, the rows run to the last of them, whose elapsed time is
    `t_last` (epochs of equal length); rows in between have no evaluation."""
    preset = opts.CONFIG_DIR / f"{config}.yaml"
    values = opts.read_preset(preset if preset.is_file() else opts.CONFIG_DIR / "X3D_M.yaml")
    schedule = scheduled_epochs(values["epochs"], values["eval_period"])[:len(evaluations)]
    assert len(schedule) == len(evaluations), f"{config} schedules {len(schedule)} evaluations"
    rows = schedule[-1] + 1
    by_epoch = dict(zip(schedule, evaluations, strict=True))
    return {"val_top1": [by_epoch.get(epoch) for epoch in range(rows)],
            "elapsed_s": [round(t_last * (epoch + 1) / rows, 3) for epoch in range(rows)]}


def reaching_at(t_bench: float, config: str = "X3D_M") -> dict:
    """Epoch curve that first reaches the target exactly at `t_bench`, its second scheduled
    evaluation (the first one is below the target)."""
    target = TARGETS.get(config, 20.11)
    return on_schedule(config, [target - 5, target + 1], t_bench)


# What `make demo` records: one CPU process on the synthetic dataset's store, which is not
# Kinetics-20 (so the runs are non-compliant).
DEMO_MACHINE = "cpu: AMD EPYC (2 cores)"
DEMO_ISSUE = ("dataset differs from Kinetics-20: 1376 missing, 400 extra (of 1376 expected, 400 "
              "found)")
DEMO_STORE = STORE | {
    "path": "data/frames/synth_demo_jpg",
    "fingerprint": "sha256:d3e0" + "7" * 60, "videos": {"train": 320, "val": 80},
    "clips": {"train": 320, "val": 240}, "dataset_matches_kinetics20": False,
    "dataset_check": {"record": "ok", "matches_kinetics20": False, "missing": 1376, "extra": 400,
                      "expected": 1376, "found": 400, "differences": "dataset_check.csv"},
}


def write_demo_pair(results: Path, t_x3d: float = 118.5, t_mvit: float = 109.2) -> None:
    """The two runs of `make demo` under results/demo, reaching 35 % at the given times."""
    for config, t in (("demo_X3D_M", t_x3d), ("demo_MVIT_B_16x4", t_mvit)):
        write_run(results / "demo", config, "20261207T060000Z-0a1b", device="cpu", gpus=1,
                  machine=DEMO_MACHINE, compliance_issues=[DEMO_ISSUE], store=DEMO_STORE,
                  val_top1=[22.0, 30.0, 37.5], elapsed_s=[t / 3, 2 * t / 3, t])


NEVER_REACHING = on_schedule("X3D_M", [5.0, 10.0], 2000.0)  # both benchmark presets' schedule
