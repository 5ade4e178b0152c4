"""Values that parse but would crash or exhaust the machine are refused up front, with the
limit and its reason in one line; the same rules hold through [sweep] grids."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from kits.projectkit import FAST_CONFIG, ROOT

from mnist_webgpu.core import config
from mnist_webgpu.sweep import plan

MODEL = '[models.mlp]\narch = "mlp"\n'


def load_text(tmp_path: Path, text: str) -> config.Config:
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
        (MODEL + "widths = [65536, 65536]", "models.mlp.widths: expected at most 100,000,000 weights in all"),
        (
            MODEL + "seed = 4294967296",
            "models.mlp.seed: expected an integer between 0 and 4,294,967,295 (numpy",
        ),
        (MODEL + "batch_size = 1_000_000", "models.mlp.batch_size: expected an integer between 1 and 60,000"),
        (
            '[models.c]\narch = "cnn"\nwidths = [1024]\nbatch_size = 512',
            "models.c.batch_size: expected at most 334 for these widths",
        ),
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
        load_text(tmp_path, text)
    line = str(info.value)
    assert "\n" not in line and line.startswith(f"{tmp_path / 'c.toml'}: ")
    assert message in line, line


def test_values_at_the_limits_are_accepted(tmp_path):
    cfg = load_text(
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


def test_schedule_array_equals_the_per_step_rule_bit_for_bit():
    """The shipped and the test configs, and each schedule with and without warmup."""
    import dataclasses

    from mnist_webgpu.train import trainer as train

    for path in (ROOT / "config.toml", FAST_CONFIG):
        for m in config.load(path).models:
            for schedule in ("constant", "cosine", "onecycle"):
                for warmup in (0, 7, m.steps // 3):
                    mm = dataclasses.replace(m, lr_schedule=schedule, warmup_steps=warmup)
                    rule = np.array([train.learning_rate(mm, s) for s in range(mm.steps)])
                    assert rule.tobytes() == train.learning_rates(mm).tobytes(), (
                        path,
                        m.name,
                        schedule,
                        warmup,
                    )
