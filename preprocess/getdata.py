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

Sources are judged before use (preprocess.placing): links are followed to the regular file
they name, and a broken link, a link loop, a FIFO, socket or device is reported with what it
is and never opened. The dataset ends up holding regular files only: a link or FIFO left
under a video's name is replaced when a source is found, and counted missing when none is.
A destination that cannot be written (full, read-only, not the user's) is one
``DestinationError`` line; no temporary file or half clone is left behind.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from preprocess.dataset_check import (
    DatasetCheck,
    Entry,
    check_dataset,
    read_manifest,
    summary_lines,
    write_differences,
)
from preprocess.placing import (
    DESTINATION_ERRORS,
    TMP_PREFIX,
    TMP_SUFFIX,
    SearchTooLarge,
    SourceProblem,
    find_by_name,
    is_regular_file,
    place,
    regular_source,
)

DEFAULT_REPO = "https://github.com/emadRad/VideoModelBenchmark.git"
REPO_FOLDER = "data/kinetics20"
CSV_FILES = ("train.csv", "val.csv")  # the original folder's lists, kept beside the splits
USE_K400 = "or assemble it from a local Kinetics-400 copy: make data K400=/path/to/kinetics-400"


class GetDataError(Exception):
    """The dataset could not be fetched or laid out (one line, with what to do)."""


class DestinationError(GetDataError):
    """Writing beside or into the dataset folder failed (full, read-only): the user's fix."""


# What git says when it cannot write (its own clone folder is removed by git itself).
GIT_DESTINATION = {"No space left on device": "disk full", "Disk quota exceeded":
                   "disk quota exceeded", "Read-only file system": "read-only file system"}


def default_csv(out: Path) -> Path:
    """Where the check's differences go by default: beside the dataset folder."""
    out = Path(out)
    return out.with_name(out.name + "_check.csv")


def remove_partial(out: Path) -> None:
    """Remove the temporary files an interrupted run left in the class folders."""
    for leftover in Path(out).glob(f"*/*/{TMP_PREFIX}*{TMP_SUFFIX}"):
        leftover.unlink(missing_ok=True)


def _not_a_file(dst: Path) -> str:
    """What stands under a video's name in the dataset folder instead of a file of its own."""
    try:
        regular_source(dst)
        return f"{dst}: a symbolic link, not a file of its own"
    except SourceProblem as e:
        return str(e)


def lay_out(sources: dict[Entry, Path], entries: list[Entry], out: Path, quiet: bool = False,
            problems: dict[Entry, str] | None = None) -> dict[Entry, str]:
    """Put every entry with a usable source in place under ``out`` as a regular file.
    Returns the entries not in place, each with why ("" when no source was seen at all)."""
    from tqdm import tqdm

    out = Path(out)
    remove_partial(out)
    missing: dict[Entry, str] = {}
    counts = {"linked": 0, "copied": 0, "present": 0}
    for entry in tqdm(entries, unit="file", desc=f"lay out {out.name}", disable=quiet):
        dst = out.joinpath(*entry)
        if is_regular_file(dst):
            counts["present"] += 1
            continue
        if entry in sources:  # also replaces a link or a FIFO left under the video's name
            dst.parent.mkdir(parents=True, exist_ok=True)
            try:
                counts[place(sources[entry], dst)] += 1
                continue
            except SourceProblem as e:
                missing[entry] = str(e)
        else:
            missing[entry] = (problems or {}).get(entry, "")
        if os.path.lexists(dst):
            missing[entry] = "; ".join(filter(None, (missing[entry], _not_a_file(dst))))
    if not quiet:
        print(f"{out}: {counts['linked']} files hard-linked, {counts['copied']} copied, "
              f"{counts['present']} already in place, {len(missing)} not found")
    return missing


def from_k400(k400: Path, out: Path, entries: list[Entry],
              quiet: bool = False) -> dict[Entry, str]:
    """Assemble ``out`` from the manifest's files found under a Kinetics-400 copy."""
    k400 = Path(k400)
    if not k400.is_dir():
        raise GetDataError(f"{k400}: no such folder; give K400= the folder of a Kinetics-400 "
                           "copy (its files are found by name at any depth)")
    try:
        found, problems = find_by_name(k400, {e[2] for e in entries}, quiet)
    except SearchTooLarge as e:
        raise GetDataError(f"{e}; give K400= a folder holding only the copy") from None
    return lay_out({e: found[e[2]] for e in entries if e[2] in found}, entries, out, quiet,
                   {e: problems[e[2]] for e in entries if e[2] in problems})


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
        for words, what in GIT_DESTINATION.items():
            if words in why:
                raise DestinationError(f"git {step} of {url}: {what} ({why}); "
                                       f"{fix_for(what)}")
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
    try:
        _git(["-C", str(work), "sparse-checkout", "set", REPO_FOLDER], url, quiet)
        # Fills the working tree (fetching only the folder's blobs); rerun, it finishes.
        _git(["-C", str(work), "reset", "--hard", "--quiet", "HEAD"], url, quiet)
    except DestinationError:
        shutil.rmtree(work, ignore_errors=True)  # a half checkout only takes the space
        raise
    return work / REPO_FOLDER


def from_repo(url: str, out: Path, entries: list[Entry],
              quiet: bool = False) -> dict[Entry, str]:
    """Assemble ``out`` from the original repository's data/kinetics20 folder."""
    out = Path(out)
    if all(is_regular_file(out.joinpath(*e)) for e in entries):
        return {}  # nothing to fetch
    work = out.with_name(f".{out.name}.git")
    src = fetch_repo(url, work, quiet)
    if not src.is_dir():
        raise GetDataError(f"{url}: the repository has no {REPO_FOLDER} folder; give K20_REPO= "
                           f"a copy of the original benchmark's repository, {USE_K400}")
    # Anything under a video's name is a source; place() refuses links to nowhere, FIFOs...
    sources = {e: src.joinpath(*e) for e in entries if os.path.lexists(src.joinpath(*e))}
    not_found = lay_out(sources, entries, out, quiet)
    for name in CSV_FILES:
        if (src / name).is_file() and not (out / name).exists():
            try:
                place(src / name, out / name)
            except SourceProblem:
                pass  # the lists are a convenience; the dataset is its folders
    if not not_found:
        shutil.rmtree(work)  # every file is in place (hard links keep their data)
    return not_found


def get_data(out: Path, k400: Path | None = None, url: str = DEFAULT_REPO,
             csv_path: Path | None = None, manifest: Path | None = None,
             quiet: bool = False) -> DatasetCheck:
    """Get the manifest's files into ``out`` one of the two ways, then check ``out``.

    A file that could not be put in place but whose name holds something else in ``out``
    (a broken link, a FIFO) is counted missing: the check alone goes by names."""
    out = Path(out)
    entries, _ = read_manifest(manifest)
    try:
        out.mkdir(parents=True, exist_ok=True)
        if k400 is not None:
            not_found = from_k400(k400, out, entries, quiet)
        else:
            not_found = from_repo(url, out, entries, quiet)
        check = check_dataset(out, manifest)
        unusable = {e for e in not_found if os.path.lexists(out.joinpath(*e))}
        check.missing = sorted(set(check.missing) | unusable)
        check.found -= len(unusable)
        csv_path = csv_path or default_csv(out)
        write_differences(check, csv_path)
    except OSError as e:
        if e.errno not in DESTINATION_ERRORS:
            raise
        raise DestinationError(destination_message(e, out)) from None
    if not_found and not quiet:
        where = k400 if k400 is not None else url
        print(f"not found in {where}: {len(not_found)} files, e.g.")
        report(not_found)
    if not quiet:
        print("\n".join(summary_lines(check, csv_path)), flush=True)
    return check


def report(not_found: dict[Entry, str], plain_lines: int = 10) -> None:
    """Every file whose source was unusable, with why (each one: a FIFO or a broken link is
    worth knowing about), and the first of those simply not found."""
    plain = 0
    for entry, why in sorted(not_found.items()):
        name = "/".join(entry)
        if why:
            print(f"  {name}: {why}")
        elif plain < plain_lines:
            print(f"  {name}")
            plain += 1


def destination_message(error: OSError, out: Path) -> str:
    """One line for an error writing the dataset folder: where, what, and what to do."""
    what = DESTINATION_ERRORS[error.errno]
    target = Path(error.filename2 or error.filename or out)  # os.link names the source first
    if target.name.startswith(TMP_PREFIX) and target.name.endswith(TMP_SUFFIX):
        target = target.with_name(target.name[len(TMP_PREFIX):-len(TMP_SUFFIX)])
    return f"{target}: {what} while writing the dataset; {fix_for(what)}"


def fix_for(what: str) -> str:
    if what.startswith("disk"):
        return "free space and run the same command again (files in place are kept)"
    return "give a folder you can write: make data DATA=<folder> (or --out)"
