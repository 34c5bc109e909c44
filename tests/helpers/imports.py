"""What a Python file imports, read from its syntax tree (no import runs)."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "src" / "dnalm"


def _module_file(parts: list[str]) -> Path | None:
    """The file of dnalm module `parts` (relative to the package): x.py or x/__init__.py."""
    base = PACKAGE.joinpath(*parts)
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def imports_of(path: Path) -> tuple[set[str], set[Path]]:
    """(third-party top-level modules, dnalm files) imported anywhere in a file.

    Function-level imports count too: `import torch` inside a function still runs in the
    rule's env. Any dnalm import runs dnalm/__init__.py (and a subpackage's __init__);
    `from dnalm import report` and `from . import x` import a submodule where it exists,
    and relative imports resolve from the importing file's own package.
    """
    third_party, internal = set(), {PACKAGE / "__init__.py"}
    here = list(path.parent.relative_to(PACKAGE).parts) if path.is_relative_to(PACKAGE) else []

    def add(parts: list[str], names: list[str]) -> None:
        for depth in range(1, len(parts) + 1):  # every package on the way runs its __init__
            if found := _module_file(parts[:depth]):
                internal.add(found)
        for name in names:
            if found := _module_file([*parts, name]):
                internal.add(found)

    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] == "dnalm":
                    add(parts[1:], [])
                else:
                    third_party.add(parts[0])
        elif isinstance(node, ast.ImportFrom):
            parts = (node.module or "").split(".") if node.module else []
            if node.level == 0 and parts[0] != "dnalm":
                third_party.add(parts[0])
                continue
            base = parts[1:] if node.level == 0 else here[: len(here) - (node.level - 1)] + parts
            add(base, [alias.name for alias in node.names])
    return third_party - set(sys.stdlib_module_names) - {"__future__"}, internal
