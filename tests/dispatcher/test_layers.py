"""Imports flow one way: the dispatcher never imports the workers, except to start them."""

from __future__ import annotations

import ast
from pathlib import Path

import dispatcher

# The CLI's process entry points (worker, beat, flower) start the workers: the only exception.
_ENTRY_POINTS = {"cli.py"}


def test_no_dispatcher_module_imports_the_workers() -> None:
    package = Path(dispatcher.__file__).parent
    offenders = []
    for module in sorted(package.rglob("*.py")):
        if module.name in _ENTRY_POINTS:
            continue
        for node in ast.walk(ast.parse(module.read_text(), str(module))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            offenders += [
                f"{module.name}:{node.lineno} imports {name}"
                for name in names
                if name == "workers" or name.startswith("workers.")
            ]

    assert offenders == []
