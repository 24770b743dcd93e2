"""What a run's run.json says about its protocol, compliance, store and attempts.

Every value comes from a file anyone could have edited: numbers are checked, strings go
through safe_text, and a missing or unreadable record is said, never read as "compliant".
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from formats.results import PROTOCOL_VERSION
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

    @property
    def short(self) -> str:
        """The first 12 characters of the fingerprint, past any "sha256:"-style prefix."""
        if not self.fingerprint:
            return "no fingerprint"
        return self.fingerprint.rsplit(":", 1)[-1][:12]

    @property
    def summary(self) -> str:
        return f"{self.short} ({self.videos} videos, {self.clips} clips, {self.failed} failed)"


NO_STORE = "store not recorded"


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


def compliance_issues(info: dict, system: dict, protocol: int | None, has_eval: bool) -> list[str]:
    """Why the run is not comparable with the reference; empty means compliant.

    The trainer's own reasons (``compliance_issues``) come first after the protocol; the
    scorer's checks (changed keys, dirty code, the ``compliant`` flag) are added when the
    record lists no reason, so a record that contradicts itself is never read as compliant.
    """
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

    recorded = info.get("compliance_issues")
    if isinstance(recorded, list):
        issues += [_text(reason) for reason in recorded]
    elif "compliance_issues" in info:
        issues.append("compliance_issues unreadable")
    elif protocol is not None and protocol >= 2:
        issues.append("compliance_issues not recorded")
    if not recorded:
        changed = info.get("changed_keys", [])
        if not isinstance(changed, list):
            issues.append("changed_keys unreadable")
        elif changed:
            issues.append("changed: " + ", ".join(sorted(_text(key, 60) for key in changed)))
        if info.get("git_dirty") is True or system.get("git_dirty") is True:
            issues.append("git dirty")
    if protocol is not None and protocol >= 2 and not isinstance(info.get("store"), dict):
        issues.append(NO_STORE)
    compliant = info.get("compliant")
    if compliant is not True and not issues:
        issues.append("marked non-compliant" if compliant is False else "compliance not recorded")
    return list(dict.fromkeys(issue for issue in issues if issue))


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
