"""Result folders of named systems, their packages, and hostile archives, for the comparison
tests (score/package.py, score/unpack.py, score/page.py, score/mlperf.py).

This module holds helpers only (no tests).
"""

import io
import json
import tarfile
from pathlib import Path

from tests.helpers.score import reaching_at, write_run

MODELS = ("X3D_M", "MVIT_B_16x4")


def write_system(results: Path, system: str, t_bench: float, gpus: int = 4,
                 machine: str = "4 x NVIDIA A100", runs: int = 2,
                 description: dict | None = None) -> list[Path]:
    """`runs` runs of both models recorded with run.json ``system``, each reaching the target
    near `t_bench` (+10 s per run), with a system description."""
    folders = []
    for k in range(runs):
        for config in MODELS:
            folder = write_run(results, config, f"20261207T06{k:02d}00Z-{system}", gpus=gpus,
                               machine=machine, extra={"system": system},
                               **reaching_at(t_bench + 10 * k, config))
            (folder / "system_description.json").write_text(json.dumps(
                description or {"interconnect": "NVLink", "storage": "local NVMe"}))
            (folder / "checkpoint.pt").write_bytes(b"not packaged")
            (folder / "heartbeat").write_text("1.0\n")
            folders.append(folder)
    return folders


def repack(folder: Path, archive: Path) -> Path:
    """A tar.gz of `folder` (an unpacked package) as one top folder, as make package writes."""
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(folder, arcname=folder.name)
    return archive


def unpack_plain(archive: Path, into: Path) -> Path:
    """Unpack one of our own (trusted) packages for tampering; its top folder."""
    with tarfile.open(archive) as tar:
        tar.extractall(into, filter="data")
    return next(into.iterdir())


def member(name: str, data: bytes = b"x", kind: bytes = tarfile.REGTYPE,
           link: str = "", size: int | None = None) -> tuple[tarfile.TarInfo, io.BytesIO | None]:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = link
    info.size = len(data) if size is None and kind == tarfile.REGTYPE else (size or 0)
    return info, io.BytesIO(data) if kind == tarfile.REGTYPE else None


def hostile_archive(path: Path, members: list[tuple[tarfile.TarInfo, io.BytesIO | None]],
                    good: Path | None = None) -> Path:
    """A tar.gz holding the unpacked package `good` (if any) and then the given members."""
    with tarfile.open(path, "w:gz") as tar:
        if good is not None:
            tar.add(good, arcname=good.name)
        for info, data in members:
            tar.addfile(info, data)
    return path
