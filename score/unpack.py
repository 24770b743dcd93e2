"""Read a package (score/package.py) safely, and check it against its manifest.

The archive may come from anyone, so it is unpacked into a fresh temporary folder (never
into results/) member by member: only plain files and folders with relative names inside that
folder are written (tarfile's "data" filter as well); absolute names, ``..``, links, devices
and other special members, members over MAX_MEMBER_BYTES, members past MAX_MEMBERS or past
MAX_TOTAL_BYTES in all are refused, one warning line each. The decompressed stream itself is
counted, so a compression bomb stops at the bound instead of filling the disk or the memory.
"""

from __future__ import annotations

import gzip
import tarfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from score import ScoreError
from score.package import MANIFEST, sha256_of
from score.readers import safe_text, shown

MAX_MEMBERS = 20_000  # a 5-run campaign of two models is about 60 members
MAX_MEMBER_BYTES = 64 << 20  # an epochs.csv of many thousand epochs is a few MiB
MAX_TOTAL_BYTES = 512 << 20  # all members together
MAX_STREAM_BYTES = MAX_TOTAL_BYTES + (64 << 20)  # decompressed tar stream, headers included
MAX_MANIFEST_BYTES = 8 << 20


class _Bounded:
    """A read-only stream that stops with ScoreError after `limit` bytes (bombs)."""

    def __init__(self, stream, limit: int, name: str) -> None:
        self.stream, self.left, self.name = stream, limit, name

    def read(self, size: int = -1) -> bytes:
        data = self.stream.read(size if size >= 0 else self.left + 1)
        self.left -= len(data)
        if self.left < 0:
            raise ScoreError(f"{self.name}: more than {MAX_STREAM_BYTES >> 20} MiB once "
                             "decompressed (a compression bomb?); reading stopped")
        return data


@dataclass
class Package:
    """An unpacked package: its root folder and what its manifest check found."""

    source: Path
    root: Path
    # Relative path -> "changed" / "missing" / "extra" / "refused".
    problems: dict[str, str] = field(default_factory=dict)
    has_manifest: bool = True


def _refusal(member: tarfile.TarInfo, count: int, total: int) -> str | None:
    """Why a member is not unpacked, or None."""
    name = PurePosixPath(member.name)
    if count > MAX_MEMBERS:
        return f"more than {MAX_MEMBERS} members"
    if name.is_absolute() or member.name.startswith(("/", "\\")):
        return "absolute path"
    if ".." in name.parts:
        return "'..' in its path"
    if member.issym() or member.islnk():
        return "a link"
    if not (member.isfile() or member.isdir()):
        return "not a plain file or folder (device, fifo, ...)"
    if member.size > MAX_MEMBER_BYTES:
        return f"{member.size} bytes, over {MAX_MEMBER_BYTES >> 20} MiB"
    if total + member.size > MAX_TOTAL_BYTES:
        return f"past {MAX_TOTAL_BYTES >> 20} MiB in all"
    return None


def extract(archive: Path, folder: Path, warnings: list[str]) -> list[str]:
    """Unpack `archive` into the empty `folder`; the relative names of the refused members."""
    refused: list[str] = []
    count = total = 0
    try:
        with gzip.open(archive, "rb") as compressed:
            stream = _Bounded(compressed, MAX_STREAM_BYTES, shown(archive))
            with tarfile.open(fileobj=stream, mode="r|") as tar:
                for member in tar:
                    count += 1
                    why = _refusal(member, count, total)
                    if why is None:
                        try:
                            tar.extract(member, folder, filter="data")
                            total += member.size
                            continue
                        except (tarfile.FilterError, OSError) as error:
                            why = safe_text(str(error), 120)
                    refused.append(member.name)
                    warnings.append(f"{shown(archive)}: member {safe_text(member.name, 120)!r} "
                                    f"refused ({why})")
                    if count > MAX_MEMBERS:
                        break
    except (OSError, EOFError, tarfile.TarError, zlib.error) as error:
        raise ScoreError(f"{shown(archive)}: not a readable package ({safe_text(error, 120)}); "
                         "make package writes one") from error
    return refused


def _manifest(path: Path) -> dict[str, str]:
    entries: dict[str, str] = {}
    if path.stat().st_size > MAX_MANIFEST_BYTES:
        return entries
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        digest, _, name = line.partition("  ")
        if len(digest) == 64 and name:
            entries[name] = digest
    return entries


def read_package(archive: Path, folder: Path, warnings: list[str]) -> Package:
    """Unpack `archive` into `folder` and compare its files with the manifest."""
    refused = extract(archive, folder, warnings)
    tops = [path for path in folder.iterdir() if path.is_dir()]
    root = tops[0] if len(tops) == 1 else folder
    package = Package(archive, root)
    manifest_path = root / MANIFEST
    if not manifest_path.is_file():
        package.has_manifest = False
        warnings.append(f"{shown(archive)}: no {MANIFEST}; its runs are labelled unchecked")
        return package
    listed = _manifest(manifest_path)
    present = {path.relative_to(root).as_posix(): path for path in root.rglob("*")
               if path.is_file() and path != manifest_path}
    for name, digest in listed.items():
        if name not in present:
            package.problems[name] = "missing"
        elif sha256_of(present[name]) != digest:
            package.problems[name] = "changed"
    for name in present:
        if name not in listed:
            package.problems[name] = "extra"
    if root != folder:  # anything beside the package's one top folder is extra too
        for path in folder.iterdir():
            if path != root:
                package.problems[f"../{path.name}"] = "extra"
    prefix = f"{root.name}/" if root != folder else ""
    for name in refused:
        package.problems[name.removeprefix(prefix)] = "refused"
    for name, problem in sorted(package.problems.items()):
        if problem == "refused":
            continue  # its one line was written when it was refused
        warnings.append(f"{shown(archive)}: {safe_text(name, 160)}: {problem} (manifest "
                        "check)")
    return package
