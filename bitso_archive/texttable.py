"""Plain-text tables for the reports (aligned columns, a rule under the header)."""

from __future__ import annotations


def text_table(headers: list[str], rows: list[list[str]], right: set[int]) -> list[str]:
    """The lines of a table; columns whose index is in ``right`` are right-aligned."""
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(headers)]

    def line(cells: list[str]) -> str:
        out = [
            c.rjust(w) if i in right else c.ljust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ]
        return "  ".join(out).rstrip()

    return [line(headers), line(["-" * w for w in widths]), *(line(r) for r in rows)]
