"""Get the benchmark's Kinetics-20 (``python -m preprocess data``, ``make data``).

Two ways, both ending in the dataset check (preprocess.dataset_check):

- from a local Kinetics-400 copy (``--k400 DIR``): the manifest's files are found by name
  anywhere under DIR (any layout; released names ``<youtube_id>_<start>_<end>.mp4``) and
  hard-linked (copied across file systems) into ``<out>/<split>/<class>/``;
- from the original benchmark's repository (default): a sparse, blob-filtered git clone of its
  ``data/kinetics20`` folder only (about 800 MB) into ``.<out name>.git`` beside ``<out>``,
  whose files are then hard-linked into place the same way. The clone is removed once every
  file is in place.

Each file is written under a hidden temporary name in its class folder and renamed when
complete, so ``<out>`` never holds a half-written video under a video's name. Files already
in place are kept, so a second run finishes what an interrupted one left. Nothing in
``<out>`` is ever deleted: files that are not the benchmark's are reported by the check.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from preprocess.dataset_check import DatasetCheck, Entry, read_manifest, run_check

DEFAULT_REPO = "https://github.com/emadRad/VideoModelBenchmark.git"
REPO_FOLDER = "data/kinetics20"
CSV_FILES = ("train.csv", "val.csv")  # the original folder's lists, kept beside the splits
TMP_PREFIX, TMP_SUFFIX = ".", ".part"
USE_K400 = "or assemble it from a local Kinetics-400 copy: make data K400=/path/to/kinetics-400"


class GetDataError(Exception):
    """The dataset could not be fetched or laid out (one line, with what to do)."""


def default_csv(out: Path) -> Path:
    """Where the check's differences go by default: beside the dataset folder."""
    out = Path(out)
    return out.with_name(out.name + "_check.csv")


def place(src: Path, dst: Path) -> str:
    """Hard-link ``src`` to ``dst`` (or copy it, across file systems) via a temporary name.
    Returns "linked" or "copied"."""
    tmp = dst.with_name(TMP_PREFIX + dst.name + TMP_SUFFIX)
    tmp.unlink(missing_ok=True)
    try:
        os.link(src, tmp)
        how = "linked"
    except OSError as e:
        if e.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP, errno.EACCES):
            raise
        try:
            shutil.copyfile(src, tmp)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        how = "copied"
    os.replace(tmp, dst)
    return how


def remove_partial(out: Path) -> None:
    """Remove the temporary files an interrupted run left in the class folders."""
    for leftover in Path(out).glob(f"*/*/{TMP_PREFIX}*{TMP_SUFFIX}"):
        leftover.unlink(missing_ok=True)


def lay_out(sources: dict[Entry, Path], entries: list[Entry], out: Path,
            quiet: bool = False) -> list[Entry]:
    """Put every entry with a source in place under ``out``; returns the entries not found."""
    from tqdm import tqdm

    out = Path(out)
    remove_partial(out)
    not_found, counts = [], {"linked": 0, "copied": 0, "present": 0}
    for entry in tqdm(entries, unit="file", desc=f"lay out {out.name}", disable=quiet):
        dst = out.joinpath(*entry)
        if dst.exists():
            counts["present"] += 1
        elif entry in sources:
            dst.parent.mkdir(parents=True, exist_ok=True)
            counts[place(sources[entry], dst)] += 1
        else:
            not_found.append(entry)
    if not quiet:
        print(f"{out}: {counts['linked']} files hard-linked, {counts['copied']} copied, "
              f"{counts['present']} already in place, {len(not_found)} not found")
    return not_found


def find_by_name(root: Path, names: set[str], quiet: bool = False) -> dict[str, Path]:
    """The first file under ``root`` (any depth) with each of ``names``."""
    from tqdm import tqdm

    found: dict[str, Path] = {}
    bar = tqdm(unit=" folders", desc=f"search {root}", disable=quiet)
    for folder, _, files in os.walk(root):
        bar.update(1)
        for name in files:
            if name in names and name not in found:
                found[name] = Path(folder, name)
    bar.close()
    return found


def from_k400(k400: Path, out: Path, entries: list[Entry], quiet: bool = False) -> list[Entry]:
    """Assemble ``out`` from the manifest's files found under a Kinetics-400 copy."""
    k400 = Path(k400)
    if not k400.is_dir():
        raise GetDataError(f"{k400}: no such folder; give K400= the folder of a Kinetics-400 "
                           "copy (its files are found by name at any depth)")
    found = find_by_name(k400, {e[2] for e in entries}, quiet)
    return lay_out({e: found[e[2]] for e in entries if e[2] in found}, entries, out, quiet)


def _git(args: list[str], url: str, quiet: bool) -> None:
    """Run git, showing its progress; a failure is one GetDataError line."""
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0"}  # never wait for a password
    try:
        proc = subprocess.Popen(["git", *args], stderr=subprocess.PIPE,
                                stdout=subprocess.DEVNULL, env=env)
    except OSError as e:
        raise GetDataError(f"cannot run git ({e.strerror}); install git, {USE_K400}") from None
    errors, pending = [], b""
    while True:
        chunk = os.read(proc.stderr.fileno(), 4096)
        *pieces, pending = re.split(rb"(?<=[\r\n])", pending + chunk)
        if not chunk:
            pieces.append(pending)
        for piece in pieces:
            text = piece.decode("utf-8", "replace")
            if text.startswith(("fatal:", "error:")):
                errors.append(text.strip())
            elif "%" in text and not quiet:  # git's progress meters; other chatter is left out
                sys.stderr.write(text)
                sys.stderr.flush()
        if not chunk:
            break
    if proc.wait():
        why = errors[0] if errors else f"exit status {proc.returncode}"
        step = args[2] if args[0] == "-C" else args[0]
        raise GetDataError(f"git {step} of {url} failed ({why}); check the network and run "
                           f"the same command again, {USE_K400}")


def fetch_repo(url: str, work: Path, quiet: bool = False) -> Path:
    """A sparse, blob-filtered checkout of the repository's data/kinetics20 in ``work``
    (reused if an earlier run left it); returns that folder."""
    work = Path(work)
    if work.is_dir() and not (work / ".git").is_dir():
        shutil.rmtree(work)  # a clone that never finished
    if work.is_dir():
        origin = subprocess.run(["git", "-C", str(work), "config", "--get", "remote.origin.url"],
                                capture_output=True, text=True).stdout.strip()
        if origin != url:
            shutil.rmtree(work)
    if not work.is_dir():
        tmp = work.with_name(work.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        progress = [] if quiet else ["--progress"]
        _git(["clone", "--filter=blob:none", "--sparse", "--no-checkout", *progress, url,
              str(tmp)], url, quiet)
        os.rename(tmp, work)
    _git(["-C", str(work), "sparse-checkout", "set", REPO_FOLDER], url, quiet)
    # Fills the working tree (fetching only the folder's blobs); rerun, it finishes the job.
    _git(["-C", str(work), "reset", "--hard", "--quiet", "HEAD"], url, quiet)
    return work / REPO_FOLDER


def from_repo(url: str, out: Path, entries: list[Entry], quiet: bool = False) -> list[Entry]:
    """Assemble ``out`` from the original repository's data/kinetics20 folder."""
    out = Path(out)
    if all(out.joinpath(*e).exists() for e in entries):
        return []  # nothing to fetch
    work = out.with_name(f".{out.name}.git")
    src = fetch_repo(url, work, quiet)
    if not src.is_dir():
        raise GetDataError(f"{url}: the repository has no {REPO_FOLDER} folder; give K20_REPO= "
                           f"a copy of the original benchmark's repository, {USE_K400}")
    sources = {e: src.joinpath(*e) for e in entries if src.joinpath(*e).is_file()}
    not_found = lay_out(sources, entries, out, quiet)
    for name in CSV_FILES:
        if (src / name).is_file() and not (out / name).exists():
            place(src / name, out / name)
    if not not_found:
        shutil.rmtree(work)  # every file is in place (hard links keep their data)
    return not_found


def get_data(out: Path, k400: Path | None = None, url: str = DEFAULT_REPO,
             csv_path: Path | None = None, manifest: Path | None = None,
             quiet: bool = False) -> DatasetCheck:
    """Get the manifest's files into ``out`` one of the two ways, then check ``out``."""
    out = Path(out)
    entries, _ = read_manifest(manifest)
    out.mkdir(parents=True, exist_ok=True)
    if k400 is not None:
        not_found = from_k400(k400, out, entries, quiet)
    else:
        not_found = from_repo(url, out, entries, quiet)
    if not_found and not quiet:
        where = k400 if k400 is not None else url
        print(f"not found in {where}: {len(not_found)} files, e.g.")
        for split, cls, name in not_found[:10]:
            print(f"  {split}/{cls}/{name}")
    return run_check(out, csv_path or default_csv(out), manifest, quiet)
