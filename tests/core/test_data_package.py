"""core.data as a package: every name it offers imports, and no module in it grows past ~800 lines (issue 33)."""
from __future__ import annotations

import importlib
from pathlib import Path

import core.data


def test_every_exported_name_imports_and_every_module_stays_small():
    missing = [name for name in core.data.__all__ if not hasattr(core.data, name)]  # `from core.data import` fails
    assert not missing, missing
    modules = sorted(p for p in Path(core.data.__file__).parent.glob("*.py") if p.name != "__init__.py")
    assert len(modules) >= 8, modules
    for path in modules:
        module = importlib.import_module(f"core.data.{path.stem}")
        missing = [n for n in getattr(module, "__all__", []) if not hasattr(module, n)]
        assert not missing, (path.name, missing)
        assert module.__doc__ and module.__doc__.strip(), f"{path.name} has no docstring saying its job"
        lines = len(path.read_text().splitlines())
        assert lines <= 800, f"{path.name} has {lines} lines; split it by job (issue 33)"
