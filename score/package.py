"""`make package SYSTEM=name`: one archive (tar.gz) of a system's results, with a manifest.

The archive holds one folder, ``<system>/``, with:
- ``runs/<config>/<run id>/``: each run's result files (PACKAGED_FILES: no checkpoint, no
  heartbeat);
- ``system_description.json``: the user's description of the system (from its newest run);
- ``score.md``, ``score.csv``: the score tables of these runs, with the two plots score.md
  shows (accuracy_vs_time.png, throughput.png);
- ``mlperf/result_N.txt``: each run as an MLPerf Training style log (score/mlperf.py);
- ``manifest.sha256``: the sha256 of every other file (``sha256sum -c`` reads it).
Reading a package (score/unpack.py) checks the manifest.
"""

from __future__ import annotations

import argparse
import hashlib
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from formats.files import atomic_path
from formats.results import RUN_FILE, RUN_FILES, SYSTEM_DESCRIPTION_FILE, SYSTEM_FILE
from score import ScoreError
from score.load import Run, load_results
from score.mlperf import mlperf_log
from score.readers import read_json_object, safe_text, shown

MANIFEST = "manifest.sha256"
PACKAGED_FILES = (*RUN_FILES, SYSTEM_DESCRIPTION_FILE)
RUNS_FOLDER = "runs"
MLPERF_FOLDER = "mlperf"
SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


def system_of(run: Run) -> str:
    """The run's system name: run.json ``system``, else (older runs) its host, else machine."""
    name = getattr(run, "system", None)
    if isinstance(name, str) and name:
        return name
    for file, key in ((RUN_FILE, "system"), (SYSTEM_FILE, "host")):
        try:  # bounded, and damage is the loader's to report: here only a fallback
            value = read_json_object(run.path / file, required=False).get(key)
        except ScoreError:
            continue
        if isinstance(value, str) and value.strip():
            return safe_text(value.strip(), 120)
    return run.machine


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _stage(runs: list[Run], system: str, root: Path) -> None:
    """Copy the runs' files, the description and the MLPerf logs into `root`."""
    newest_description = None
    for number, run in enumerate(sorted(runs, key=lambda r: (r.config, r.run_id))):
        folder = (root / RUNS_FOLDER / SAFE_NAME.sub("_", run.config)
                  / SAFE_NAME.sub("_", run.run_id))
        folder.mkdir(parents=True)
        for name in PACKAGED_FILES:
            source = run.path / name
            if source.is_file() and not source.is_symlink():
                shutil.copyfile(source, folder / name)
        if (folder / SYSTEM_DESCRIPTION_FILE).is_file():
            newest_description = folder / SYSTEM_DESCRIPTION_FILE
        (root / MLPERF_FOLDER).mkdir(exist_ok=True)
        (root / MLPERF_FOLDER / f"result_{number}.txt").write_text(mlperf_log(run, system))
    if newest_description is not None:
        shutil.copyfile(newest_description, root / SYSTEM_DESCRIPTION_FILE)


def _write_manifest(root: Path) -> None:
    lines = [f"{sha256_of(path)}  {path.relative_to(root).as_posix()}"
             for path in sorted(root.rglob("*")) if path.is_file()]
    (root / MANIFEST).write_text("\n".join(lines) + "\n", encoding="utf-8")


def write_package(results: Path, system: str, out: Path) -> int:
    """Write the package of `system`'s runs under `results` to `out`; the number of runs."""
    warnings: list[str] = []
    runs = [run for run in load_results(results, warnings) if system_of(run) == system]
    for warning in warnings:
        print(f"warning: {safe_text(warning)}", file=sys.stderr)
    if not runs:
        raise ScoreError(f"{shown(results)}: no run of system {system!r} (SYSTEM= names the "
                         "system the runs recorded; make score lists them)")
    with tempfile.TemporaryDirectory() as temporary:
        root = Path(temporary) / SAFE_NAME.sub("_", system)
        _stage(runs, system, root)
        # The score tables as make score makes them (the command itself: the scorer's front
        # door reads packages, so this module does not import it).
        code = subprocess.run([sys.executable, "-m", "score", "--results", str(root / RUNS_FOLDER),
                               "--out", str(root), "--no-page"], capture_output=True,
                              cwd=Path(__file__).resolve().parents[1], check=False).returncode
        if code != 0:
            raise ScoreError(f"{shown(results)}: the runs of {system!r} could not be scored")
        _write_manifest(root)
        out.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(out) as partial:
            with tarfile.open(partial, "w:gz") as archive:
                archive.add(root, arcname=root.name)
    return len(runs)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m score.package",
                                     description="Write one archive of a system's results.")
    parser.add_argument("--results", type=Path, default=Path("results"))
    parser.add_argument("--system", required=True, help="the system name the runs recorded")
    parser.add_argument("--out", type=Path, default=None,
                        help="archive path (default: <system>.tar.gz in the current folder)")
    args = parser.parse_args(argv)
    out = args.out or Path(f"{SAFE_NAME.sub('_', args.system)}.tar.gz")
    try:
        count = write_package(args.results, args.system, out)
    except ScoreError as error:
        print(f"error: {safe_text(error)}", file=sys.stderr)
        return 2
    except OSError as error:
        print(f"error: {shown(error.filename or out)}: {safe_text(error.strerror or error)}",
              file=sys.stderr)
        return 2
    print(f"Wrote {shown(out)}: {count} run(s) of {args.system}, their score tables, MLPerf "
          "logs and manifest")
    return 0


if __name__ == "__main__":
    sys.exit(main())
