"""Names a newcomer can find: no two classes share a name anywhere in the shipped code (the two
functions, the reader, the shared modules and the test kit), so a name found in a log, a
traceback or a doc leads to one place."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ("functions", "bitso_archive", "bitso_testkit")
SHARED_MODULES = ("bitso_format.py", "bitso_http.py", "bitso_logs.py")


def test_no_two_classes_share_a_name() -> None:
    sources = [p for top in SHIPPED for p in (ROOT / top).rglob("*.py")]
    sources += [ROOT / module for module in SHARED_MODULES]
    homes: dict[str, list[str]] = defaultdict(list)
    for source in sources:
        for node in ast.walk(ast.parse(source.read_text(), str(source))):
            if isinstance(node, ast.ClassDef):
                homes[node.name].append(source.relative_to(ROOT).as_posix())
    assert len(homes) > 100  # the walk found the code
    shared = {name: places for name, places in homes.items() if len(places) > 1}
    assert not shared, shared
