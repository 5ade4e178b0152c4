"""`doit sweep` on Optuna: one study per model and mode, shared by any number of workers.

Studies live in an Optuna RDB storage: SQLite at build/sweep/optuna.db by default, or
any URL from `--storage` / `[sweep] storage` (PostgreSQL, MySQL) that workers on other
machines reach too. RDB storages keep heartbeats: a worker killed mid-trial leaves a
RUNNING trial whose heartbeat stops; the next worker to look fails it and Optuna's
RetryHeartbeatStaleTrialCallback queues a copy, so the point is trained again and nothing else is.

- grid and listed trials: study `<model>.grid.<hash>`, GridSampler over the grid's axes,
  the listed trials enqueued. A point whose settings hash already has a finished trial
  in any grid study of the model (an unchanged trial after a config edit) copies that
  result in milliseconds instead of training again.
- search: study `<model>.search.<hash of space and base settings>`, TPE (constant liar,
  so parallel workers spread out), MedianPruner with a warm-up in training steps.

A worker leaves once every study is complete; while only trials of other workers are
running it waits (and fails their trials if their heartbeats stop), so a killed worker's
trial is always finished by someone. A trial that would repeat a point another live
trial holds, or exceed n_trials, is marked `surplus` and failed before it trains.
"""

from __future__ import annotations

import datetime
import importlib.metadata
import os
import subprocess
import sys
import threading
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from mnist_webgpu.core import config, files, interrupts
from mnist_webgpu.core.config import Config, ConfigError
from mnist_webgpu.core.errors import PipelineError
from mnist_webgpu.core.layout import PROJECT
from mnist_webgpu.core.records import plain
from mnist_webgpu.data.split import mnist_split
from mnist_webgpu.sweep import plan as sweep_config
from mnist_webgpu.sweep import record as sweep
from mnist_webgpu.sweep import report as sweep_report
from mnist_webgpu.sweep.plan import Trial
from mnist_webgpu.sweep.record import SweepError

DATABASES = ("sqlite", "postgresql", "mysql")
# a server that accepts the connection and never answers (a firewall, a wrong port) would
# hold the sweep forever; the URL's own ?connect_timeout= wins
CONNECT_TIMEOUT = 10
MAX_RETRY = 3  # a trial whose worker dies this often is left failed
OBJECTIVE = (
    "validation accuracy: the last val_size MNIST training digits, averaged with the held-out pen "
    "writers' digits when [train] pen_share > 0"
)

optuna.logging.set_verbosity(optuna.logging.ERROR)  # one line per trial is ours to print
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)


class Surplus(Exception):
    """This trial would repeat work another live trial holds, or exceed n_trials."""


def default_storage() -> str:
    return f"sqlite:///{PROJECT.sweep_db.resolve()}"


def storage_url(cfg: Config, given: str | None) -> tuple[str, str]:
    """(URL, where it came from, for messages)."""
    if given:
        return given, "--storage"
    if sweep_config.of(cfg).storage:
        return sweep_config.of(cfg).storage, f"{cfg.path}: sweep.storage"
    return default_storage(), "the default storage"


def shown(url: str) -> str:
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # shown only in a message: an unparsable URL is shown as given
        return url


def open_storage(url: str, where: str, heartbeat_seconds: int) -> optuna.storages.RDBStorage:
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, SQLAlchemyError

    try:
        backend = make_url(url).get_backend_name()
    except ArgumentError:
        raise SweepError(
            f"{where}: {url!r} is not a storage URL (expected e.g. sqlite:///build/sweep/optuna.db "
            "or postgresql://user@host/db)"
        ) from None
    if backend not in DATABASES:
        raise SweepError(
            f"{where}: {shown(url)}: unsupported database {backend!r} (expected {', '.join(DATABASES)})"
        )
    if backend == "sqlite":
        database = make_url(url).database
        if not database or database == ":memory:":
            raise SweepError(f"{where}: {url}: a sweep needs a database file that every worker opens")
        Path(database).parent.mkdir(parents=True, exist_ok=True)
        # workers wait for each other's writes rather than fail with "database is locked"
        engine: dict[str, Any] = {"connect_args": {"timeout": 60}}
    else:
        engine = {"pool_pre_ping": True}
        if "connect_timeout" not in make_url(url).query:
            engine["connect_args"] = {"connect_timeout": CONNECT_TIMEOUT}
    try:
        storage = optuna.storages.RDBStorage(
            url,
            engine_kwargs=engine,
            heartbeat_interval=heartbeat_seconds,
            grace_period=3 * heartbeat_seconds + 2,
            heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(
                max_retry=MAX_RETRY
            ),
        )
    except (SQLAlchemyError, ImportError, RuntimeError, ValueError) as exc:
        first = (str(exc).strip().splitlines() or [""])[0]
        if "timeout" in first.lower():
            host = make_url(url).host
            raise SweepError(
                f"{where}: cannot open {shown(url)}: {host} did not answer within "
                f"{make_url(url).query.get('connect_timeout', CONNECT_TIMEOUT)} s"
            ) from None
        raise SweepError(f"{where}: cannot open {shown(url)} ({type(exc).__name__}: {first})") from None
    if backend == "sqlite":
        _serialise(storage.engine)
    return storage


def _serialise(engine) -> None:
    """Every SQLite transaction takes the write lock when it begins (BEGIN IMMEDIATE).

    Optuna pops a queued trial by reading that it waits, then marking it running; on
    PostgreSQL and MySQL the read locks the row (SELECT ... FOR UPDATE), but Python's sqlite3
    starts no transaction for a read, so two workers could both pop one trial and train it
    twice (seen here: "Cannot tell a COMPLETE trial"). SQLAlchemy's documented recipe.
    """
    from sqlalchemy import event

    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection, record) -> None:
        dbapi_connection.isolation_level = None  # sqlite3 emits no BEGIN of its own

    @event.listens_for(engine, "begin")
    def _begin(connection) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    engine.dispose()  # connections opened before the listeners get them when reopened


# --- what each study holds -----------------------------------------------------------------


@dataclass(frozen=True)
class Spec:
    model: str
    mode: str  # "grid" or "search"
    name: str  # the Optuna study name
    grid: dict[str, list]  # grid mode: GridSampler's axes (Optuna choices)
    points: tuple[Trial, ...]  # grid mode: every grid and listed trial
    search: sweep_config.Search | None = None

    @property
    def target(self) -> int:
        return self.search.n_trials if self.search else len(self.points)


def specs(cfg: Config) -> list[Spec]:
    plan = sweep_config.of(cfg)
    out = []
    for model in plan.models():
        points = tuple(t for t in plan.trials if t.model == model)
        if points:
            gridded = [t for t in points if t.where == f"sweep.{model}.grid"]
            axes: dict[str, list] = {}
            for t in gridded:
                for key, value in t.overrides.items():
                    c = sweep_config.choice(value)
                    if c not in axes.setdefault(key, []):
                        axes[key].append(c)
            key = config.settings_hash({"grid": axes, "points": [t.id for t in points]})[:8]
            out.append(Spec(model, "grid", f"{model}.grid.{key}", axes, points))
        for s in plan.searches:
            if s.model == model:
                out.append(Spec(model, "search", f"{model}.search.{s.key}", {}, (), s))
    return out


class GridSampler(optuna.samplers.GridSampler):
    """Optuna's, minus its stop rule: that reads the grid id of the trial just finished, which a
    listed (enqueued) trial lacks (KeyError), and the worker loop decides when to stop anyway."""

    def after_trial(self, study, trial, state, values) -> None:
        pass


def _sampler(spec: Spec, seed: int | None) -> optuna.samplers.BaseSampler:
    if spec.mode == "search":
        startup = max(4, spec.search.n_trials // 4)
        return optuna.samplers.TPESampler(n_startup_trials=startup, constant_liar=True, seed=seed)
    if spec.grid:
        # one seed for every worker: GridSampler shuffles its grid by it, and grid ids must agree
        return GridSampler(spec.grid, seed=0)
    return optuna.samplers.RandomSampler(seed=seed)  # only enqueued trials: it never samples


def _pruner(spec: Spec) -> optuna.pruners.BasePruner:
    if spec.mode == "search":
        s = spec.search
        return optuna.pruners.MedianPruner(
            n_startup_trials=s.prune_startup_trials, n_warmup_steps=s.prune_warmup_steps
        )
    return optuna.pruners.NopPruner()  # a grid is exhaustive by request


def load(spec: Spec, storage, seed: int | None = None) -> optuna.Study:
    study = optuna.create_study(
        study_name=spec.name,
        storage=storage,
        sampler=_sampler(spec, seed),
        pruner=_pruner(spec),
        direction="maximize",
        load_if_exists=True,
    )
    if "model" not in study.user_attrs:
        study.set_user_attr("model", spec.model)
        study.set_user_attr("mode", spec.mode)
        # what the value means: train.validation_score, the same rule that picks a checkpoint
        study.set_user_attr("objective", OBJECTIVE)
    return study


# --- the state of a study, as every worker sees it --------------------------------------------

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


def counts(t: optuna.trial.FrozenTrial) -> bool:
    """A trial that is, or was, real work (surplus and heartbeat-failed ones are not)."""
    if t.user_attrs.get("surplus"):
        return False
    return t.state != TrialState.FAIL or "error" in t.user_attrs


def finished(t: optuna.trial.FrozenTrial) -> bool:
    return counts(t) and (t.state in FINISHED or t.state == TrialState.FAIL)


def held(t: optuna.trial.FrozenTrial) -> str | None:
    """The trial id a trial trains: known once it starts, or from the queue for a listed trial."""
    return t.user_attrs.get("trial") or t.user_attrs.get("point")


@dataclass
class State:
    done: int
    total: int
    todo: bool  # this worker may start a trial now
    complete: bool


def state(spec: Spec, study: optuna.Study) -> State:
    optuna.storages.fail_stale_trials(study)  # a dead worker's trial is failed, then queued again
    trials = [t for t in study.get_trials(deepcopy=False) if counts(t)]
    waiting = [t for t in trials if t.state == TrialState.WAITING]
    running = [t for t in trials if t.state == TrialState.RUNNING]
    done = [t for t in trials if finished(t)]
    if spec.mode == "search":
        n = len(done)
        todo = bool(waiting) or n + len(running) < spec.target
        return State(n, spec.target, todo, n >= spec.target and not running and not waiting)
    done_ids = {held(t) for t in done}
    busy = {held(t) for t in running + waiting}
    for t in spec.points:  # a listed trial lost from the queue (two prepares raced) is queued again
        if t.where != f"sweep.{t.model}.grid" and t.id not in done_ids | busy:
            study.enqueue_trial({}, user_attrs={"point": t.id})
            busy.add(t.id)
            waiting.append(t)
    left = {t.id for t in spec.points} - done_ids
    # a grid point nobody holds: only then may GridSampler pick one (else it repeats a running one)
    unheld = any(t.where == f"sweep.{t.model}.grid" for t in spec.points if t.id in left - busy)
    # a running trial without its id yet holds some point: wait for it rather than guess
    unknown = any(held(t) is None for t in running)
    todo = bool(waiting) or (unheld and not unknown)
    n = len(done_ids & {t.id for t in spec.points})
    return State(n, spec.target, todo, not left and not running and not waiting)


def prepare(cfg: Config, storage) -> list[tuple[Spec, optuna.Study]]:
    """Create (or open) every study; queue the listed trials not yet run or queued."""
    out = []
    for spec in specs(cfg):
        study = load(spec, storage)
        state(spec, study)  # queues the listed trials
        out.append((spec, study))
    return out


# --- one trial ----------------------------------------------------------------------------------


def requested(mc: config.ModelConfig) -> dict[str, Any]:
    """The hyperparameters a trial asked for: what a pruned trial's row shows (it has no read-back)."""
    d = {k: plain(v) for k, v in mc.as_dict().items() if k not in ("name", "min_test_accuracy")}
    return d


def _twin(study: optuna.Study, trial: optuna.Trial, tid: str) -> None:
    """Raise Surplus when another live trial of this study holds the same point."""
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.RUNNING)):
        mine = t.number != trial.number and counts(t) and held(t) == tid
        if mine and (t.state == TrialState.COMPLETE or t.number < trial.number):
            raise Surplus(f"trial #{t.number} holds {tid}")


def _earlier_result(storage, spec: Spec, tid: str) -> optuna.trial.FrozenTrial | None:
    """A finished trial of the same settings in another grid study of this model."""
    for s in storage.get_all_studies():
        if s.study_name.startswith(f"{spec.model}.grid.") and s.study_name != spec.name:
            for t in storage.get_all_trials(s._study_id, deepcopy=False, states=(TrialState.COMPLETE,)):
                if t.user_attrs.get("trial") == tid and "reused_from" not in t.user_attrs:
                    return t
    return None


class Objective:
    def __init__(self, cfg: Config, spec: Spec, study: optuna.Study, worker: str):
        self.cfg, self.spec, self.study, self.worker = cfg, spec, study, worker

    def point(self, trial: optuna.Trial) -> Trial:
        spec = self.spec
        if spec.mode == "search":
            values = {}
            for p in spec.search.params:
                if p.kind == "float":
                    values[p.name] = trial.suggest_float(p.name, p.low, p.high, log=p.log, step=p.step)
                elif p.kind == "int":
                    values[p.name] = trial.suggest_int(p.name, p.low, p.high, step=p.step or 1, log=p.log)
                else:
                    values[p.name] = trial.suggest_categorical(p.name, list(p.choices))
            return sweep_config.search_trial(self.cfg, spec.model, values, f"sweep.{spec.model}.search")
        by_id = {t.id: t for t in spec.points}
        if "point" in trial.user_attrs:
            return by_id[trial.user_attrs["point"]]
        values = {key: trial.suggest_categorical(key, choices) for key, choices in spec.grid.items()}
        made = sweep_config.search_trial(self.cfg, spec.model, values, f"sweep.{spec.model}.grid")
        return by_id.get(made.id, made)

    def __call__(self, trial: optuna.Trial) -> float:
        spec = self.spec
        try:
            point = self.point(trial)
        except ConfigError as exc:  # a drawn combination breaks a cross-key rule: a failed trial
            trial.set_user_attr("error", str(exc))
            raise
        trial.set_user_attr("trial", point.id)
        if spec.mode == "search":
            ahead = [
                t for t in self.study.get_trials(deepcopy=False) if t.number < trial.number and counts(t)
            ]
            if len(ahead) >= spec.target:
                trial.set_user_attr("surplus", True)
                raise Surplus(f"{spec.target} trials already run or running")
        else:
            try:
                _twin(self.study, trial, point.id)
            except Surplus:
                trial.set_user_attr("surplus", True)
                raise
            earlier = _earlier_result(self.study._storage, spec, point.id)
            if earlier is not None:
                for step, value in sorted(earlier.intermediate_values.items()):
                    trial.report(value, step)
                for k, v in earlier.user_attrs.items():
                    trial.set_user_attr(k, v)
                trial.set_user_attr("reused_from", f"{earlier.number}")
                return earlier.value
        attrs = {
            "where": point.where,
            "overrides": {k: plain(v) for k, v in point.overrides.items()},
            "requested": requested(point.config),
            "settings_hash": sweep.trial_settings_hash(self.cfg, point),
            "worker": self.worker,
        }
        for k, v in attrs.items():
            trial.set_user_attr(k, v)
        # tinygrad loads here, after the worker chose its device
        from mnist_webgpu.sweep import trial as sweep_trial
        from mnist_webgpu.train import trainer as train

        sizes = mnist_split(self.cfg.train)
        trial.set_user_attr("split", {"train": sizes.n_train, "val": sizes.n_val})
        pruning = spec.mode == "search"

        def on_eval(step: int, val_accuracy: float, seconds: float) -> None:
            trial.report(val_accuracy, step)
            # the last evaluation ends the trial anyway: pruning there would only hide its result
            if pruning and step < point.config.steps and trial.should_prune():
                trial.set_user_attr("train_seconds", round(seconds, 3))
                trial.set_user_attr("steps_done", step)
                trial.set_user_attr("device", train.Device.DEFAULT)
                trial.set_user_attr("tinygrad_version", importlib.metadata.version("tinygrad"))
                trial.set_user_attr("date", datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"))
                raise optuna.TrialPruned(f"{val_accuracy:.2%} at step {step}, below the median")

        label = f"{point.id}#{trial.number}"
        try:
            result = sweep_trial.run(self.cfg, point.config, label, on_eval)
        except train.TrainError as exc:
            trial.set_user_attr("error", str(exc))
            raise
        for key in sweep.RESULT_KEYS:
            trial.set_user_attr(key, result[key])
        return result["val_accuracy"]


def _line(worker: str, spec: Spec, t: optuna.trial.FrozenTrial, st: State) -> str:
    what = f"{worker}: {spec.name} #{t.number} {t.user_attrs.get('trial', '?')}"
    a = t.user_attrs
    if a.get("surplus"):
        return f"{what}: skipped, not trained (another trial holds this point, or n_trials is reached)"
    if t.state == TrialState.COMPLETE:
        how = (
            "copied from an earlier study" if "reused_from" in a else f"in {a.get('train_seconds', 0):.1f} s"
        )
        result = f"validation accuracy {t.value:.2%} {how}"
    elif t.state == TrialState.PRUNED:
        last = max(t.intermediate_values) if t.intermediate_values else 0
        result = f"pruned at step {last} ({t.intermediate_values.get(last, 0):.2%})"
    else:
        result = f"failed: {a.get('error', 'see above')}"
    return f"{what}: {result} [{st.done}/{st.total} done]"


def work(cfg: Config, storage, worker: str, log=print) -> int:
    """Run trials until every study is complete; return how many this worker trained."""
    from mnist_webgpu.train import trainer as train

    train.check_data(cfg.cache_dir())
    train.check_device()
    seed = os.getpid()  # each worker samples its own points; constant liar keeps them apart
    studies = [(spec, load(spec, storage, seed)) for spec in specs(cfg)]
    poll = max(1.0, min(5.0, sweep_config.of(cfg).heartbeat_seconds / 2))
    trained = 0
    while True:
        states = [(spec, study, state(spec, study)) for spec, study in studies]
        if all(s.complete for _, _, s in states):
            return trained
        ready = [(spec, study) for spec, study, s in states if s.todo]
        if not ready:
            time.sleep(poll)  # others' trials are running: wait, to retry them if their worker dies
            continue
        spec, study = ready[0]

        def report(study: optuna.Study, t: optuna.trial.FrozenTrial, spec: Spec = spec) -> None:
            log(_line(worker, spec, t, state(spec, study)))

        before = len(study.get_trials(deepcopy=False))
        study.optimize(
            Objective(cfg, spec, study, worker),
            n_trials=1,
            catch=(Surplus, ConfigError, train.TrainError),
            callbacks=[report],
        )
        trained += len(study.get_trials(deepcopy=False)) > before


# --- the coordinator: `doit sweep` ------------------------------------------------------------


# tinygrad's DEV names a backend (and a renderer after a colon), not a GPU: a worker pinned to
# GPU N sees only that GPU, through the driver's own variable, as its device 0
VISIBLE = {"CUDA": "CUDA_VISIBLE_DEVICES", "NV": "CUDA_VISIBLE_DEVICES", "AMD": "HIP_VISIBLE_DEVICES"}


def device_env(device: str) -> dict[str, str]:
    """The environment that pins a worker to `device`: CUDA:1 -> DEV=CUDA, CUDA_VISIBLE_DEVICES=1."""
    backend, _, index = device.partition(":")
    if not index.isdigit():
        return {"DEV": device}
    if backend.upper() not in VISIBLE:
        known = ", ".join(f"{b}:N" for b in VISIBLE)
        raise SweepError(
            f"--devices: {device}: cannot pin a worker to GPU {index} of {backend} ({known} can)"
        )
    return {"DEV": backend, VISIBLE[backend.upper()]: index}


def worker_command(url: str, name: str, device: str | None) -> list[str]:
    return [
        sys.executable,
        "-m",
        "mnist_webgpu",
        "sweep-worker",
        "--storage",
        url,
        "--name",
        name,
        *(["--device", device] if device else []),
    ]


def _relay(proc: subprocess.Popen, prefix: str) -> None:
    for line in proc.stdout:
        print(f"{prefix}{line}", end="", file=sys.stderr, flush=True)


def run_workers(cfg: Config, url: str, workers: int, devices: list[str]) -> list[int]:
    """Start the workers as processes, relay their lines, return their exit codes."""
    env = interrupts.quiet(dict(os.environ))  # not tasks.stage_env: a worker machine needs no doit
    env["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(Path(__file__).resolve().parents[2]), env.get("PYTHONPATH")])
    )
    env[config.CONFIG_ENV] = str(cfg.path)
    slots = devices or [None] * workers
    for device in devices:
        device_env(device)  # a bad name fails here, once, not in every worker
    procs = []
    for i, device in enumerate(slots):
        name = f"w{i + 1}" + (f"@{device}" if device else "")
        proc = subprocess.Popen(
            worker_command(url, name, device),
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        thread = threading.Thread(target=_relay, args=(proc, f"[{name}] " if len(slots) > 1 else ""))
        thread.start()
        procs.append((proc, thread))
    codes = []
    for proc, thread in procs:
        codes.append(proc.wait())
        thread.join()
    return codes


def export(cfg: Config, storage, record: Path, report_md: Path) -> list[dict]:
    rows = sweep.merge_rows(cfg, sweep.load_results(record) if record.exists() else [], rows_of(cfg, storage))
    sweep.write_results(rows, record)
    files.write_text(report_md, sweep_report.markdown(sweep_report.report(rows)))
    return rows


def rows_of(cfg: Config, storage) -> list[dict]:
    """A record row per finished trial of every study of the configured models in the storage."""
    out = []
    models = set(cfg.model_names)
    for s in storage.get_all_studies():
        model = s.study_name.split(".")[0]
        if model not in models or s.study_name.count(".") != 2:
            continue
        for t in storage.get_all_trials(s._study_id, deepcopy=False):
            if finished(t) and "reused_from" not in t.user_attrs and "trial" in t.user_attrs:
                out.append(sweep.row(model, s.study_name, t))
    return out


def sweep_stage(cfg: Config, given_storage: str | None, workers: int, devices: list[str], log=print) -> int:
    url, where = storage_url(cfg, given_storage)
    heartbeat = sweep_config.of(cfg).heartbeat_seconds
    storage = open_storage(url, where, heartbeat)
    studies = prepare(cfg, storage)
    if not studies and workers:
        log(f"sweep: {cfg.path} has no [sweep.<model>] section; exporting the record only")
    codes = []
    if studies and (workers or devices):
        log(
            f"sweep: {len(devices) or workers} worker(s) on {shown(url)};"
            f" studies: {', '.join(s.name for s, _ in studies)}"
        )
        log(
            f"sweep: another machine joins with  python -m mnist_webgpu sweep-worker --storage '{shown(url)}'"
        )
        started = time.monotonic()
        codes = run_workers(cfg, url, workers, devices)
        log(f"sweep: workers finished in {time.monotonic() - started:.1f} s (exit codes {codes})")
    rows = export(cfg, storage, PROJECT.sweep_results, PROJECT.sweep_report)
    models = sweep_report.report(rows)
    log(f"sweep: {len(rows)} row(s) in {PROJECT.sweep_results}; report in {PROJECT.sweep_report}")
    for spec, study in studies:
        st = state(spec, study)
        if not st.complete:
            log(f"sweep: {spec.name}: {st.done}/{st.total} done; run `doit sweep` again to finish it")
    for m in models:
        mc = sweep_report.config_of(cfg, m["best"])
        if mc is not None:
            log("\n" + sweep_report.snippet(mc, m["best"]), end="")
    if models:
        log("\n(paste a section over the one in config.toml to adopt it; config.toml was not changed)")
    bad = [c for c in codes if c]
    if bad:
        raise PipelineError(f"sweep: {len(bad)} worker(s) failed (exit codes {bad}); see their lines above")
    return 0
