from __future__ import annotations

import fcntl
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from kits.appkit import browser, served, session  # noqa: F401  (the app page on the fixture site)
from kits.datakit import server, tiny  # noqa: F401  (fixtures of the data tests)
from kits.deploykit import deploy_repo  # noqa: F401  (a source repo with dist/ and a bare remote)
from kits.projectkit import (
    FAST_CONFIG,
    FAST_MODELS,
    ROOT,
    Project,
    run_stage,
    run_stages_per_model,
    with_drawings,
)
from kits.verifykit import good  # noqa: F401  (a complete staged site that passes verify)

from mnist_webgpu.core import config
from mnist_webgpu.data import mnist as data

__all__ = ["ROOT"]  # tests/unit/bench/test_drawn_digits.py imports it from here


@pytest.fixture(scope="session")
def fast_config() -> config.Config:
    return config.load(FAST_CONFIG)


@pytest.fixture(scope="session")
def mnist_cache(fast_config) -> Path:
    """The real, verified MNIST files (fetched once through the configured sources if missing)."""
    cache = fast_config.cache_dir()
    if not data.is_complete(cache):
        data.fetch(fast_config)
    return cache


@pytest.fixture(scope="session")
def mnist(mnist_cache) -> data.Mnist:
    return data.load(mnist_cache)


@pytest.fixture
def clean_env(monkeypatch):
    for var in (config.CONFIG_ENV, config.CACHE_ENV):
        monkeypatch.delenv(var, raising=False)
    return os.environ


def made_once(tmp_path_factory, name: str, make: Callable[[Path], None]) -> Path:
    """The directory `make` fills, made once for the whole run: under pytest-xdist the first
    worker to ask makes it while holding a lock, the others wait for it and read the same one."""
    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent  # this run's pytest-N/, which holds every worker's own temp dir
    made = base / name
    with open(base / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        done = base / f"{name}.done"
        if not done.exists():
            shutil.rmtree(made, ignore_errors=True)
            made.mkdir()
            make(made)
            done.touch()
    return made


@pytest.fixture(scope="session")
def fast_drawings(tmp_path_factory, mnist_cache) -> Path:
    """build/data/drawings.npz as the real drawings stage makes it for the fast config: what a
    train stage run on its own reads (doit runs the drawings task first)."""

    def make(project: Path) -> None:
        (project / "config.toml").write_text(FAST_CONFIG.read_text())
        result = run_stage(project, "drawings", cache=mnist_cache)
        assert result.returncode == 0, result.stderr

    return made_once(tmp_path_factory, "drawn", make) / "build" / "data" / "drawings.npz"


@pytest.fixture(scope="session")
def exported(tmp_path_factory, mnist_cache, fast_drawings) -> Path:
    """A project directory with every fast-config model trained briefly by the real train stage
    (eleven outputs, a calibrated "not a digit" rule) on the session's drawings, and compiled:
    the one trained fast model set of the run (read it, copy it; never change it)."""

    def make(project: Path) -> None:
        text = FAST_CONFIG.read_text().replace("[data]\n", f'[data]\ncache_dir = "{mnist_cache}"\n', 1)
        (project / "config.toml").write_text(text)
        with_drawings(project, fast_drawings)  # what the drawings stage made of this same config
        for name, result in run_stages_per_model(project, ("train", "compile"), FAST_MODELS).items():
            assert result.returncode == 0, f"{name}: {result.stderr}"

    return made_once(tmp_path_factory, "exported", make)


class BuiltProject:
    """One `doit build` of the fast config in a git repository, handed to each test afresh.

    doit records its file dependencies by absolute path, so a copy elsewhere would look stale:
    each test gets the snapshot restored at the path it was built at, .doit.db included, and
    finds every task up to date whatever the tests before it changed.
    """

    def __init__(self, root: Path, cache: Path):
        self.root, self.cache = root, cache
        self.snapshot = root.with_name(root.name + "-snapshot")
        self.first_build: set[str] = set()

    def build(self) -> None:
        project = Project.copy(self.root, self.cache, FAST_CONFIG.read_text())
        project.commit_all("source")
        self.first_build = project.ran(project.doit("build"))
        shutil.copytree(self.root, self.snapshot, symlinks=True)

    def fresh(self) -> Project:
        shutil.rmtree(self.root)
        shutil.copytree(self.snapshot, self.root, symlinks=True)  # copy2 keeps the mtimes doit checks
        return Project(self.root, self.cache)


@pytest.fixture(scope="session")
def built_once(tmp_path_factory, mnist_cache) -> BuiltProject:
    built = BuiltProject(tmp_path_factory.mktemp("built") / "project", mnist_cache)
    built.build()
    return built


@pytest.fixture
def built(built_once) -> Iterator[Project]:
    """A built fast-config project of this test's own: edit it, run doit in it, as you like."""
    yield built_once.fresh()


@pytest.hookimpl(tryfirst=True)  # before xdist reads the groups off the items
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Under pytest-xdist (--dist loadgroup), a module's tests share a worker, so its
    module-scoped fixtures (a browser, a served site) start once; every test on the `built`
    project shares one too, since doit's records pin that project to one path."""
    for item in items:
        on_built = {"built", "built_once"} & set(getattr(item, "fixturenames", ()))
        group = "built" if on_built else item.nodeid.split("::")[0]
        item.add_marker(pytest.mark.xdist_group(group))
