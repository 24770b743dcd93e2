"""Text blocks for a terminal at most 120 columns wide: short cells, numbered notes below.

A table cell holds a short label ("non-compliant [1]"); the long reason behind it is a note,
numbered once per distinct text for the whole output and listed below the first table that
uses it. A column that would still push a line past the width is cut with "..." (score.md and
score.csv keep every column and the full text).
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterable
from dataclasses import dataclass, field

from score.readers import safe_text

WIDTH = 120
INDENT = "  "
MIN_COLUMN = 10  # a text column is never cut narrower than this
SEPARATOR = "  "


@dataclass
class Notes:
    """Long texts, each numbered once in order of first use."""

    texts: list[str] = field(default_factory=list)
    listed: int = 0  # how many are already printed below a table

    def refs(self, texts: Iterable[str]) -> str:
        """ "[2]" or "[1,3]" for `texts` (numbering new ones), "" for none."""
        numbers = []
        for text in texts:
            text = safe_text(text)
            if text not in self.texts:
                self.texts.append(text)
            numbers.append(self.texts.index(text) + 1)
        return f"[{','.join(str(n) for n in sorted(set(numbers)))}]" if numbers else ""

    def labelled(self, label: str, texts: Iterable[str]) -> str:
        """`label` followed by the references of `texts`: "non-compliant [1,2]"."""
        refs = self.refs(texts)
        return f"{label} {refs}" if refs else label

    def new_lines(self) -> list[str]:
        """The notes not listed yet, each wrapped to the width."""
        lines = []
        for number in range(self.listed + 1, len(self.texts) + 1):
            lines += wrap(f"[{number}] {self.texts[number - 1]}", indent=" " * 4)
        self.listed = len(self.texts)
        return lines


@dataclass
class Block:
    """One table: rows in sections under a heading line each ("" for no heading)."""

    title: str
    headers: list[str]
    numeric: set[int]  # right-aligned columns, never cut
    sections: list[tuple[str, list[list[str]]]]
    after: list[str] = field(default_factory=list)  # lines below the table (notes)
    labels: set[int] = field(default_factory=set)  # columns with note numbers: cut last


def plain_block(title: str, headers: list[str], rows: list[list[str]], numeric: set[int]) -> Block:
    """A table without sections or notes (score.tables.Table's fields) as a block."""
    return Block(title, headers, numeric, [("", rows)])


def wrap(text: str, indent: str = INDENT) -> list[str]:
    """`text` as lines of at most WIDTH columns, continuation lines indented."""
    return textwrap.wrap(safe_text(text), WIDTH, subsequent_indent=indent,
                         break_on_hyphens=False) or [""]


def cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: max(width - 3, 0)] + "..."


def fit_widths(widths: list[int], numeric: set[int], last: set[int], room: int) -> list[int]:
    """Narrow the widest text column by one, again and again, until the row fits `room`:
    the cuts fall on the longest texts (a machine or config name) and spread evenly. The
    columns in `last` (labels with note numbers) are cut only when nothing else is left."""
    widths = list(widths)
    for spared in (numeric | last, numeric):
        while sum(widths) + len(SEPARATOR) * (len(widths) - 1) > room:
            candidates = [i for i, w in enumerate(widths) if i not in spared and w > MIN_COLUMN]
            if not candidates:
                break  # only numbers and short labels left: nothing sensible to cut
            widths[max(candidates, key=lambda i: widths[i])] -= 1
    return widths


def render(block: Block) -> str:
    """The block as text lines of at most WIDTH columns (a note line aside, none longer)."""
    lines = [line for part in block.title.split("\n") for line in wrap(part)]
    rows = [[safe_text(cell) for cell in row] for _, section in block.sections for row in section]
    if not block.headers:
        return "\n".join(lines + block.after) + "\n"
    if not rows:
        return "\n".join([*lines, f"{INDENT}(none)", *block.after]) + "\n"
    # A column empty in every row (no notes) is left out.
    keep = [i for i in range(len(block.headers)) if any(row[i] for row in rows)]
    if len(keep) < len(block.headers):
        block = Block(block.title, [block.headers[i] for i in keep],
                      {keep.index(i) for i in block.numeric if i in keep},
                      [(heading, [[row[i] for i in keep] for row in section])
                       for heading, section in block.sections], block.after,
                      {keep.index(i) for i in block.labels if i in keep})
        rows = [[row[i] for i in keep] for row in rows]
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(block.headers)]
    widths = fit_widths(widths, block.numeric, block.labels, WIDTH - len(INDENT))

    def line(cells: list[str]) -> str:
        parts = [cut(safe_text(cell), w).rjust(w) if i in block.numeric
                 else cut(safe_text(cell), w).ljust(w)
                 for i, (cell, w) in enumerate(zip(cells, widths, strict=True))]
        return (INDENT + SEPARATOR.join(parts)).rstrip()

    lines += [line(block.headers), INDENT + SEPARATOR.join("-" * w for w in widths)]
    for heading, section in block.sections:
        if heading:
            lines.append(cut(safe_text(heading), WIDTH))
        lines += [line(row) for row in section]
    return "\n".join(lines + block.after) + "\n"
