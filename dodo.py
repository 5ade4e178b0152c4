"""The task graph: data -> drawings -> train:<model> -> compile:<model> -> site -> verify.

Definitions only; the work lives in src/mnist_webgpu/. Run `doit list` for descriptions.
"""

import sys
from pathlib import Path

# run this checkout's pipeline, not whatever copy happens to be installed
sys.path.insert(0, str(Path(__file__).resolve().parent / "src"))

from mnist_webgpu.core import interrupts
from mnist_webgpu.pipeline import tasks

interrupts.install_for_doit()  # Ctrl-C: one line and status 130, whatever task is running

DOIT_CONFIG = {
    "default_tasks": ["build"],
    "backend": "sqlite3",
    "dep_file": ".doit.db",
    "verbosity": 2,
    # a task per core: the two models train side by side (each trainer's large kernels also
    # spread over every core, so they share the machine) and the compiles overlap
    # but `doit serve` runs in doit's own process, so that Ctrl+C and a killed doit reach the
    # server directly (through a worker process, Ctrl+C left a traceback and a kill an orphan)
    "num_process": 0 if "serve" in sys.argv[1:] else tasks.PARALLEL_TASKS,
}

CFG = tasks.load_config_or_exit()


def task_data():
    return tasks.data_task(CFG)


def task_drawings():
    return tasks.drawings_task(CFG)


def task_train():
    """train each model into build/models/<name>/ (weights, metrics, test mistakes)"""
    yield from tasks.train_tasks(CFG)


def task_compile():
    """compile each trained model to WGSL kernels, a manifest and weight files"""
    yield from tasks.compile_tasks(CFG)


def task_sweep():
    return tasks.sweep_tasks(CFG)


def task_site():
    return tasks.site_task(CFG)


def task_verify():
    return tasks.verify_task(CFG)


def task_build():
    return tasks.build_task()


def task_deploy():
    return tasks.deploy_task(CFG)


def task_bench():
    return tasks.bench_task(CFG)


def task_serve():
    return tasks.serve_task(CFG)
