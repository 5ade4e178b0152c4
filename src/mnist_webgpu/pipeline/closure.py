"""Which files of this package a stage runs: the in-package import closure of its module.

Found by reading the sources (an AST walk over every import, function-level ones too),
so a task's code dependencies are computed, never a hand-kept list that drifts. The unit is
the module: importing one runs it and the __init__.py of each package above it, never its
siblings; a non-Python file that shares a module's name is that module's (train/cpu_patch.c
beside train/cpu_patch.py). Free of tinygrad.
"""

from __future__ import annotations

import ast
import functools
import hashlib
from pathlib import Path

from mnist_webgpu.core.graph import reachable

PACKAGE_DIR = Path(__file__).resolve().parents[1]
PACKAGE = PACKAGE_DIR.name


def _file(module: str) -> Path | None:
    """'train' -> train/__init__.py, 'train.stage' -> train/stage.py."""
    base = PACKAGE_DIR.joinpath(*module.split(".")) if module else PACKAGE_DIR
    if base.is_dir() and (base / "__init__.py").is_file():
        return base / "__init__.py"
    file = base.with_suffix(".py")
    return file if module and file.is_file() else None


def _runtime_nodes(tree: ast.AST):
    """Every node, except under `if TYPE_CHECKING:` (imports there never run)."""
    todo = [tree]
    while todo:
        node = todo.pop()
        yield node
        for child in ast.iter_child_nodes(node):
            test = child.test if isinstance(child, ast.If) else None
            if test is not None and "TYPE_CHECKING" in ast.unparse(test):
                todo.extend(child.orelse)
                continue
            todo.append(child)


def _imported(module: str) -> set[str]:
    """The in-package modules `module`'s source imports, named relative to the package."""
    path = _file(module)
    if path is None:
        return set()
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()

    def add(name: str) -> None:
        if name != module and _file(name) is not None:
            found.add(name)

    for node in _runtime_nodes(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith(PACKAGE + "."):
                    add(alias.name.removeprefix(PACKAGE + "."))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".") if package else []
                parts = parts[: len(parts) - (node.level - 1)] if node.level > 1 else parts
                base = ".".join(parts + ([node.module] if node.module else []))
            elif node.module and (node.module == PACKAGE or node.module.startswith(PACKAGE + ".")):
                base = node.module.removeprefix(PACKAGE).lstrip(".")
            else:
                continue
            if base:
                add(base)
            for alias in node.names:  # `from . import data`: data is a module
                add(f"{base}.{alias.name}" if base else alias.name)
    return found


@functools.cache
def closure(*modules: str) -> tuple[Path, ...]:
    """Every package file the given modules run, directly or through imports (sorted)."""
    found: set[Path] = set()
    for m in reachable(modules, _imported):
        path = _file(m)
        if path is None:
            raise ValueError(f"{PACKAGE}.{m}: no such module")
        found.add(path)
        if path.name != "__init__.py":
            found.update(p for p in path.parent.glob(path.stem + ".*") if p.suffix not in (".py", ".pyc"))
        for folder in path.parents:  # each package's __init__ runs before the module
            if not folder.is_relative_to(PACKAGE_DIR):
                break
            found.add(folder / "__init__.py")
    return tuple(sorted(found))


def digest(*modules: str) -> str:
    """One hash of every file `modules` run: it changes exactly when their code does."""
    h = hashlib.sha256()
    for path in closure(*modules):
        h.update(path.relative_to(PACKAGE_DIR).as_posix().encode() + b"\0" + path.read_bytes())
    return h.hexdigest()
