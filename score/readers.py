"""Defensive reading of a results tree that anyone may have written into.

A results folder is user-writable: a FIFO named ``run.json`` would block a plain ``open``, a
symlink to ``/dev/zero`` would fill memory, a JSON escape can carry a lone surrogate that no
encoder writes, and a folder name need not be UTF-8. Every read here checks the file type
before opening, opens without blocking, reads at most a bounded number of bytes, and every
string that leaves the scorer goes through ``safe_text``.
"""

from __future__ import annotations

import json
import os
import stat
import time
import unicodedata
from pathlib import Path

from score import ScoreError

MB = 1024 * 1024
# A run.json or system.json is a few kB; an epochs.csv of 20 epochs a few kB, of a
# hand-made 100 000-row file a few MB. Anything beyond these is not a result file.
MAX_JSON_BYTES = 4 * MB
MAX_CSV_BYTES = 64 * MB
MAX_TEXT_CHARS = 300  # one value in a table cell or a warning (a machine name, a reason)

_FILE_KINDS = (
    (stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
)


def safe_text(value: object, limit: int | None = None) -> str:
    """`value` as a string that any UTF-8 writer and any terminal accept, on one line.

    Lone surrogates (from ``"\\udce9"`` in JSON, or a non-UTF-8 file name decoded by Python)
    become ``\\udce9`` escapes; control characters (newlines, terminal escapes) become
    ``\\x..`` escapes. With `limit`, long text is cut and ends with "...".
    """
    text = value if isinstance(value, str) else str(value)
    text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    if not text.isprintable():
        text = "".join(ch if ch.isprintable() or ch == " " else _escape(ch) for ch in text)
    if limit is not None and len(text) > limit:
        text = text[: limit - 3] + "..."
    return text


def _escape(ch: str) -> str:
    if unicodedata.category(ch) == "Zs":  # other spaces (no-break, ideographic) are fine
        return ch
    code = ord(ch)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def shown(path: Path) -> str:
    """A path for a message: non-UTF-8 bytes of a file name shown as escapes."""
    return safe_text(os.fspath(path))


def file_kind(mode: int) -> str | None:
    """What a non-regular file is ("a FIFO", ...), or None for a regular file."""
    if stat.S_ISREG(mode):
        return None
    for check, name in _FILE_KINDS:
        if check(mode):
            return name
    return "not a regular file"


def read_regular(path: Path, limit: int) -> bytes:
    """The bytes of a regular file of at most `limit` bytes; ScoreError otherwise.

    The type is checked with stat before anything is opened (a FIFO or a device is never
    opened: opening a tape or a FIFO has effects); the open is non-blocking and the type is
    checked again on the open file, in case the path was swapped in between.
    """
    try:
        kind = file_kind(os.stat(path).st_mode)
    except FileNotFoundError as error:
        if os.path.lexists(path):
            raise ScoreError(f"{shown(path)}: broken symbolic link") from error
        raise ScoreError(f"{shown(path)}: missing") from error
    except OSError as error:
        raise ScoreError(f"{shown(path)}: cannot read ({error.strerror})") from error
    if kind:
        raise ScoreError(f"{shown(path)}: {kind}, not a file; not opened")
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY)
    except OSError as error:
        raise ScoreError(f"{shown(path)}: cannot read ({error.strerror})") from error
    try:
        kind = file_kind(os.fstat(fd).st_mode)
        if kind:
            raise ScoreError(f"{shown(path)}: {kind}, not a file")
        chunks, size = [], 0
        while size <= limit:
            chunk = os.read(fd, min(limit + 1 - size, MB))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    except OSError as error:
        raise ScoreError(f"{shown(path)}: cannot read ({error.strerror})") from error
    finally:
        os.close(fd)
    if size > limit:
        raise ScoreError(f"{shown(path)}: larger than {limit // MB} MB (not a result file of "
                         "this benchmark); not read")
    return b"".join(chunks)


def read_json_object(path: Path, required: bool) -> dict:
    """A JSON object from `path` ({} if it is absent and not required)."""
    try:
        data = json.loads(read_regular(path, MAX_JSON_BYTES).decode("utf-8"))
    except ScoreError as error:
        if not required and str(error).endswith(": missing"):
            return {}
        raise
    except (UnicodeDecodeError, ValueError) as error:  # JSONDecodeError is a ValueError
        reason = safe_text(error, 120)
        raise ScoreError(f"{shown(path)}: not valid JSON ({reason})") from error
    except RecursionError as error:  # "[[[[..." thousands deep
        raise ScoreError(f"{shown(path)}: not valid JSON (nested too deeply)") from error
    if not isinstance(data, dict):
        raise ScoreError(f"{shown(path)}: expected a JSON object, found {type(data).__name__}")
    return data


def age_s(path: Path) -> float | None:
    """Seconds since `path` (the file itself, not a link's target) was last modified."""
    try:
        return time.time() - os.lstat(path).st_mtime
    except OSError:
        return None
