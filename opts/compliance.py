"""Whether a run is comparable with the reference, from the facts its folder records: the one
function the trainer uses when it writes run.json and the scorer uses when it reads one (the
scorer never takes a ``compliant`` flag or a list of reasons on trust).

The facts: the run's config against its frozen preset (changed keys), the code it ran
(uncommitted changes, one commit and one machine for all its attempts), and the frame store it
read (its settings, dataset check, failed videos and counts: preprocess.identity).
"""

from __future__ import annotations

from pathlib import Path

from opts import CONFIG_DIR, ConfigError, baseline_preset, changed_keys, resolve
from preprocess.identity import store_compliance_issues

NO_STORE = "store not recorded"


def run_compliance_issues(changed: list[str], git_dirty: bool, store: dict | None,
                          attempts: list[dict]) -> list[str]:
    """One line per reason the run is not comparable with the reference; [] if compliant."""
    issues = []
    if changed:
        issues.append("changed: " + ", ".join(sorted(changed)))
    if git_dirty or any(a.get("git_dirty") for a in attempts):
        issues.append("git dirty")
    issues += store_compliance_issues(store) if isinstance(store, dict) else [NO_STORE]
    machines = {a.get("machine") for a in attempts}
    commits = {a.get("git_commit") for a in attempts}
    if len(machines) > 1:
        issues.append(f"spans {len(machines)} machines")
    if len(commits) > 1:
        issues.append(f"spans {len(commits)} commits")
    return issues


def recorded_changed_keys(raw_config: dict, where: str) -> list[str] | None:
    """A run's changed keys recomputed from its config.yaml against the frozen preset of its
    name (None: no such preset in configs/, so nothing to recompute against). Raises
    ConfigError in one line for a config that does not resolve."""
    config = resolve(raw_config, where)
    frozen = CONFIG_DIR / f"{config['name']}.yaml"
    if not frozen.is_file():
        return None
    baseline, _ = baseline_preset(config, Path(frozen))
    return changed_keys(config, baseline)


__all__ = ["NO_STORE", "ConfigError", "recorded_changed_keys", "run_compliance_issues"]
