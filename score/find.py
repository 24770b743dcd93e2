"""Find run folders at any depth under a results folder, safely.

A run folder is a folder holding one of the run files (formats.results.RUN_FILES): the
trainer writes ``<results>/<config>/<run id>/``, ``make demo`` one level deeper, and a copied
or archived tree anywhere. The walk is bounded (depth and number of entries), visits each
real folder once (a bind mount of a parent cannot loop), never follows a symbolic link to a
folder (a warning names it: runs are read where they are), skips hidden folders, and skips a
folder it cannot list with a warning.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from formats.results import RUN_FILES
from score import ScoreError
from score.readers import shown

MAX_DEPTH = 8  # results/demo/<config>/<run id> is depth 3; a nested config name a few more
MAX_ENTRIES = 200_000  # folder entries looked at in all: far more than any results tree


def find_run_dirs(results: Path, warnings: list[str]) -> list[Path]:
    """Run folders under `results` (or `results` itself if it is one), in sorted order."""
    try:
        if not stat.S_ISDIR(os.stat(results).st_mode):
            raise ScoreError(f"{shown(results)}: not a folder; pass --results <folder>")
    except OSError as error:
        raise ScoreError(f"{shown(results)}: results folder not found; pass --results "
                         "<folder>") from error
    found: list[Path] = []
    visited: dict[tuple[int, int], Path] = {}
    budget = [MAX_ENTRIES]
    _walk(results, 0, found, visited, budget, warnings)
    if budget[0] < 0:
        warnings.append(f"{shown(results)}: more than {MAX_ENTRIES} entries; stopped "
                        "looking for runs there (point --results at a smaller folder)")
    return found


def _walk(folder: Path, depth: int, found: list[Path], visited: dict[tuple[int, int], Path],
          budget: list[int], warnings: list[str]) -> None:
    try:
        info = os.stat(folder)
    except OSError as error:
        warnings.append(f"{shown(folder)}: cannot read folder ({error.strerror}); skipped")
        return
    identity = (info.st_dev, info.st_ino)
    if identity in visited:
        warnings.append(f"{shown(folder)}: same folder as {shown(visited[identity])} "
                        "(a mount inside the tree); read once")
        return
    visited[identity] = folder
    try:
        with os.scandir(folder) as listing:
            entries = []
            for entry in listing:
                budget[0] -= 1
                if budget[0] < 0:
                    return
                entries.append(entry)
    except OSError as error:
        warnings.append(f"{shown(folder)}: cannot read folder ({error.strerror}); skipped")
        return
    names = {entry.name for entry in entries}
    if any(name in names for name in RUN_FILES):
        found.append(folder)
        return  # a run folder holds files, not other runs
    subfolders = []
    for entry in entries:
        if entry.name.startswith("."):
            continue
        try:
            if entry.is_dir(follow_symlinks=False):
                subfolders.append(entry.name)
            elif entry.is_symlink() and entry.is_dir():
                warnings.append(f"{shown(folder / entry.name)}: symbolic link to a folder; not "
                                "followed (pass its target as --results to score the runs there)")
        except OSError:
            continue  # vanished, or a link we cannot resolve: not a folder of runs
    if subfolders and depth >= MAX_DEPTH:
        warnings.append(f"{shown(folder)}: deeper than {MAX_DEPTH} levels under --results; "
                        "not searched further")
        return
    for name in sorted(subfolders):
        _walk(folder / name, depth + 1, found, visited, budget, warnings)
