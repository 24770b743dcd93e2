"""What a run's run.json says about its protocol, compliance, store and attempts.

Every value comes from a file anyone could have edited: numbers are checked, strings go
through safe_text, and a missing or unreadable record is said, never read as "compliant".
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import yaml

from formats.results import CONFIG_FILE, PROTOCOL_VERSION
from formats.yaml_limits import load_yaml_file
from opts.compliance import (
    NO_STORE,
    ConfigError,
    recorded_changed_keys,
    run_compliance_issues,
)
from score.readers import safe_text

ISSUE_CHARS = 200  # one recorded compliance reason, as shown in a table

PROTOCOL_1 = ("protocol 1 (evaluation after every epoch, clip-weighted metric); rerun with "
              "this version")


def is_number(value: object) -> bool:
    if not isinstance(value, int | float) or isinstance(value, bool):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # an integer beyond any float (JSON allows any number of digits)
        return False


def whole_number(value: object, low: int, high: int) -> int | None:
    """`value` if it is a whole number in [low, high] (1.0 counts), else None."""
    if not is_number(value) or value != int(value) or not low <= value <= high:
        return None
    return int(value)


def protocol_of(info: dict) -> int | None:
    """run.json's protocol version: 1 when absent (files before versions), None if damaged."""
    if "protocol" not in info:
        return 1
    return whole_number(info["protocol"], 1, 1_000_000)


def _text(value: object, limit: int = ISSUE_CHARS) -> str:
    return safe_text(value, limit)


@dataclass(frozen=True)
class StoreInfo:
    """The frame store a run read, as run.json records it (formats.results.STORE_KEYS)."""

    fingerprint: str  # "" when the run recorded none
    videos: str  # per split, e.g. "1276+100"
    clips: str
    failed: str
    # jpg, hdf5 or raw (decoded frames); "" when not recorded. Not part of ``summary``: the
    # formats hold the same pixels (same fingerprint), so runs on either are one group.
    format: str = ""

    @property
    def short(self) -> str:
        """The first 12 characters of the fingerprint, past any "sha256:"-style prefix."""
        if not self.fingerprint:
            return "no fingerprint"
        return self.fingerprint.rsplit(":", 1)[-1][:12]

    @property
    def summary(self) -> str:
        return f"{self.short} ({self.videos} videos, {self.clips} clips, {self.failed} failed)"

    @property
    def format_text(self) -> str:
        """`` jpg store`` style suffix, empty when the run did not record the format."""
        return f", {self.format} store" if self.format else ""




def store_of(info: dict) -> StoreInfo | None:
    store = info.get("store")
    if not isinstance(store, dict):
        return None
    fingerprint = store.get("fingerprint")
    failed = store.get("failed_videos")
    if isinstance(failed, list):
        failed = len(failed)
    return StoreInfo(
        fingerprint=_text(fingerprint, 100) if isinstance(fingerprint, str) else "",
        videos=_counts(store.get("videos")),
        clips=_counts(store.get("clips")),
        failed=_counts(failed),
        format=_text(store.get("format"), 10) if isinstance(store.get("format"), str) else "",
    )


def _counts(value: object) -> str:
    """A count or a {split: count} mapping as "1276+100" (train first); "?" if unreadable."""
    if isinstance(value, dict):
        order = sorted(value, key=lambda split: (split != "train", split != "val", str(split)))
        parts = [whole_number(value[split], 0, 10**12) for split in order]
        return "+".join("?" if part is None else str(part) for part in parts) or "?"
    count = whole_number(value, 0, 10**12)
    return "?" if count is None else str(count)


@dataclass(frozen=True)
class Attempts:
    count: int
    machines: list[str]  # distinct, in order of first appearance
    commits: list[str]
    spans_machines: bool
    spans_commits: bool


def attempts_of(info: dict) -> Attempts:
    """The attempts list, cross-checked with spans_machines / spans_commits."""
    attempts = info.get("attempts")
    entries = [a for a in attempts if isinstance(a, dict)] if isinstance(attempts, list) else []
    machines = _distinct(a.get("machine") or a.get("host") for a in entries)
    commits = _distinct(a.get("git_commit") for a in entries)
    return Attempts(
        count=len(entries),
        machines=machines,
        commits=commits,
        spans_machines=info.get("spans_machines") is True or len(machines) > 1,
        spans_commits=info.get("spans_commits") is True or len(commits) > 1,
    )


def _distinct(values) -> list[str]:
    seen: list[str] = []
    for value in values:
        if isinstance(value, str) and value and _text(value, 60) not in seen:
            seen.append(_text(value, 60))
    return seen


def read_run_config(folder: Path) -> tuple[dict | None, str | None]:
    """(config.yaml as a mapping, None), or (None, why it cannot be used)."""
    try:
        raw = load_yaml_file(folder / CONFIG_FILE)
    except (OSError, ValueError, yaml.YAMLError) as e:
        return None, str(e).splitlines()[0] if str(e).strip() else type(e).__name__
    return (raw, None) if isinstance(raw, dict) else (None, "not a mapping")


def compliance_issues(config: tuple[dict | None, str | None], info: dict, system: dict,
                      protocol: int | None, has_eval: bool) -> list[str]:
    """Why the run is not comparable with the reference; empty means compliant.

    Recomputed from the facts the folder records, with the trainer's own function
    (opts.compliance): the config.yaml against its frozen preset, the code state of every
    attempt, the store record. A ``compliant`` flag or a list of reasons in run.json is never
    taken on trust, so a hand-edited or damaged record comes out labelled."""
    issues = []
    if protocol is None:
        issues.append("protocol version unreadable")
    elif protocol < PROTOCOL_VERSION:
        issues.append(PROTOCOL_1 if protocol == 1 else
                      f"protocol {protocol} (older than {PROTOCOL_VERSION}); rerun with this "
                      "version")
    elif protocol > PROTOCOL_VERSION:
        issues.append(f"protocol {protocol} (newer than this scorer's {PROTOCOL_VERSION}); "
                      "update the scorer")
    if protocol is not None and protocol >= 2 and not has_eval:
        issues.append("epochs.csv has no eval column")
    changed = _changed_keys(config, info, issues)
    attempts = [a for a in info.get("attempts") or [] if isinstance(a, dict)] \
        if isinstance(info.get("attempts"), list) else []
    dirty = info.get("git_dirty") is not False or system.get("git_dirty") is True
    store = info.get("store") if isinstance(info.get("store"), dict) else None
    facts = run_compliance_issues(changed, dirty, store, attempts)
    if protocol is not None and protocol < PROTOCOL_VERSION:
        facts = [f for f in facts if f != NO_STORE]  # older runs predate store records
    issues += facts
    if info.get("compliant") is False and not issues:
        issues.append("marked non-compliant in run.json")  # edited, or another version's
    return list(dict.fromkeys(_text(issue) for issue in issues if issue))


def _changed_keys(config: tuple[dict | None, str | None], info: dict,
                  issues: list[str]) -> list[str]:
    """The run's changed keys from its config.yaml; the recorded ones only for a config
    that has no frozen preset to compare with (never the benchmark's presets)."""
    raw, error = config
    try:
        if raw is None:
            raise ConfigError(error)
        changed = recorded_changed_keys(raw, CONFIG_FILE)
    except ConfigError as e:
        issues.append(f"config.yaml unusable ({_text(str(e), 120)})")
        return []
    if changed is not None:
        return changed
    recorded = info.get("changed_keys")
    if not isinstance(recorded, list):
        issues.append("changed_keys unreadable")
        return []
    return [_text(key, 60) for key in recorded]


def energy_of(info: dict) -> dict:
    """run.json's energy keys as the scorer uses them (damaged values: not measured)."""

    def joules(key: str) -> float | None:
        value = info.get(key)
        return float(value) if is_number(value) and value >= 0 else None

    def method(key: str) -> str | None:
        value = info.get(key)
        return safe_text(value, 40) if isinstance(value, str) and value else None

    return {"method": method("energy_method"), "cpu_method": method("cpu_energy_method"),
            "lost_j": joules("energy_lost_j")}
