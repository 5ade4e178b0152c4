"""The sweep on Optuna with real storages (SQLite, a real PostgreSQL server), real worker
processes and the real trainer: shared studies, kills, retries, pruning, the record."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna
import pytest
from kits.projectkit import ROOT
from kits.sweepkit import TINY_MLP

from mnist_webgpu.core import config
from mnist_webgpu.sweep import plan, study

BASE = (
    TINY_MLP
    + """
[models.tiny]
arch = "mlp"
widths = [8]
lr = 0.003
lr_schedule = "constant"
batch_size = 16
steps = 20
eval_every = 10
seed = 3

[sweep]
heartbeat_seconds = 1
"""
)

GRID = """
[sweep.mlp]
grid = { lr = [0.001, 0.01] }
trials = [{ lr = 0.003, batch_size = 32 }]
"""

SEARCH = """
[sweep.tiny]
search = { lr = { low = 0.001, high = 0.03, log = true } }
n_trials = 4
"""


class Project:
    def __init__(self, root: Path, cache: Path):
        self.root = root
        self.env = {**os.environ, config.CACHE_ENV: str(cache), config.CONFIG_ENV: str(root / "config.toml")}
        self.env["PYTHONPATH"] = str(ROOT / "src")
        self.env.pop("DEV", None)

    def write(self, text: str) -> config.Config:
        (self.root / "config.toml").write_text(text)
        return config.load(self.root / "config.toml")

    def command(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "mnist_webgpu", *args]

    def run(self, *args: str, ok: bool = True) -> subprocess.CompletedProcess:
        result = subprocess.run(
            self.command(*args), cwd=self.root, env=self.env, capture_output=True, text=True
        )
        if ok:
            assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        return result

    def record(self) -> list[dict]:
        return json.loads((self.root / "sweeps" / "results.json").read_text())["rows"]

    def storage(self, url: str = "") -> optuna.storages.RDBStorage:
        return optuna.storages.RDBStorage(url or f"sqlite:///{self.root / 'build/sweep/optuna.db'}")


def trials_of(storage, prefix: str) -> list[optuna.trial.FrozenTrial]:
    return [
        t
        for s in storage.get_all_studies()
        if s.study_name.startswith(prefix)
        for t in storage.get_all_trials(s._study_id)
    ]


def trained(output: str) -> dict[tuple[str, int], set[str]]:
    """(model, trial number) -> the workers whose trainer printed progress for it."""
    seen: dict[tuple[str, int], set[str]] = {}
    for m in re.finditer(r"^(?:\[(w\d+)\] )?(mlp|tiny)-\w+#(\d+): step", output, re.M):
        seen.setdefault((m[2], int(m[3])), set()).add(m[1] or "")
    return seen


@pytest.fixture
def project(tmp_path, mnist_cache) -> Project:
    root = tmp_path / "project"
    root.mkdir()
    return Project(root, mnist_cache)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def postgres():
    """A throwaway PostgreSQL cluster on a free port, as a non-root user (initdb refuses root)."""
    initdb = shutil.which("initdb") or next(
        iter(sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))), None
    )
    if not initdb:
        pytest.skip("PostgreSQL is not installed (no initdb); scripts/setup.sh --test installs it")
    psycopg = pytest.importorskip("psycopg", reason="psycopg (the test extra) is not installed")

    bindir = Path(initdb).resolve().parent
    root = Path(tempfile.mkdtemp(prefix="mnist-webgpu-pg-"))
    as_user: list[str] = []
    if os.getuid() == 0:
        import pwd

        try:
            pw = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and no 'postgres' user to run the server as")
        os.chown(root, pw.pw_uid, pw.pw_gid)
        as_user = ["runuser", "-u", "postgres", "--"]
    port = free_port()
    data = root / "data"
    try:
        subprocess.run(
            [*as_user, str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "sweep", "--no-sync"],
            check=True,
            capture_output=True,
        )
        options = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off"
        subprocess.run(
            [
                *as_user,
                str(bindir / "pg_ctl"),
                "-D",
                str(data),
                "-l",
                str(root / "log"),
                "-w",
                "-o",
                options,
                "start",
            ],
            check=True,
            capture_output=True,
        )
        with psycopg.connect(
            host="127.0.0.1", port=port, user="sweep", dbname="postgres", autocommit=True
        ) as c:
            c.execute("CREATE DATABASE sweeps")
        yield f"postgresql://sweep@127.0.0.1:{port}/sweeps"
    finally:
        if (data / "postmaster.pid").exists():
            subprocess.run(
                [*as_user, str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"], check=False
            )
        shutil.rmtree(root, ignore_errors=True)


# --- errors ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("not a url", "--storage: 'not a url' is not a storage URL (expected e.g. sqlite:///"),
        (
            "redis://127.0.0.1/0",
            "--storage: redis://127.0.0.1/0: unsupported database 'redis' (expected sqlite",
        ),
        ("sqlite://", "--storage: sqlite://: a sweep needs a database file that every worker opens"),
        ("postgresql://nobody@127.0.0.1:{port}/x", "--storage: cannot open postgresql://nobody@127.0.0.1:"),
    ],
)
def test_a_bad_storage_url_is_one_line(project, url, message):
    project.write(BASE + GRID)
    result = project.run("sweep", "--storage", url.format(port=free_port()), ok=False)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], result.stderr
    assert not (project.root / "sweeps").exists()


def test_a_bad_storage_in_the_config_names_the_key(project):
    project.write(BASE.replace("heartbeat_seconds = 1", 'storage = "mysql+nodriver://x/y"') + GRID)
    result = project.run("sweep", ok=False)
    (line,) = result.stderr.strip().splitlines()
    assert (
        line.startswith(f"error: {project.root / 'config.toml'}: sweep.storage: ") and result.returncode == 1
    )


@pytest.mark.slow  # waits out the real connect timeout (10 s)
def test_a_storage_host_that_accepts_and_never_answers_is_given_up_on_in_bounded_time(project):
    listener = socket.create_server(("127.0.0.1", 0))  # accepts (the kernel's backlog), says nothing
    url = f"postgresql://nobody@127.0.0.1:{listener.getsockname()[1]}/x"
    project.write(BASE + GRID)
    started = time.monotonic()
    with listener:
        result = project.run("sweep", "--storage", url, ok=False)
    assert time.monotonic() - started < study.CONNECT_TIMEOUT * 2 + 15
    (line,) = result.stderr.strip().splitlines()
    assert line == (
        f"error: --storage: cannot open {url}: 127.0.0.1 did not answer within {study.CONNECT_TIMEOUT} s"
    )
    assert result.returncode == 1


def test_a_bad_sweep_section_stops_doit_sweep_with_one_line(project):
    bad = "[sweep.tiny]\nsearch = { lr = { low = 0.1, high = 0.01 } }\nn_trials = 3\n"
    (project.root / "config.toml").write_text(BASE + bad)
    result = project.run("sweep", ok=False)
    assert result.returncode == 2
    where = f"{project.root / 'config.toml'}: sweep.tiny.search.lr.high"
    assert result.stderr.strip().splitlines() == [f"error: {where}: expected more than low (0.1), got 0.01"]


# --- workers sharing a study ------------------------------------------------------------------


def check_two_worker_run(project: Project, output: str, storage, cfg: config.Config) -> None:
    ran = trained(output)
    assert all(len(w) == 1 for w in ran.values()), f"a trial trained by two workers: {ran}"
    assert {w for ws in ran.values() for w in ws} <= {"w1", "w2"}
    finished = {}
    for prefix in ("mlp.grid.", "tiny.search."):
        real = [t for t in trials_of(storage, prefix) if not t.user_attrs.get("surplus")]
        assert all(
            t.state in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED) for t in real
        )
        finished[prefix] = real
    # each grid and listed point once; the search exactly n_trials; nothing else was trained
    assert sorted(t.user_attrs["trial"] for t in finished["mlp.grid."]) == sorted(
        t.id for t in plan.of(cfg).trials
    )
    assert len(finished["tiny.search."]) == 4
    # what trained is exactly what finished: no surplus or repeated trial ever reached the trainer
    assert set(ran) == {(p.split(".")[0], t.number) for p, ts in finished.items() for t in ts}
    rows = project.record()
    assert len(rows) == 7 and all(r["current"] for r in rows)
    for r in rows:
        assert r["split"] == {"train": 2500, "val": 500} and not any("test" in k for k in r)
    md = (project.root / "HYPERPARAMETERS.md").read_text()
    assert "## mlp" in md and "## tiny" in md and "[models.mlp]" in output and "[models.tiny]" in output


@pytest.mark.slow
def test_two_workers_share_one_sqlite_study_and_an_unchanged_point_never_reruns(project):
    cfg = project.write(BASE + GRID + SEARCH)
    result = project.run("sweep", "--workers", "2")
    output = result.stdout + result.stderr
    check_two_worker_run(project, output, project.storage(), cfg)

    # one more grid value: a new grid study; the old points are recognised by their settings
    before = {r["trial"] for r in project.record()}
    cfg = project.write(BASE + GRID.replace("0.01]", "0.01, 0.02]") + SEARCH)
    new = {t.id for t in plan.of(cfg).trials} - before
    assert len(new) == 1
    again = project.run("sweep", "--workers", "1")
    output = again.stdout + again.stderr
    assert [m[1] for m in re.finditer(r"^(mlp-\w+)#\d+: step", output, re.M)] == [next(iter(new))] * 2
    assert output.count("copied from an earlier study") == 3
    rows = [r for r in project.record() if r["model"] == "mlp"]
    assert sorted(r["trial"] for r in rows) == sorted(t.id for t in plan.of(cfg).trials)  # no duplicate rows


@pytest.mark.slow
def test_two_workers_share_one_study_on_a_postgresql_server(project, postgres):
    cfg = project.write(BASE + GRID + SEARCH)
    result = project.run("sweep", "--workers", "2", "--storage", postgres)
    check_two_worker_run(project, result.stdout + result.stderr, project.storage(postgres), cfg)
    assert not (project.root / "build" / "sweep" / "optuna.db").exists()


# --- a killed worker ---------------------------------------------------------------------------


@pytest.mark.slow
def test_a_killed_worker_is_restarted_and_the_study_completes(project):
    cfg = project.write(BASE + "[sweep.mlp]\ntrials = [{ lr = 0.001 }, { lr = 0.002, steps = 200 }]\n")
    quick, slow = plan.of(cfg).trials
    proc = subprocess.Popen(
        project.command("sweep-worker", "--name", "doomed"),
        cwd=project.root,
        env=project.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own process group: the kill reaches nothing else
    )
    lines = []
    try:
        deadline = time.monotonic() + 240
        for line in proc.stdout:
            lines.append(line)
            if line.startswith(f"{slow.id}#1: step 20/200") or time.monotonic() > deadline:
                break
        os.killpg(proc.pid, signal.SIGKILL)  # no chance to tell the storage anything
    finally:
        proc.wait(timeout=60)
    assert any(f"#0 {quick.id}: validation accuracy" in line for line in lines), "".join(lines)
    states = {t.number: t.state for t in trials_of(project.storage(), "mlp.grid.")}
    assert states == {0: optuna.trial.TrialState.COMPLETE, 1: optuna.trial.TrialState.RUNNING}

    restarted = project.run("sweep", "--workers", "1")
    output = restarted.stdout + restarted.stderr
    assert f"{quick.id}#" not in output, "a finished trial ran again"
    trials = trials_of(project.storage(), "mlp.grid.")
    by_state = {(t.user_attrs["trial"], t.state.name) for t in trials}
    assert by_state == {(quick.id, "COMPLETE"), (slow.id, "FAIL"), (slow.id, "COMPLETE")}
    (retry,) = [t for t in trials if t.state.name == "COMPLETE" and t.user_attrs["trial"] == slow.id]
    assert retry.system_attrs["failed_trial"] == 1 and retry.number == 2
    assert sorted(r["trial"] for r in project.record()) == sorted([quick.id, slow.id])


# --- pruning -------------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_lagging_trial_is_pruned_and_marked_so(project):
    text = BASE + (
        "[sweep.mlp]\nsearch = { lr = { low = 1e-7, high = 0.01, log = true } }\n"
        "n_trials = 2\nprune_startup_trials = 1\nprune_warmup_steps = 0\n"
    )
    cfg = project.write(text.replace("steps = 20", "steps = 30", 1))
    storage = study.open_storage(f"sqlite:///{project.root / 'build/sweep/optuna.db'}", "test", 1)
    ((spec, s),) = study.prepare(cfg, storage)
    s.enqueue_trial({"lr": 0.003})  # learns: its curve sets the median
    s.enqueue_trial({"lr": 1e-7})  # barely moves: below the median at its first evaluation
    result = project.run("sweep", "--workers", "1")
    output = result.stdout + result.stderr
    good, bad = sorted(trials_of(project.storage(), "mlp.search."), key=lambda t: t.number)
    assert good.state.name == "COMPLETE" and bad.state.name == "PRUNED"
    assert "#1: step 10/30" in output and "#1: step 20/30" not in output, "a pruned trial stops training"
    assert re.search(r"#1 mlp-\w+: pruned at step 10 \(", output)
    rows = {r["number"]: r for r in project.record()}
    assert rows[1]["state"] == "pruned" and rows[1]["steps_done"] == 10 and rows[0]["state"] == "complete"
    assert rows[1]["hyperparameters"]["lr"] == 1e-7
    assert "pruned at step 10" in (project.root / "HYPERPARAMETERS.md").read_text()
