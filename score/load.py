"""Read run folders (at any depth under a results folder) into `Run` records.

Every problem with one run becomes a one-line warning naming the file, and that run is
skipped (or, for damaged rows, the rows are ignored); the other runs are still read. A run
(config and run_id) found in several folders, a copied run, is counted once, and all the
copies are one warning (their count and the first few paths), however many there are.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from formats.results import (
    ABANDONED_AFTER_S,
    EPOCHS_FILE,
    HEARTBEAT_FILE,
    PROTOCOL_VERSION,
    RUN_FILE,
    STATE_DIVERGED,
    STATE_FINISHED,
    STATE_INTERRUPTED,
    STATE_RUNNING,
    STATES,
    STATUS_ABANDONED,
    STATUS_DIVERGED,
    STATUS_IN_PROGRESS,
    STATUS_NOT_CONVERGED,
    STATUS_REACHED,
    SYSTEM_FILE,
)
from score import ScoreError
from score.consistency import consistency_issues
from score.epochs import first_crossing, read_epochs
from score.find import find_run_dirs
from score.readers import age_s, read_json_object, safe_text, shown
from score.record import (
    Attempts,
    StoreInfo,
    attempts_of,
    compliance_issues,
    energy_of,
    is_number,
    protocol_of,
    read_run_config,
    store_of,
    whole_number,
)

COMPLIANT = "compliant"
MAX_GPUS = 100_000  # anything larger is a damaged file, not a machine
NAME_CHARS = 120  # config names, machine names and run ids as shown
COPIES_NAMED = 3  # copied run folders named in the one warning about them


def hardware_label(device: str, processes: int, nodes: int) -> str:
    """"4 GPUs", "1 CPU process", "8 GPUs on 2 nodes": what the processes ran on."""
    if device in ("cuda", ""):
        text = f"{processes} GPU{'s' if processes != 1 else ''}"
    else:
        kind = "CPU" if device == "cpu" else device.upper()
        text = f"{processes} {kind} process{'es' if processes != 1 else ''}"
    return text + (f" on {nodes} nodes" if nodes > 1 else "")


@dataclass
class Run:
    """One training run as the scorer sees it."""

    path: Path
    config: str
    run_id: str
    machine: str
    gpus: int  # processes in all (GPUs for a GPU run)
    target_top1: float
    status: str  # formats.results.STATUS_*
    resumed: bool
    lost_s: float
    # Why the run is not comparable with the reference; empty means compliant.
    compliance_issues: list[str]
    # Cleaned epochs.csv: float columns and ``eval``, sorted by elapsed_s.
    epochs: pd.DataFrame = field(repr=False)
    t_bench_s: float | None = None
    crossing_top1: float | None = None  # val_top1 of the evaluation that reached the target
    protocol: int | None = 1
    device: str = "cuda"
    nodes: int = 1
    store: StoreInfo | None = None
    attempts: Attempts = field(default_factory=lambda: Attempts(0, [], [], False, False))
    system: str = ""  # the system's name (SYSTEM=; an older run's host); machine is
    #                   "<system>: <hardware label>", so one name on two machines is two groups
    energy: dict = field(default_factory=dict)  # run.json's energy (score.record.energy_of)

    @property
    def hardware(self) -> str:
        return hardware_label(self.device, self.gpus, self.nodes)

    @property
    def compliance(self) -> str:
        """"compliant", or "non-compliant (<why>)"; runs are grouped and scored by this."""
        if not self.compliance_issues:
            return COMPLIANT
        return f"non-compliant ({'; '.join(self.compliance_issues)})"

    @property
    def labels(self) -> list[str]:
        labels = [self.status]
        if self.compliance_issues:
            labels.append(self.compliance)
        if self.resumed:
            labels.append(f"resumed (lost {self.lost_s:.0f} s)")
        if self.attempts.spans_machines:
            labels.append(f"spans machines ({' / '.join(self.attempts.machines) or '?'})")
        if self.attempts.spans_commits:
            labels.append(f"spans commits ({' / '.join(self.attempts.commits) or '?'})")
        return labels


def load_results(results: Path, warnings: list[str]) -> list[Run]:
    """Read every run under `results`; unreadable runs are skipped with a warning."""
    runs: list[Run] = []
    seen: dict[tuple[str, str], Path] = {}
    copies: list[tuple[Path, Path]] = []  # (copy, the folder first read)
    for folder in find_run_dirs(results, warnings):
        try:
            info = read_json_object(folder / RUN_FILE, required=True)
            # A copy is known from run.json alone: it is not read further, so whatever else
            # is odd in it is not said once per copy either.
            key = _run_key(info, folder)
            if key in seen:
                copies.append((folder, seen[key]))
                continue
            run = load_run(folder, warnings, info)
        except ScoreError as error:
            warnings.append(f"{error}; run skipped")
            continue
        seen[(run.config, run.run_id)] = folder
        runs.append(run)
    if copies:
        named = ", ".join(f"{shown(copy)} (same as {shown(first)})"
                          for copy, first in copies[:COPIES_NAMED])
        more = f" and {len(copies) - COPIES_NAMED} more" if len(copies) > COPIES_NAMED else ""
        warnings.append(f"{len(copies)} run folder(s) hold a run already read (same config and "
                        f"run id: copies?), each counted once: {named}{more}")
    return runs


def _run_key(info: dict, folder: Path) -> tuple[str, str] | None:
    """(config, run id) as load_run names the run; None where run.json names no config."""
    config = info.get("config")
    if not isinstance(config, str) or not config.strip():
        return None
    return (safe_text(config.strip(), NAME_CHARS),
            safe_text(info.get("run_id") or folder.name, NAME_CHARS))


def load_run(folder: Path, warnings: list[str], info: dict | None = None) -> Run:
    """One run folder (`info`: its run.json, when already read)."""
    run_json = folder / RUN_FILE
    if info is None:
        info = read_json_object(run_json, required=True)
    system = _read_system(folder / SYSTEM_FILE, warnings)

    config = info.get("config")
    if not isinstance(config, str) or not config.strip():
        raise ScoreError(f"{shown(run_json)}: no 'config' name")
    target = _number(info, "target_top1", run_json)
    if not 0 < target <= 100:
        raise ScoreError(f"{shown(run_json)}: target_top1 {target} is not a percentage in "
                         "(0, 100]")
    gpus = _number(info, "gpus", run_json)
    if whole_number(gpus, 1, MAX_GPUS) is None:
        raise ScoreError(f"{shown(run_json)}: gpus {gpus:g} is not a whole number in "
                         f"1..{MAX_GPUS}")
    label = info.get("machine") or system.get("machine") or "unknown machine"
    # The system a result belongs to: its recorded name, else (older runs) its host.
    name = info.get("system") or system.get("host") or "unknown host"
    name = safe_text(str(name), NAME_CHARS)
    machine = f"{name}: {safe_text(str(label), NAME_CHARS)}"
    device = info.get("device")
    device = safe_text(device, 20).lower() if isinstance(device, str) else ""
    nodes = whole_number(info.get("nodes", 1), 1, MAX_GPUS) or 1
    lost_s = info.get("lost_s", 0.0)
    lost_s = float(lost_s) if is_number(lost_s) and lost_s >= 0 else 0.0
    protocol = protocol_of(info)

    epochs, has_eval = read_epochs(folder / EPOCHS_FILE, warnings)
    run_config = read_run_config(folder)
    crossing = first_crossing(epochs, target, has_eval)
    t_bench = None if crossing is None else float(crossing["elapsed_s"])
    run = Run(
        path=folder,
        config=safe_text(config.strip(), NAME_CHARS),
        run_id=safe_text(info.get("run_id") or folder.name, NAME_CHARS),
        machine=machine,
        system=name,
        gpus=int(gpus),
        target_top1=target,
        status=classify(info, t_bench, folder, warnings),
        resumed=info.get("resumed") is True,
        lost_s=lost_s,
        compliance_issues=compliance_issues(run_config, info, system, protocol, has_eval)
        + (consistency_issues(info, epochs, t_bench, run_config[0])
           if protocol == PROTOCOL_VERSION and has_eval else []),
        epochs=epochs,
        t_bench_s=t_bench,
        crossing_top1=None if crossing is None else float(crossing["val_top1"]),
        protocol=protocol,
        device=device,
        nodes=nodes,
        store=store_of(info),
        attempts=attempts_of(info),
        energy=energy_of(info),
    )
    _check_recorded_time(run, info, warnings)
    return run


def classify(info: dict, t_bench: float | None, folder: Path, warnings: list[str]) -> str:
    """reached / stopped / not converged / abandoned / in progress (formats.results)."""
    state = info.get("state")
    if state not in STATES:
        if state is not None:
            warnings.append(f"{shown(folder / RUN_FILE)}: state {safe_text(state, 40)!r} is "
                            f"not one of {', '.join(STATES)}; 'finished' used instead")
        state = STATE_FINISHED if info.get("finished") is True else STATE_RUNNING
    if t_bench is not None:
        return STATUS_REACHED
    if state == STATE_DIVERGED:
        return STATUS_DIVERGED
    if state == STATE_FINISHED:
        return STATUS_NOT_CONVERGED
    if state == STATE_INTERRUPTED:  # until resumed (a resume sets it running again)
        return STATUS_ABANDONED
    # Not finished: alive if the trainer rewrote its heartbeat recently (run.json when the
    # run has none: runs of protocol 1 wrote no heartbeat file).
    heartbeat = folder / HEARTBEAT_FILE
    age = age_s(heartbeat if os.path.lexists(heartbeat) else folder / RUN_FILE)
    if age is None or age > ABANDONED_AFTER_S:
        return STATUS_ABANDONED
    return STATUS_IN_PROGRESS


def _check_recorded_time(run: Run, info: dict, warnings: list[str]) -> None:
    """The trainer also records t_target_s; a disagreement points at a damaged epochs.csv."""
    recorded = info.get("t_target_s")
    if not is_number(recorded) or (run.t_bench_s is None and info.get("reached") is not True):
        return
    if run.t_bench_s is None or abs(run.t_bench_s - recorded) > 1.0:
        found = "never" if run.t_bench_s is None else f"{run.t_bench_s:.1f} s"
        warnings.append(
            f"{shown(run.path / RUN_FILE)}: t_target_s {recorded:.1f} s but epochs.csv "
            f"reaches the target {found}; epochs.csv is used"
        )


def _read_system(path: Path, warnings: list[str]) -> dict:
    """system.json is only a fallback (machine label, git_dirty): damage is a warning."""
    try:
        return read_json_object(path, required=False)
    except ScoreError as error:
        warnings.append(f"{error}; ignored")
        return {}


def _number(info: dict, key: str, path: Path) -> float:
    value = info.get(key)
    if not is_number(value):
        raise ScoreError(f"{shown(path)}: '{key}' missing or not a number "
                         f"({safe_text(repr(value), 60)})")
    return float(value)
