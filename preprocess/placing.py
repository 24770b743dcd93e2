"""The file-system side of ``make data``: finding a video's source in a Kinetics-400 copy,
judging it, and putting a real file in place under a temporary name.

A Kinetics-400 copy is a real file system that anyone may have arranged:

- links, relative or absolute, pointing inside or outside the copy: a source is followed to
  the regular file it names and that file is hard-linked (or copied). ``os.link`` on Linux
  links the symbolic link itself, which, relative, dangles once it sits in another folder:
  the dataset would list a name whose content is gone;
- dangling links and link loops: not a source, reported with what they are;
- FIFOs, sockets and devices (or links to them, ``/dev/zero``) under a video's name: not a
  source, never opened (a FIFO blocks the open, a link to ``/dev/zero`` was copied until the
  disk was full);
- folder links are followed, each folder searched once (a loop of folder links ends).

Writing into the destination fails in ways the user fixes (a read-only mount, a folder they
may not write, a full disk): those errors are ``DESTINATION_ERRORS`` and leave no temporary
file behind.
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
from pathlib import Path

TMP_PREFIX, TMP_SUFFIX = ".", ".part"
# Why hard-linking fails where copying may work: another file system, a file system without
# hard links, a link count at its maximum, a source the user may read but not link.
LINK_FALLBACK = (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP, errno.EACCES)
# Errors while writing the destination that only the user can fix, and what they are.
DESTINATION_ERRORS = {
    errno.ENOSPC: "disk full", errno.EDQUOT: "disk quota exceeded",
    errno.EROFS: "read-only file system", errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
}
_SPECIAL = ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"),
            (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
            (stat.S_ISDIR, "a folder"))


# A Kinetics-400 copy has about a thousand folders; a folder link to / would search the
# whole machine.
MAX_FOLDERS = 100_000


class SearchTooLarge(Exception):
    """The search went through more than MAX_FOLDERS folders (one line: where)."""


class SourceProblem(Exception):
    """A source that is not a readable regular file (one line: what it is)."""


def what_it_is(mode: int) -> str:
    for check, name in _SPECIAL:
        if check(mode):
            return name
    return "not a regular file"


def regular_source(path: Path) -> Path:
    """The regular file ``path`` names, links followed (the path itself if it is no link).
    Raises SourceProblem naming what it is instead."""
    try:
        real = Path(os.path.realpath(path, strict=True))
        mode = os.stat(real).st_mode
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise SourceProblem(f"{path}: a symbolic link loop") from None
        if os.path.islink(path) and e.errno == errno.ENOENT:
            raise SourceProblem(f"{path}: a broken symbolic link (to "
                                f"{os.readlink(path)})") from None
        raise SourceProblem(f"{path}: cannot read ({e.strerror})") from None
    if not stat.S_ISREG(mode):
        raise SourceProblem(f"{path}: {what_it_is(mode)}, not a video file; not opened")
    return real


def is_regular_file(path: Path) -> bool:
    """A regular file under this very name (no link, no FIFO): what a dataset must hold."""
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except OSError:
        return False


def temporary_name(dst: Path) -> Path:
    return dst.with_name(TMP_PREFIX + dst.name + TMP_SUFFIX)


def _copy_regular(src: Path, tmp: Path) -> None:
    """Copy the regular file ``src`` (checked again on the open file: never a device)."""
    try:
        fd = os.open(src, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY)
    except OSError as e:
        raise SourceProblem(f"{src}: cannot read ({e.strerror})") from None
    with os.fdopen(fd, "rb") as source:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):  # swapped since it was judged
            raise SourceProblem(f"{src}: {what_it_is(mode)}, not a video file")
        with open(tmp, "xb") as target:
            shutil.copyfileobj(source, target, 1024 * 1024)


def place(src: Path, dst: Path) -> str:
    """Put the regular file ``src`` names at ``dst``: hard-linked, or copied across file
    systems, via a temporary name renamed when complete. Returns "linked" or "copied".
    Raises SourceProblem for a source that is not a regular file, OSError for the
    destination; nothing is left under the temporary name either way."""
    real = regular_source(src)
    tmp = temporary_name(dst)
    tmp.unlink(missing_ok=True)
    try:
        try:
            os.link(real, tmp)  # ``real`` is no link: the new name is the file itself
            how = "linked"
        except OSError as e:
            if e.errno not in LINK_FALLBACK:
                raise
            tmp.unlink(missing_ok=True)
            _copy_regular(real, tmp)
            how = "copied"
        if not is_regular_file(tmp):  # the source was swapped for a FIFO after the check
            raise SourceProblem(f"{src}: not a regular file")
        os.replace(tmp, dst)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return how


def find_by_name(root: Path, names: set[str], quiet: bool = False,
                 max_folders: int | None = None) -> tuple[dict[str, Path], dict[str, str]]:
    """The first usable file under ``root`` (any depth, folder links followed once) with
    each of ``names``, and for names with no usable file, why the ones seen are not.
    Raises SearchTooLarge past ``max_folders`` (default MAX_FOLDERS) folders."""
    max_folders = max_folders or MAX_FOLDERS
    from tqdm import tqdm

    bar = tqdm(unit=" folders", desc=f"search {root}", disable=quiet)
    found: dict[str, Path] = {}
    problems: dict[str, str] = {}
    seen: set[tuple[int, int]] = set()
    stack = [Path(root)]
    while stack:
        folder = stack.pop()
        bar.update(1)
        try:
            info = os.stat(folder)
            if (info.st_dev, info.st_ino) in seen:
                continue  # reached again through a folder link (or a loop of them)
            seen.add((info.st_dev, info.st_ino))
            if len(seen) > max_folders:
                bar.close()
                raise SearchTooLarge(f"{root}: more than {max_folders} folders searched (the "
                                     f"last {folder}); does a folder link lead out of the "
                                     "Kinetics-400 copy, to / say?")
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError:
            continue  # an unreadable folder or a dangling folder link: nothing to find
        folders = []
        for entry in entries:
            if entry.name in names:
                if entry.name not in found:
                    try:
                        regular_source(Path(entry.path))
                        found[entry.name] = Path(entry.path)
                        problems.pop(entry.name, None)
                    except SourceProblem as e:
                        problems.setdefault(entry.name, str(e))
            elif _is_folder(entry):
                folders.append(Path(entry.path))
        stack.extend(reversed(folders))  # searched in name order, depth first
    bar.close()
    return found, problems


def _is_folder(entry: os.DirEntry) -> bool:
    try:
        return entry.is_dir()  # follows a link: a linked folder is searched too
    except OSError:
        return False
