"""run.json: what the run folder says about the run as a whole (formats/results.py lists its
keys). Every process keeps a RunRecord (the stop decision is taken everywhere); rank 0 writes it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import formats.results as results_format
from opts.compliance import run_compliance_issues
from train.rundir.energy import record_keys
from train.schedule import scheduled_eval_epochs


@dataclass
class RunRecord:
    config: dict
    run_id: str
    changed_keys: list[str]
    git_dirty: bool
    machine: str
    device: str
    gpus: int
    nodes: int = 1
    resumed: bool = False
    restarts: int = 0
    lost_s: float = 0.0
    untimed_s: float = 0.0
    reached: bool = False
    t_target_s: float | None = None
    epochs_done: int = 0
    finished: bool = False
    state: str = results_format.STATE_RUNNING
    store: dict | None = None  # the frame store read (formats.results.STORE_KEYS)
    attempts: list[dict] = field(default_factory=list)  # one per process launch
    system: str = ""  # the name the results are grouped by (SYSTEM=, else the host's)
    # The run's energy (train/rundir/energy.py: joules so far, lost, at the target; None:
    # not measured) and how it was read.
    energy: dict = field(default_factory=dict)
    energy_method: str | None = None
    cpu_energy_method: str | None = None

    def compliance_issues(self) -> list[str]:
        """One line per reason the run is not comparable with the reference; [] if compliant
        (the scorer recomputes the same from the folder's files)."""
        return run_compliance_issues(self.changed_keys, self.git_dirty, self.store,
                                     self.attempts)

    def to_json(self) -> dict:
        c = self.config
        issues = self.compliance_issues()
        return {
            "format": results_format.RESULTS_FORMAT, "protocol": results_format.PROTOCOL_VERSION,
            "config": c["name"], "model": c["model"], "run_id": self.run_id,
            "target_top1": c["target_top1"], "state": self.state, "reached": self.reached,
            "t_target_s": self.t_target_s, "epochs_done": self.epochs_done,
            "finished": self.finished, "gpus": self.gpus, "nodes": self.nodes,
            "workers": c["workers"], "device": self.device, "machine": self.machine,
            "system": self.system,
            "campaign": ({"run": c["campaign_run"], "runs": c["campaign_runs"]}
                         if c.get("campaign_runs") else None),
            "compliant": not issues, "changed_keys": self.changed_keys,
            "compliance_issues": issues, "git_dirty": self.git_dirty,
            "resumed": self.resumed, "restarts": self.restarts, "lost_s": round(self.lost_s, 3),
            "untimed_s": round(self.untimed_s, 3), **record_keys(self), "seed": c["seed"],
            "eval_epochs": scheduled_eval_epochs(c), "store": self.store,
            "attempts": self.attempts,
            "spans_machines": len({a.get("machine") for a in self.attempts}) > 1,
            "spans_commits": len({a.get("git_commit") for a in self.attempts}) > 1,
        }
