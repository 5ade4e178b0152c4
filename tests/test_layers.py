"""The package's imports flow one way, tinygrad's internals are reached from one fenced place,
and each task's code dependencies are the import closure of its stage."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from mnist_webgpu import sources, tasks

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = sources.PACKAGE_DIR
TINYGRAD_INTERNALS = (
    "tinygrad.codegen",
    "tinygrad.runtime",
    "tinygrad.uop",
    "tinygrad.engine",
    "tinygrad.renderer",
)
# the stages in the order data flows; each may import those before it, never those after
STAGES = ["data", "drawings", "train", "sweep", "export", "site", "verify", "deploy", "serve"]


def module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts}


def graph() -> dict[str, set[str]]:
    return {m: sources._imported(m) for m in modules()}


def test_every_module_is_found_by_the_import_walk():
    walked = {m for deps in graph().values() for m in deps} | {"__main__", "", "tasks"}
    assert set(modules()) - walked == set()


def test_no_import_cycle_inside_the_package():
    edges = graph()
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        path.append(m)
        for dep in sorted(edges.get(m, ())):
            # a subpackage and its own modules share a namespace (patches/cpu.py takes PatchError
            # from patches/__init__.py, which loads cpu.py lazily): that is one unit, not a cycle
            if dep.startswith(m + ".") or m.startswith(dep + "."):
                continue
            if state.get(dep) == 1:
                raise AssertionError("import cycle: " + " -> ".join([*path[path.index(dep) :], dep]))
            if dep not in state:
                visit(dep)
        path.pop()
        state[m] = 2

    for m in sorted(edges):
        if m not in state:
            visit(m)


def test_a_cycle_would_be_caught(monkeypatch):
    """The cycle check itself can fail: feed it a package where a imports b and b imports a."""
    fake = {"a": {"b"}, "b": {"a"}}
    monkeypatch.setattr(sources, "_imported", lambda m: fake.get(m, set()))
    monkeypatch.setattr("test_layers.modules", lambda: dict.fromkeys(fake, Path()))
    with pytest.raises(AssertionError, match="import cycle: a -> b -> a"):
        test_no_import_cycle_inside_the_package()


@pytest.mark.parametrize("stage", STAGES)
def test_stages_import_only_earlier_stages(stage):
    reached = {p for p in sources.closure(stage)}
    later = STAGES[STAGES.index(stage) + 1 :]
    for other in later:
        assert sources._file(other) not in reached, f"{stage} imports the later stage {other}"


def tinygrad_imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module)
    return {n for n in found if n.startswith("tinygrad")}


def test_tinygrad_internals_only_in_the_patches_package_and_the_exporter():
    allowed = {PACKAGE / "export.py", *(PACKAGE / "patches").glob("*.py")}
    for path in modules().values():
        internal = {n for n in tinygrad_imports(path) if n.startswith(TINYGRAD_INTERNALS)}
        if path not in allowed:
            assert not internal, f"{path.relative_to(ROOT)} imports tinygrad internals {sorted(internal)}"


def test_only_the_patches_package_swaps_tinygrad_attributes():
    for path in modules().values():
        if "patches" in path.parts:
            continue
        text = path.read_text(encoding="utf-8")
        assert "swapped(" not in text and "setattr(" not in text, (
            f"{path.relative_to(ROOT)} patches something"
        )


def imported_names(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module.split(".")[0])
    return names


def test_bench_never_imports_tests():
    test_modules = {p.stem for p in (ROOT / "tests").glob("*.py")} | {"tests"}
    for path in (ROOT / "bench").glob("*.py"):
        wrong = imported_names(path) & test_modules
        assert not wrong, f"{path.relative_to(ROOT)} imports test modules {sorted(wrong)}"


def test_task_code_dependencies_are_the_import_closure(fast_config):
    train = next(tasks.train_tasks(fast_config))
    deps = {Path(p) for p in train["file_dep"]}
    for name in (
        "train.py",
        "models.py",
        "data.py",
        "layout.py",
        "schemas.py",
        "patches/cpu.py",
        "patches/cpu_pool.c",
    ):
        assert PACKAGE / name in deps, name
    assert PACKAGE / "site" / "__init__.py" not in deps  # a template change never retrains
    compile_deps = {Path(p) for p in next(tasks.compile_tasks(fast_config))["file_dep"]}
    assert {PACKAGE / "export.py", PACKAGE / "forms.py", PACKAGE / "patches" / "wgsl.py"} <= compile_deps
    assert PACKAGE / "train.py" not in compile_deps


def test_a_new_import_joins_the_closure(tmp_path, monkeypatch):
    """Adding `from . import x` to a stage makes x (and what x imports) a dependency at once."""
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "stage.py").write_text("from . import helper\n")
    (package / "helper.py").write_text("def f():\n    from .sub import deep\n")
    (package / "sub" / "__init__.py").write_text("")
    (package / "sub" / "deep.py").write_text("from ..other import x\n")
    (package / "sub" / "data.c").write_text("int x;\n")
    (package / "other.py").write_text("x = 1\n")
    (package / "unused.py").write_text("")
    monkeypatch.setattr(sources, "PACKAGE_DIR", package)
    monkeypatch.setattr(sources, "PACKAGE", "pkg")
    sources.closure.cache_clear()
    try:
        found = {p.relative_to(package).as_posix() for p in sources.closure("stage")}
    finally:
        sources.closure.cache_clear()
    assert found == {
        "__init__.py",
        "stage.py",
        "helper.py",
        "sub/__init__.py",
        "sub/deep.py",
        "sub/data.c",
        "other.py",
    }
