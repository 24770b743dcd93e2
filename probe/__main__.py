"""``python -m probe``: before a run, will this machine be GPU-bound or data-bound, and about
what will it score? (``make probe GPUS=N WORKERS=W STORE=...``; see probe/__init__.py)."""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import asdict
from pathlib import Path

from opts import REPO

DEFAULT_CONFIGS = [REPO / "configs" / "X3D_M.yaml", REPO / "configs" / "MVIT_B_16x4.yaml"]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m probe",
        description="Measure what the GPUs (or the CPU) eat and what the loader supplies, "
                    "check that a run has what it needs, and predict its time and score.")
    p.add_argument("--configs", type=Path, nargs="+", default=DEFAULT_CONFIGS,
                   help="presets to probe (default: the two benchmark models)")
    p.add_argument("--gpus", type=int, default=1, help="processes (GPUs) of the run")
    p.add_argument("--workers", type=int, default=8, help="loader workers per process")
    p.add_argument("--store", type=Path, help="frame store (default: none, Kinetics-20 counts)")
    p.add_argument("--results", type=Path, default=Path("results"),
                   help="results folder: probe.json goes there, checkpoints will")
    p.add_argument("--reference", type=Path, default=REPO / "configs" / "reference.yaml",
                   help="reference times for the predicted score")
    p.add_argument("--device", choices=("auto", "cuda", "cpu"),
                   help="as the trainer's --device (default: the config's, auto)")
    p.add_argument("--quick", action="store_true",
                   help="tiny shapes and a few steps: seconds on a CPU (tests the probe itself)")
    p.add_argument("--steps", type=int, help="timed steps per measurement (default 5; quick 2)")
    p.add_argument("--warmup", type=int, help="steps before timing (default 1)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    for name in ("gpus", "steps", "warmup"):
        value = getattr(args, name)
        if value is not None and value < (0 if name == "warmup" else 1):
            print(f"error: --{name} {value}: must be at least "
                  f"{0 if name == 'warmup' else 1}", file=sys.stderr)
            return 2
    if args.workers < 0:
        print(f"error: --workers {args.workers}: must be 0 or more", file=sys.stderr)
        return 2
    started = time.time()
    import_start = time.perf_counter()
    import torch

    from formats.store import StoreError
    from opts import ConfigError
    from probe import stores, table
    from probe.run import Settings, run
    from train import TrainError
    from train.device import gather_facts
    from train.energy import power_limits_line
    from train.rundir import system

    # A run starts Python and imports PyTorch and the project twice: torchrun, then its worker.
    launch_s = 2 * (time.perf_counter() - import_start)
    s = Settings(args.gpus, args.workers, args.store, args.results, args.reference, args.device,
                 args.quick, args.steps or (2 if args.quick else 5),
                 args.warmup if args.warmup is not None else 1, launch_s)
    facts = gather_facts(ask_driver=True)
    print(f"probe: GPUS={s.gpus} WORKERS={s.workers} STORE={s.store or '-'}"
          f"{' (quick: tiny shapes)' if s.quick else ''}; load average "
          + " ".join(f"{x:.2f}" for x in os.getloadavg()), flush=True)
    limits = power_limits_line()  # energy to the target depends on them (None: no NVML)
    if limits:
        print(limits, flush=True)
    try:
        found, models = run(list(args.configs), s, facts)
    except (ConfigError, StoreError, TrainError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if not models:
        return 2  # the device check said why, in one line
    print()
    print(table.table(models))
    print()
    memory = stores.memory_bytes()
    for m in models:
        print(table.verdict(m))
        if m["no_score_because"]:
            print(f"  no predicted score: {m['no_score_because']}")
        line = stores.formats_line(m, memory)
        if line:
            print(f"  {line}")
    print(f"note: {table.NOTE}")
    device = torch.device(models[0]["device"], 0 if models[0]["device"] == "cuda" else None)
    record = {
        "format": table.PROBE_FORMAT, "prediction": table.NOTE, "started": started,
        "argv": sys.argv[1:] if argv is None else argv, "quick": s.quick,
        "gpus": s.gpus, "workers": s.workers, "store": str(s.store) if s.store else None,
        "device_facts": asdict(facts), "checks": [c.to_json() for c in found],
        "models": models, "memory_bytes": memory, "seconds": time.time() - started,
        "system": system.describe(device, s.gpus),
    }
    path = table.write_json(s.results, record)
    print(f"wrote {path}")
    return 1 if any(c.status == "fail" for c in found) else 0


if __name__ == "__main__":
    sys.exit(main())
