"""YAML read with bounded size, alias expansion, nesting and numbers: the one reader of
every YAML input (presets, ``--set`` values, reference files, a run's config.yaml).

Plain ``yaml.safe_load`` trusts its input in ways a hand-made or hostile file exploits:

- size: a 50 MB preset is parsed (pure-Python PyYAML, 1-2 s per MB) before any check
  sees it; here the size is checked with ``stat`` before anything is read, and at most
  ``max_bytes`` + 1 bytes are ever read;
- aliases: ``&a [1, 1, ...]``, ``&b [*a, *a, ...]``, ... nine levels deep load in
  milliseconds as shared lists, then blow up (10^9 elements) when the result is walked,
  compared or written out; here every node is counted as if its aliases were expanded, and
  the load stops once that count passes ``max_nodes`` (an alias to a node that holds it,
  a recursive structure, is refused too);
- nesting: ``[[[[...`` thousands deep is a RecursionError in the composer; here the depth,
  aliases expanded, stops at ``max_depth``;
- numbers: an integer of 400 digits (or of 5000, beyond Python's conversion limit) where a
  GPU count goes becomes an OverflowError far from the file; here integers must fit in
  64 bits (as they are stored downstream) and a float written as finite (``1.0e+400``) must
  not overflow to infinity; no number literal longer than ``MAX_NUMBER_CHARS`` is converted.

Each refusal is a ``YamlRefused`` whose text is the reason in one line (with the line of the
file where it applies); callers prefix the file's name, as they do for PyYAML's own errors,
which pass through unchanged.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import yaml
from yaml.events import AliasEvent

# A preset, a reference file or a run's config.yaml is a few kB and about 100 values; the
# limits keep the worst input within 256 KiB to about half a second of parsing.
MAX_BYTES = 256 * 1024
MAX_NODES = 20_000  # values once aliases are expanded
MAX_DEPTH = 64  # nesting levels; a preset has 2
MAX_NUMBER_CHARS = 100  # no number needs more; int() of longer text costs and can fail
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


class YamlRefused(ValueError):
    """A YAML input refused before or while it was read: too large, an alias bomb, nested too
    deeply, a number out of range, not UTF-8, or not a regular file. ``str()`` is one line."""


def _line(node_or_mark: Any) -> str:
    mark = getattr(node_or_mark, "start_mark", node_or_mark)
    return f"line {mark.line + 1}" if mark is not None else "somewhere"


def _number(kind: str, text: str) -> str:
    """A number literal for a message: a 400-digit one must not fill the line."""
    if len(text) <= 24:
        return f"the {kind} {text}"
    return f"{'an' if kind == 'integer' else 'a'} {kind} of {len(text)} characters"


class _BoundedLoader(yaml.SafeLoader):
    """SafeLoader (the pure-Python composer, whose steps can be counted) with the limits."""

    def __init__(self, text: str, max_nodes: int, max_depth: int):
        super().__init__(text)
        self.max_nodes, self.max_depth = max_nodes, max_depth
        self.nodes = 0  # nodes composed so far, an alias counted at its expanded size
        self.depth = 0  # depth of the node being composed
        self.deepest = 0  # deepest level reached inside it, aliases expanded
        self.expanded: dict[str, tuple[int, int]] = {}  # anchor -> (nodes, height)
        self.aliases = 0  # aliases met so far

    def _add(self, count: int, mark: Any) -> None:
        self.nodes += count
        if self.nodes > self.max_nodes:
            if self.aliases:
                raise YamlRefused(f"over {self.max_nodes} values with aliases expanded "
                                  f"({_line(mark)}); an alias bomb?")
            raise YamlRefused(f"over {self.max_nodes} values ({_line(mark)}); no input of "
                              "this project holds that many")

    def compose_node(self, parent: Any, index: Any) -> Any:
        event = self.peek_event()
        if self.check_event(AliasEvent):
            if event.anchor in self.anchors:  # an undefined one is PyYAML's own error
                if event.anchor not in self.expanded:
                    raise YamlRefused(f"alias *{event.anchor} ({_line(event)}) is inside the "
                                      "node it names (recursive)")
                count, height = self.expanded[event.anchor]
                self.aliases += 1
                self._reach(self.depth + height, event)
                self._add(count, event)
            return super().compose_node(parent, index)
        self.depth += 1
        self._reach(self.depth, event)
        outer_deepest, self.deepest = self.deepest, self.depth
        before = self.nodes
        node = super().compose_node(parent, index)
        self._add(1, event)
        if event.anchor is not None:
            self.expanded[event.anchor] = (self.nodes - before, self.deepest - self.depth + 1)
        self.deepest = max(outer_deepest, self.deepest)
        self.depth -= 1
        return node

    def _reach(self, depth: int, mark: Any) -> None:
        if depth > self.max_depth:
            raise YamlRefused(f"nested more than {self.max_depth} levels deep, aliases "
                              f"expanded ({_line(mark)})")
        self.deepest = max(self.deepest, depth)

    def construct_bounded_int(self, node: Any) -> int:
        text = self.construct_scalar(node)
        value = super().construct_yaml_int(node) if len(text) <= MAX_NUMBER_CHARS else None
        if value is None or not INT64_MIN <= value <= INT64_MAX:
            raise YamlRefused(f"{_line(node)}: {_number('integer', text)} is beyond 64 bits")
        return value

    def construct_bounded_float(self, node: Any) -> float:
        text = self.construct_scalar(node)
        if len(text) > MAX_NUMBER_CHARS:
            raise YamlRefused(f"{_line(node)}: {_number('number', text)} is too long")
        value = super().construct_yaml_float(node)
        if value in (float("inf"), float("-inf")) and "inf" not in text.lower():
            raise YamlRefused(f"{_line(node)}: {_number('number', text)} is beyond the "
                              "float range")
        return value


_BoundedLoader.add_constructor("tag:yaml.org,2002:int", _BoundedLoader.construct_bounded_int)
_BoundedLoader.add_constructor("tag:yaml.org,2002:float",
                               _BoundedLoader.construct_bounded_float)


def load_yaml_text(text: str, max_bytes: int = MAX_BYTES, max_nodes: int = MAX_NODES,
                   max_depth: int = MAX_DEPTH) -> Any:
    """One YAML document from ``text`` within the limits (module doc). Raises YamlRefused, or
    PyYAML's own YAMLError for text that is not YAML."""
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > max_bytes:
        raise YamlRefused(f"{size} bytes, more than the {max_bytes} a YAML input may have")
    loader = _BoundedLoader(text, max_nodes, max_depth)
    try:
        return loader.get_single_data()
    except RecursionError:  # cannot happen within MAX_DEPTH; kept as a one-line refusal
        raise YamlRefused("nested too deeply") from None
    finally:
        loader.dispose()


def read_limited(path: Path, max_bytes: int = MAX_BYTES) -> bytes:
    """The bytes of the regular file ``path``, refused by its size before anything is read.

    A FIFO, socket or device (or a link to one: /dev/zero) is never opened; the open is
    non-blocking and the type checked again on the open file, in case the path was swapped.
    """
    try:
        info = os.stat(path)
    except OSError as error:
        raise YamlRefused(f"cannot read ({error.strerror})") from None
    if not stat.S_ISREG(info.st_mode):
        raise YamlRefused("not a regular file; not opened")
    if info.st_size > max_bytes:
        raise YamlRefused(f"{info.st_size} bytes, more than the {max_bytes} a YAML file may "
                          "have; not read")
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY)
    except OSError as error:
        raise YamlRefused(f"cannot read ({error.strerror})") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise YamlRefused("not a regular file")
        data = b""
        while len(data) <= max_bytes:  # the file may grow after the stat
            chunk = os.read(fd, max_bytes + 1 - len(data))
            if not chunk:
                break
            data += chunk
    except OSError as error:
        raise YamlRefused(f"cannot read ({error.strerror})") from None
    finally:
        os.close(fd)
    if len(data) > max_bytes:
        raise YamlRefused(f"more than the {max_bytes} bytes a YAML file may have; not read")
    return data


def load_yaml_file(path: Path, max_bytes: int = MAX_BYTES, max_nodes: int = MAX_NODES,
                   max_depth: int = MAX_DEPTH) -> Any:
    """One YAML document from the file ``path`` within the limits (module doc)."""
    data = read_limited(path, max_bytes)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise YamlRefused(f"not UTF-8 text (byte {data[error.start]:#04x} at offset "
                          f"{error.start})") from None
    return load_yaml_text(text, max_bytes, max_nodes, max_depth)
