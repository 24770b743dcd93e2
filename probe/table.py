"""The probe's output: a table on the terminal, one verdict line per model, and probe.json."""

from __future__ import annotations

import json
from pathlib import Path

from formats.files import atomic_write
from probe.predict import Prediction

PROBE_FILE = "probe.json"
PROBE_FORMAT = 1
NOTE = ("PREDICTION, not a result: from rates measured for a few steps on this machine; "
        "assumes the target is reached at the last scheduled evaluation")


def _num(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def table(models: list[dict]) -> str:
    """Rows of quantities, one column per model."""
    rows: list[tuple[str, list[str]]] = [
        ("device x processes", [f"{m['device']} x {m['plan']['gpus']}" for m in models]),
        ("batch per process", [str(m["per_process_batch"]) for m in models]),
        ("train demand clips/s", [_demand(m, "demand", "train_per_process") for m in models]),
        ("eval demand clips/s", [_demand(m, "eval_demand", "eval_per_process") for m in models]),
        ("loader supply clips/s", [_supply(m) for m in models]),
        ("bound", [_bound(m["prediction"]) for m in models]),
        ("smallest WORKERS", [_workers(m["prediction"]) for m in models]),
        ("train clips / val clips", [f"{m['plan']['train_clips']} / {m['plan']['val_clips']}"
                                     for m in models]),
        ("epoch training s", [_num(m["prediction"]["epoch_train_s"]) for m in models]),
        ("one evaluation s", [_num(m["prediction"]["eval_s"]) for m in models]),
        ("predicted run s", [_run(m) for m in models]),
        ("predicted score", [_num(m["prediction"]["score"], 2) for m in models]),
    ]
    head = [m["name"] for m in models]
    width = max(len(label) for label, _ in rows)
    cols = [max(len(h), *(len(r[1][i]) for r in rows)) for i, h in enumerate(head)]
    lines = ["  ".join([" " * width, *(h.rjust(c) for h, c in zip(head, cols, strict=True))])]
    for label, values in rows:
        cells = (v.rjust(c) for v, c in zip(values, cols, strict=True))
        lines.append("  ".join([label.ljust(width), *cells]))
    return "\n".join(lines)


def _demand(m: dict, total: str, per_process: str) -> str:
    """The run's rate and how it was made: processes at full speed x one process's rate
    (on a CPU, only as many processes as the cores hold run at once)."""
    one = m["rates"][per_process]
    at_once = round(m["prediction"][total] / one) if one else 0
    return f"{_num(m['prediction'][total])} ({at_once} x {_num(one)})"


def _supply(m: dict) -> str:
    supply = m["prediction"]["supply"]
    if supply is None:
        return "not measured"
    return f"{_num(supply)} ({m['rates']['loader_procs']} procs)"


def _bound(p: dict) -> str:
    return p["bound"] if p["bound"] == "unknown" else f"{p['bound']} ({p['margin']:.2f}x)"


def _workers(p: dict) -> str:
    if p["min_workers"] is not None:
        return str(p["min_workers"])
    return "-" if p["cores_needed"] is None else f"none ({p['cores_needed']} cores)"


def _run(m: dict) -> str:
    plan = m["plan"]
    return f"{_num(m['prediction']['total_s'], 0)} ({plan['epochs']} ep, " \
           f"{len(plan['eval_epochs'])} ev)"


def verdict(m: dict) -> str:
    """One line: which side bounds, by how much, and what WORKERS would do."""
    p: Prediction = Prediction(**m["prediction"])
    plan, name = m["plan"], m["name"]
    if p.bound == "unknown":
        return (f"{name}: compute alone {p.demand:.1f} clips/s; loader not measured (no store), "
                "so the verdict is open: pass STORE=<frame store>")
    side = {"cuda": "the GPUs", "cpu": "the CPU"}[m["device"]]
    if p.bound == "data":
        head = (f"{name}: DATA-BOUND: the loader supplies {p.supply:.1f} clips/s, {side} "
                f"could train {p.demand:.1f} ({p.margin:.2f}x); ")
    elif p.bound == "cores":
        head = (f"{name}: CPU-BOUND: training and {m['rates']['loader_procs']} loader "
                f"process(es) share {plan['cores']} cores: {1 / p.clip_s:.1f} clips/s, "
                f"{p.margin:.2f}x slower than compute alone; ")
    else:
        head = (f"{name}: COMPUTE-BOUND: {side} train {p.demand:.1f} clips/s, the loader "
                f"supplies {p.supply:.1f} ({p.margin:.2f}x headroom); ")
    if p.min_workers is not None:
        return head + f"WORKERS={p.min_workers} is the smallest that keeps {side} fed"
    return head + (f"no WORKERS keeps {side} fed on {plan['cores']} cores: it would take "
                   f"about {p.cores_needed} cores")


def write_json(results: Path, record: dict) -> Path:
    """``<results>/probe.json``, written under a temporary name and renamed."""
    results.mkdir(parents=True, exist_ok=True)
    path = results / PROBE_FILE
    atomic_write(path, json.dumps(record, indent=2) + "\n")
    return path
