"""Hand-made result folders for the scorer tests, written exactly as the results format says:
`<results>/<config>/<run_id>/` with config.yaml, system.json, epochs.csv and run.json.

This module holds helpers only (no tests); the test_score_* modules import it.
"""

import json
from pathlib import Path

import yaml

EPOCH_HEADER = (
    "epoch,elapsed_s,train_s,eval_s,lr,train_loss,train_top1,val_top1,val_top5,"
    "val_video_top1,clips_per_s,data_wait_frac,peak_mem_mb"
)
TARGETS = {"X3D_M": 20.11, "MVIT_B_16x4": 20.59}
MODELS = {"X3D_M": "x3d_m", "MVIT_B_16x4": "mvit_b_16x4"}
TITAN = "4 x NVIDIA TITAN RTX"


def epoch_rows(val_top1: list[float], elapsed_s: list[float]) -> list[str]:
    """One CSV line per epoch with plausible values in every column."""
    rows = []
    for epoch, (accuracy, elapsed) in enumerate(zip(val_top1, elapsed_s, strict=True)):
        rows.append(
            f"{epoch},{elapsed},{elapsed * 0.8:.3f},{elapsed * 0.1:.3f},0.01,2.5,"
            f"{accuracy * 1.1:.2f},{accuracy},{min(100.0, accuracy * 2):.2f},{accuracy},"
            f"{50 + 5 * epoch},{0.5 - 0.02 * epoch:.2f},1024"
        )
    return rows


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
) -> Path:
    """Write one run folder as the trainer would; `epochs_csv` replaces the CSV text verbatim."""
    target = TARGETS.get(config, 20.11)
    if elapsed_s is None:
        elapsed_s = [100.0 * (i + 1) for i in range(len(val_top1))]
    folder = results / config / run_id
    folder.mkdir(parents=True)
    resolved = {
        "name": config, "model": MODELS.get(config, "x3d_m"), "target_top1": target,
        "epochs": 20, "batch_size": 16, "seed": 0, "stop_at_target": False,
        "gpus": gpus, "workers": 8, "data": "data/frames/kinetics20_jpg", "out": str(results),
    }
    (folder / "config.yaml").write_text(yaml.safe_dump(resolved))
    system = {
        "host": "bench-host", "platform": "Linux", "python": "3.11.7",
        "cpu": {"model": "AMD EPYC", "cores": 32}, "memory_gb": 256.0, "device": "cuda",
        "gpus": [{"name": "NVIDIA TITAN RTX", "memory_mb": 24576}] * gpus,
        "gpu_count": gpus, "driver": "550.54", "cuda": "12.4", "torch": "2.14.1",
        "torchvision": "0.29.1", "libraries": {}, "git_commit": "abc1234",
        "git_dirty": git_dirty, "machine": machine,
    }
    (folder / "system.json").write_text(json.dumps(system))
    if epochs_csv is None:
        epochs_csv = "\n".join([EPOCH_HEADER, *epoch_rows(val_top1, elapsed_s)]) + "\n"
    (folder / "epochs.csv").write_text(epochs_csv)

    # What the trainer records: the first epoch at or above the target.
    t_target = next((t for v, t in zip(val_top1, elapsed_s, strict=True) if v >= target), None)
    run = {
        "config": config, "model": MODELS.get(config, "x3d_m"), "run_id": run_id,
        "target_top1": target, "reached": t_target is not None, "t_target_s": t_target,
        "epochs_done": len(val_top1), "finished": finished, "gpus": gpus, "workers": 8,
        "device": "cuda", "machine": machine,
        "compliant": not changed_keys and not git_dirty, "changed_keys": list(changed_keys),
        "git_dirty": git_dirty, "resumed": resumed, "lost_s": lost_s, "seed": 0,
    }
    (folder / "run.json").write_text(json.dumps(run, indent=1))
    return folder


def write_reference(path: Path, t_ref_s: dict[str, float], gpus: int = 4) -> Path:
    path.write_text(yaml.safe_dump({
        "description": "test reference", "machine": TITAN, "gpus": gpus, "t_ref_s": t_ref_s,
    }))
    return path


def reaching_at(t_bench: float, config: str = "X3D_M") -> dict:
    """Epoch curve that first reaches the target exactly at `t_bench` (second epoch)."""
    target = TARGETS.get(config, 20.11)
    return {"val_top1": [target - 5, target + 1, target + 3],
            "elapsed_s": [t_bench / 2, t_bench, t_bench * 1.5]}


NEVER_REACHING = {"val_top1": [5.0, 8.0, 10.0], "elapsed_s": [100.0, 200.0, 300.0]}
