"""Shared by the fault tests: odd and broken videos, processes to kill, store snapshots.

The randomised kill tests repeat ``FAULT_ROUNDS`` times (environment, default 1: the fast
subset of ``make test``; ``make faults`` runs 10). Kill points are drawn from a generator
seeded with ``FAULT_SEED`` (environment, default: fresh entropy); every failure message
shows the seed so that a failing round can be replayed.
"""

from __future__ import annotations

import ctypes
import os
import random
import signal
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from preprocess.encode import x264_options

REPO = Path(__file__).resolve().parents[2]
FAULT_ROUNDS = max(1, int(os.environ.get("FAULT_ROUNDS", "1")))
FAULT_SEED = int(os.environ.get("FAULT_SEED", str(int.from_bytes(os.urandom(4), "little"))))
ONE_THREAD_ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def fault_rng(name: str) -> random.Random:
    """The generator of one test's kill points (FAULT_SEED and the test's name)."""
    return random.Random(f"{FAULT_SEED}:{name}")


def replay_hint(round_: int) -> str:
    return f"round {round_}; replay with FAULT_SEED={FAULT_SEED} FAULT_ROUNDS={FAULT_ROUNDS}"


# ---- videos -----------------------------------------------------------------------------

def gradient_frames(count: int, width: int, height: int, seed: int = 0) -> np.ndarray:
    """Cheap moving-gradient RGB frames (any size, also 4K), different per ``seed``."""
    x = (np.arange(width, dtype=np.int64) * 255 // max(width - 1, 1)).astype(np.uint8)
    y = (np.arange(height, dtype=np.int64) * 255 // max(height - 1, 1)).astype(np.uint8)
    frames = np.empty((count, height, width, 3), np.uint8)
    for i in range(count):
        frames[i, :, :, 0] = x[None, :] + np.uint8((5 * i + 40 * seed) % 256)
        frames[i, :, :, 1] = y[:, None]
        frames[i, :, :, 2] = x[None, :] // 2 + y[:, None] // 2 + np.uint8(3 * i % 128)
    return frames


def encode_video(path: Path, frames: np.ndarray, fps: Fraction, pix_fmt: str = "yuv420p",
                 pts: list[int] | None = None, time_base: Fraction | None = None,
                 rotation: int = 0, preset: str = "veryfast") -> Path:
    """H.264 in mp4 with the options the odd inputs need: 4:4:4 for odd frame sizes, given
    time stamps for a variable frame rate, a display-matrix rotation tag."""
    with av.open(str(path), "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = pix_fmt
        stream.codec_context.options = x264_options(23, preset)
        if time_base is not None:
            stream.codec_context.time_base = time_base
            stream.time_base = time_base
        if rotation:
            stream.set_display_rotation(rotation)
        for i, img in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            if pts is not None:
                frame.pts, frame.time_base = pts[i], time_base
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return Path(path)


def display_rotation(path: Path) -> float | None:
    """The rotation tag of a file's video stream as a decoder reports it on its frames."""
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            return frame.rotation
    return None


def write_audio_only(path: Path) -> None:
    with av.open(str(path), "w", format="mp4") as container:
        stream = container.add_stream("aac", rate=22050)
        for i in range(4):
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp",
                                               layout="mono")
            frame.sample_rate, frame.pts = 22050, i * 1024
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def mp4_boxes(data: bytes) -> dict[str, tuple[int, int]]:
    """Top-level boxes of an mp4 file: type -> (offset, size)."""
    boxes, i = {}, 0
    while i + 8 <= len(data):
        size, kind = struct.unpack(">I4s", data[i : i + 8])
        if size == 1:
            size = struct.unpack(">Q", data[i + 8 : i + 16])[0]
        boxes[kind.decode("latin-1")] = (i, size)
        if size < 8:
            break
        i += size
    return boxes


def faststart(src: Path, dst: Path) -> Path:
    """A copy of ``src`` with the index (moov) moved in front of the frames."""
    import imageio_ffmpeg

    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-loglevel", "error", "-y", "-i", str(src),
                    "-c", "copy", "-movflags", "+faststart", "-f", "mp4", str(dst)], check=True)
    return dst


# ---- processes --------------------------------------------------------------------------

def _drop_file_permission_override() -> None:
    """In the child, before exec: remove CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH from the
    bounding set, so that root obeys file modes like any user (chmod 000 then really makes
    a file unreadable). Without these, root still owns its files, so nothing else changes."""
    libc = ctypes.CDLL(None, use_errno=True)
    for capability in (1, 2):  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH
        if libc.prctl(24, capability, 0, 0, 0) != 0:  # PR_CAPBSET_DROP
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP) failed")


def run_obeying_file_modes(args: list[str], **kwargs) -> subprocess.CompletedProcess:
    """Run a command whose file reads obey permission bits, also when the tests run as root."""
    preexec = _drop_file_permission_override if os.geteuid() == 0 else None
    return subprocess.run(args, cwd=REPO, capture_output=True, text=True,
                          preexec_fn=preexec, **kwargs)


def python_module(module: str, *args: str, **kwargs) -> subprocess.Popen:
    """Start ``python -m module args`` in the repo with one compute thread."""
    return subprocess.Popen([sys.executable, "-m", module, *args], cwd=REPO,
                            env=ONE_THREAD_ENV, **kwargs)


def _process_stats() -> Iterator[tuple[int, list[str]]]:
    """(pid, fields of /proc/<pid>/stat after the command name) of every process: state,
    parent pid, process group, ..."""
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as f:
                    yield int(entry), f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue


def children(pid: int) -> list[int]:
    """Pids whose parent is ``pid``."""
    return [p for p, fields in _process_stats() if int(fields[1]) == pid]


def group_members(pgid: int) -> list[int]:
    """Running pids of process group ``pgid``."""
    return [p for p, fields in _process_stats() if int(fields[2]) == pgid and fields[0] != "Z"]


def environment_of(pid: int) -> dict[str, str]:
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            items = f.read().split(b"\0")
    except OSError:
        return {}
    return dict(i.decode(errors="replace").split("=", 1) for i in items if b"=" in i)


def is_alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie counts as ended)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def kill(pids: list[int], sig: int = signal.SIGKILL) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def wait_until(condition: Callable[[], bool], proc: subprocess.Popen | None = None,
               timeout: float = 180.0, interval: float = 0.002, what: str = "") -> None:
    """Poll ``condition`` until true; fail if ``proc`` ends first or the time runs out."""
    deadline = time.monotonic() + timeout
    while not condition():
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"the process ended (exit {proc.returncode}) before: {what}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for: {what}")
        time.sleep(interval)


def wait_gone(pids: list[int], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while any(is_alive(p) for p in pids):
        assert time.monotonic() < deadline, f"processes {pids} still running"
        time.sleep(0.02)


# ---- stores ---------------------------------------------------------------------------

def tree(folder: Path, skip: tuple[str, ...] = ()) -> dict[str, bytes]:
    """Every file under ``folder`` (relative path -> bytes), except the top-level ``skip``."""
    folder = Path(folder)
    out = {}
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder).as_posix()
        if rel in skip:
            continue
        out[rel] = b"<dir>" if path.is_dir() else path.read_bytes()
    return out
