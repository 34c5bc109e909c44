"""The package's layout holds: stages import downward only (docs/layout.md, The import rule),
no two modules import each other, and every stage says what it owns."""

from __future__ import annotations

import importlib

import pytest
from helpers.imports import PACKAGE, imports_of

# Left to right: a module may import from its own stage and the stages to its left.
STAGES = ["foundation", "inputs", "windows", "encoders", "embedding", "learning", "outputs", "variants", "annotation", "workflow"]
MODULES = sorted(PACKAGE.rglob("*.py"))


def stage(path) -> str:
    parts = path.relative_to(PACKAGE).parts
    return parts[0] if len(parts) > 1 else "foundation"


def test_stages_are_the_package_folders():
    folders = {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert folders == set(STAGES[1:])


@pytest.mark.parametrize("module", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_go_downward(module):
    if module.name == "cli.py":  # the one entry point: each command imports what it runs
        return
    mine = STAGES.index(stage(module))
    upward = sorted(str(found.relative_to(PACKAGE)) for found in imports_of(module)[1]
                    if STAGES.index(stage(found)) > mine)
    assert not upward, f"{module.relative_to(PACKAGE)} ({stage(module)}) imports from later stages: {upward}"


def test_no_two_modules_import_each_other():
    """Cycles through a package's __init__ (a registry importing its members) aside."""
    graph = {m: {f for f in imports_of(m)[1] if f.name != "__init__.py" and f != m}
             for m in MODULES if m.name != "__init__.py"}

    def reaches(start, goal, seen):
        for nxt in graph.get(start, ()):
            if nxt == goal:
                return True
            if nxt not in seen:
                seen.add(nxt)
                if reaches(nxt, goal, seen):
                    return True
        return False

    cycles = sorted(str(m.relative_to(PACKAGE)) for m in graph if reaches(m, m, set()))
    assert not cycles, f"modules on an import cycle: {cycles}"


@pytest.mark.parametrize("name", STAGES[1:])
def test_every_stage_says_what_it_owns(name):
    doc = importlib.import_module(f"dnalm.{name}").__doc__ or ""
    assert len(doc.split()) > 25, f"dnalm.{name} has no docstring of what it owns and its contract"
