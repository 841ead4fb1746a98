"""export/__init__.py: the public names, loaded lazily at run time and typed for checkers."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import export


def test_type_checkers_see_every_public_name_where_it_is_loaded_from() -> None:
    """The names come from a module __getattr__, which type checkers read as Any; the
    TYPE_CHECKING imports give them their types, and must name the same homes."""
    tree = ast.parse(Path(export.__file__).read_text(encoding="utf-8"))
    guarded = next(node for node in tree.body if isinstance(node, ast.If))
    typed = {
        alias.name: node.module
        for node in guarded.body
        if isinstance(node, ast.ImportFrom)
        for alias in node.names
    }
    assert typed == export._HOMES
    for name, home in typed.items():
        assert getattr(export, name) is getattr(importlib.import_module(home), name)
    assert (Path(export.__file__).parent / "py.typed").is_file()
