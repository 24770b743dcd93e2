"""One probe: the checks, then per model the measurements, the prediction and the record."""

from __future__ import annotations

import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

import opts
from probe import checks, measure, stores
from probe.predict import KINETICS20_CLIPS, Plan, Rates, eval_epochs, predict
from score import ScoreError
from score.reference import read_reference_file
from train.device import DeviceFacts

# --quick: the shapes of the tests' tiny runs, a few steps and batches.
QUICK_SHAPES = {"clip_len": 4, "train_short_side": [32, 40], "train_crop": 32,
                "val_short_side": 32, "val_crop": 32}
QUICK_BATCH_PER_PROCESS = 4


@dataclass(frozen=True)
class Settings:
    gpus: int
    workers: int
    store: Path | None
    results: Path
    reference: Path
    device: str | None  # None: each config's own ``device`` key
    quick: bool
    steps: int
    warmup: int
    launch_s: float = 0.0  # a run's start before the dataset and model (imports, launcher)


def cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def threads_per_process(gpus: int) -> int:
    """Compute threads of each training process: OMP_NUM_THREADS if set; else torchrun's
    default of one when it starts several processes, PyTorch's own default for one."""
    value = os.environ.get("OMP_NUM_THREADS", "")
    if value.isdigit() and int(value) > 0:
        return int(value)
    return 1 if gpus > 1 else torch.get_num_threads()


def load_config(path: Path, s: Settings) -> dict:
    """The config a run of ``path`` with these resource knobs would resolve to."""
    raw = opts.read_preset(path)
    values = {**raw, "gpus": s.gpus, "workers": s.workers}
    if s.quick:
        values.update(QUICK_SHAPES, batch_size=QUICK_BATCH_PER_PROCESS * s.gpus)
    return opts.resolve(values, f"{path} with GPUS={s.gpus}")


def reference_time(config: dict, s: Settings) -> tuple[float | None, int, str | None]:
    """(t_ref_s, the reference's GPU count, why there is no score)."""
    try:
        ref = read_reference_file(s.reference, [])
    except ScoreError as e:
        return None, 1, str(e)
    name = config["name"]
    if name not in ref.t_ref_s:
        return None, 1, f"{s.reference} has no time for {name}; pass --reference"
    return ref.t_ref_s[name], ref.gpus[name], None


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def probe_model(path: Path, s: Settings, device: torch.device, store_ok: bool,
                other: Path | None = None) -> dict:
    """Measure one config and predict its run; ``other``: the store of the other format
    (JPEG or decoded) with the same frames, whose supply is measured too."""
    config = load_config(path, s)
    name = config["name"]
    per_process = config["batch_size"] // s.gpus
    threads = threads_per_process(s.gpus) if device.type == "cpu" else torch.get_num_threads()
    if s.quick:  # one thread: on a shared CPU, threads of busy processes wait on each other
        threads = 1
    n_cores = cores()
    procs = min(s.gpus * s.workers, n_cores)
    procs_why = (f"GPUS x WORKERS = {s.gpus * s.workers}" if procs == s.gpus * s.workers
                 else f"the {n_cores} cores (GPUS x WORKERS = {s.gpus * s.workers})")
    loader, startup_s = None, 0.0
    train_clips, val_clips = KINETICS20_CLIPS
    if store_ok:
        train_set, val_clips, index_s = measure.open_store(config, s.store)
        train_clips, startup_s = len(train_set), index_s
        say(f"{name}: loader, {procs} worker process(es), batch {per_process} ...")
        loader = measure.loader_rate(train_set, per_process, procs, config["seed"],
                                     min_batches=3 if s.quick else 10,
                                     min_s=0.2 if s.quick else 2.0)
    other_loader = None
    if store_ok and other is not None:
        other_set, _, _ = measure.open_store(config, other)
        say(f"{name}: loader on {other}, {procs} worker process(es) ...")
        other_loader = measure.loader_rate(other_set, per_process, procs, config["seed"],
                                           min_batches=3 if s.quick else 10,
                                           min_s=0.2 if s.quick else 2.0)
    say(f"{name}: training and evaluation steps on {device}, batch {per_process}, "
        f"{threads} thread(s) ...")
    with measure.compute_threads(threads):
        trainee, build_s = measure.build(config, device, per_process)
        train_pp = measure.train_rate(trainee, config, device, per_process, s.steps, s.warmup)
        eval_pp = measure.eval_rate(trainee, config, device, per_process, s.steps, s.warmup)
    checkpoint_s, checkpoint_bytes = measure.checkpoint_seconds(trainee, s.results)
    del trainee
    if device.type == "cuda":
        torch.cuda.empty_cache()  # the next model measures on an empty GPU
    t_ref, gpus_ref, no_score = reference_time(config, s)
    rates = Rates(train_pp, eval_pp, loader, procs)
    plan = Plan(device.type, s.gpus, s.workers, n_cores, threads, train_clips, val_clips,
                config["epochs"], eval_epochs(config["epochs"], config["eval_period"]),
                s.launch_s + startup_s + build_s, checkpoint_s, t_ref, gpus_ref)
    formats = []
    if store_ok:
        formats.append(stores.format_entry(s.store, loader, rates, plan))
        if other is not None:
            formats.append(stores.format_entry(other, other_loader, rates, plan))
        formats.sort(key=lambda e: e["format"] == "raw")  # JPEG first
    return {
        "formats": formats,
        "decoded_bytes": stores.decoded_bytes(s.store) if store_ok else None,
        "config": str(path), "name": name, "model": config["model"], "device": device.type,
        "per_process_batch": per_process, "loader_procs_are": procs_why,
        "clip_counts_from": str(s.store) if store_ok else "Kinetics-20 (1276/100 videos x 9)",
        "shapes": {k: config[k] for k in ("clip_len", "train_crop", "val_crop")},
        "measured": {"launch_s": s.launch_s, "build_s": build_s, "index_s": startup_s,
                     "checkpoint_s": checkpoint_s,
                     "checkpoint_bytes": checkpoint_bytes, "load_average": os.getloadavg()},
        "rates": asdict(rates), "plan": asdict(plan), "prediction": asdict(predict(rates, plan)),
        "no_score_because": no_score,
    }


def batch_bytes(paths: list[Path], s: Settings) -> int:
    """Bytes of the largest uint8 training batch of one process among the configs."""
    sizes = []
    for path in paths:
        c = load_config(path, s)
        sizes.append(c["batch_size"] // s.gpus * c["clip_len"] * c["train_crop"] ** 2 * 3)
    return max(sizes)


def run(paths: list[Path], s: Settings, facts: DeviceFacts,
        show=print) -> tuple[list[checks.Check], list[dict]]:
    """Checks first (each shown as it is known); measurements only on a usable device."""
    found: list[checks.Check] = []

    def add(check: checks.Check) -> None:
        found.append(check)
        show(check.line())

    requested = s.device or load_config(paths[0], s)["device"]
    device_check, device = checks.check_device(requested, facts, s.gpus)
    add(device_check)
    if device is None:
        return found, []
    add(checks.check_backend(device, s.gpus))
    add(checks.check_shm(s.gpus, s.workers, batch_bytes(paths, s), measure.PREFETCH))
    store_check = checks.check_store(s.store)
    add(store_check)
    models = []
    start = time.perf_counter()
    store_ok = store_check.status != checks.FAIL and s.store is not None
    other = stores.companion(s.store) if store_ok else None
    if other is not None:
        show(f"      store    also measuring the other format's store of the same frames: "
             f"{other}")
    for path in paths:
        models.append(probe_model(path, s, device, store_ok, other))
    biggest = max(m["measured"]["checkpoint_bytes"] for m in models)
    add(checks.check_disk(s.results, biggest))
    say(f"measured in {time.perf_counter() - start:.0f} s")
    return found, models
