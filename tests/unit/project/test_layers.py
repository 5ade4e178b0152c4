"""The package's imports flow one way, tinygrad's internals are reached from one fenced place,
and each task's code dependencies are the import closure of its stage."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from kits.projectkit import ROOT

from mnist_webgpu.pipeline import closure as sources
from mnist_webgpu.pipeline import tasks

PACKAGE = sources.PACKAGE_DIR
TINYGRAD_INTERNALS = (
    "tinygrad.codegen",
    "tinygrad.runtime",
    "tinygrad.uop",
    "tinygrad.engine",
    "tinygrad.renderer",
)
# the packages in the order data flows: each may import itself and those before it, never those
# after; core is the shared base every stage may use, pipeline the task graph over all of them
PACKAGES = ["core", "data", "drawings", "models", "train", "sweep", "export", "site", "publish", "pipeline"]


def module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts}


def graph() -> dict[str, set[str]]:
    return {m: sources._imported(m) for m in modules()}


def test_every_module_is_found_by_the_import_walk():
    walked = {m for deps in graph().values() for m in deps} | {"__main__", "", "pipeline.tasks"}
    assert set(modules()) - walked == set()


def test_no_import_cycle_inside_the_package():
    edges = graph()
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        path.append(m)
        for dep in sorted(edges.get(m, ())):
            # a package and its own modules share a namespace (importing site.render runs
            # site/__init__.py first): that is one unit, not a cycle
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


def test_every_module_belongs_to_a_package():
    loose = {m for m in modules() if m.split(".")[0] not in PACKAGES} - {"", "__main__"}
    assert loose == set(), f"modules outside the stage packages: {sorted(loose)}"


@pytest.mark.parametrize("package", PACKAGES)
def test_packages_import_only_the_core_and_earlier_stages(package):
    allowed = set(PACKAGES[: PACKAGES.index(package) + 1])
    for module, deps in graph().items():
        if module.split(".")[0] != package:
            continue
        later = {d for d in deps if d.split(".")[0] not in allowed}
        assert not later, f"{module} imports the later stage(s) {sorted(later)}"


def test_the_entry_point_imports_only_the_pipeline_and_the_core():
    assert {d.split(".")[0] for d in graph()["__main__"]} <= {"core", "pipeline"}


def tinygrad_imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module)
    return {n for n in found if n.startswith("tinygrad")}


def patch_modules() -> set[Path]:
    """Each tinygrad patch sits beside its stage as *_patch.py; core/patching.py is the fence itself."""
    return {p for p in modules().values() if p.stem.endswith("_patch")} | {PACKAGE / "core" / "patching.py"}


def test_tinygrad_internals_only_in_the_patch_modules_and_the_exporter():
    allowed = patch_modules() | {PACKAGE / "export" / "webgpu.py"}
    for path in modules().values():
        internal = {n for n in tinygrad_imports(path) if n.startswith(TINYGRAD_INTERNALS)}
        if path not in allowed:
            assert not internal, f"{path.relative_to(ROOT)} imports tinygrad internals {sorted(internal)}"


def test_only_the_patch_modules_swap_tinygrad_attributes():
    assert {p.name for p in patch_modules()} == {"cpu_patch.py", "wgsl_patch.py", "patching.py"}
    for path in set(modules().values()) - patch_modules():
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


def imported_modules(path: Path) -> set[str]:
    """Every absolute module name `path` imports, dotted in full (`kits.projectkit`)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
            if node.module == "kits":  # `from kits import sitekit`
                names |= {f"kits.{a.name}" for a in node.names}
    return names


KITS = ROOT / "tests" / "kits"


def test_the_kits_never_import_bench():
    bench_modules = {p.stem for p in (ROOT / "bench").glob("*.py")} | {"bench"}
    for path in KITS.glob("*.py"):
        wrong = imported_names(path) & bench_modules
        assert not wrong, f"{path.relative_to(ROOT)} imports bench modules {sorted(wrong)}"


def test_bench_imports_the_tests_only_through_the_kits():
    test_side = {p.stem for p in (ROOT / "tests").rglob("*.py") if KITS not in p.parents}
    kits = {f"kits.{p.stem}" for p in KITS.glob("*.py") if p.stem != "__init__"}
    users = set()
    for path in (ROOT / "bench").glob("*.py"):
        names = imported_modules(path)
        wrong = {n for n in names if n.split(".")[0] in test_side | {"tests"}}
        assert not wrong, f"{path.relative_to(ROOT)} imports test modules {sorted(wrong)}"
        through_kits = {n for n in names if n.split(".")[0] == "kits"}
        assert through_kits <= kits | {"kits"}, f"{path.relative_to(ROOT)}: no such kit {through_kits - kits}"
        users |= {path.stem} if through_kits else set()
    # the rule is not empty: the bench builds its throwaway projects and browsers with the kits
    assert {"build_times", "kills", "browser"} <= users


def test_task_code_dependencies_are_the_import_closure(fast_config):
    train = next(tasks.train_tasks(fast_config))
    deps = {Path(p).relative_to(PACKAGE).as_posix() for p in train["file_dep"] if PACKAGE in Path(p).parents}
    assert {
        "train/stage.py",
        "train/trainer.py",
        "models/zoo.py",
        "data/mnist.py",
        "core/layout.py",
        "core/records.py",
        "train/cpu_patch.py",
        "train/cpu_patch.c",
        "train/__init__.py",
        "__init__.py",
    } <= deps
    # module granularity: the sweep's parser, the WGSL patch and the site are never training code
    assert not deps & {"sweep/plan.py", "sweep/study.py", "export/wgsl_patch.py", "site/render.py"}
    compile_deps = {
        Path(p).relative_to(PACKAGE).as_posix()
        for p in next(tasks.compile_tasks(fast_config))["file_dep"]
        if PACKAGE in Path(p).parents
    }
    assert {"export/webgpu.py", "export/wasm.py", "export/forms.py", "export/wgsl_patch.py"} <= compile_deps
    assert "train/trainer.py" not in compile_deps and "train/cpu_patch.c" not in compile_deps


def test_a_new_import_joins_the_closure(tmp_path, monkeypatch):
    """Adding `from . import x` to a stage makes x (and what x imports) a dependency at once."""
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "stage.py").write_text("from . import helper\n")
    (package / "helper.py").write_text("def f():\n    from .sub import deep\n")
    (package / "sub" / "__init__.py").write_text("")
    (package / "sub" / "deep.py").write_text("from ..other import x\n")
    (package / "sub" / "deep.c").write_text("int x;\n")  # deep.py's own: same name
    (package / "sub" / "other.c").write_text("int y;\n")  # a sibling's, not deep.py's
    (package / "sub" / "unused.py").write_text("")
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
        "sub/deep.c",
        "other.py",
    }
