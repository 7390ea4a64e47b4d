"""SIGKILL a training run mid-way, resume it, and get the uninterrupted run's weights."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

REPO = Path(__file__).resolve().parents[1]
QUICKSTART = REPO / "configs" / "quickstart.yaml"

# The quickstart recipe, shortened: a tiny encoder, small patches, 36 steps, no validation.
SHORT = [
    "--set",
    "model.args.encoder_cfg={num_features: 8, growth_rate: 8, num_rdbs: 1, num_layers_per_rdb: 2}",
    "--set",
    "model.args.decoder_cfg={p_max: 3}",
    "--set",
    "data.inp_size=12",
    "--set",
    "data.sample_q=64",
    "--set",
    "data.repeat=6",
    "--set",
    "train.batch_size=4",
    "--set",
    "train.epochs=3",
    "--set",
    "val.datasets=[]",
    "--set",
    "checkpoint.every_steps=3",
    "--set",
    "log.every_steps=1",
    "--set",
    "log.progress=false",
    "--set",
    "log.tensorboard=false",
    "--set",
    "device=cpu",
]


def _cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "gblsr.cli.train", *args]


def _env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO / "src") + os.pathsep + env.get("PYTHONPATH", "")
    env["OMP_NUM_THREADS"] = "1"  # tiny tensors: threads only add synchronisation
    env["OMP_WAIT_POLICY"] = "PASSIVE"  # what gblsr-train would re-exec itself with
    return env


def _losses(run: Path) -> list[tuple[int, float]]:
    with open(run / "train_log.csv") as f:
        return [(int(r["step"]), float(r["loss"])) for r in csv.DictReader(f)]


@pytest.mark.slow
def test_sigkill_then_resume_equals_an_uninterrupted_run(tmp_path):
    ref, cut = tmp_path / "ref", tmp_path / "cut"
    done = subprocess.run(
        _cmd("--config", str(QUICKSTART), "--run-dir", str(ref), *SHORT),
        cwd=tmp_path,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == str(ref / "model.safetensors")

    proc = subprocess.Popen(
        _cmd("--config", str(QUICKSTART), "--run-dir", str(cut), *SHORT),
        cwd=tmp_path,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    latest = cut / "checkpoints" / "latest.json"
    deadline = time.time() + 240
    try:
        while time.time() < deadline and proc.poll() is None:
            if latest.is_file():
                try:
                    if json.loads(latest.read_text())["step"] >= 6:
                        break
                except (ValueError, KeyError):  # never happens: the pointer is replaced whole
                    pytest.fail("latest.json was seen half-written")
            time.sleep(0.01)
        assert proc.poll() is None, "the run ended before it could be killed"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    killed_at = json.loads(latest.read_text())["step"]
    assert 6 <= killed_at < 36 and not (cut / "model.safetensors").exists()

    resumed = subprocess.run(
        _cmd("--resume", str(cut)),
        cwd=tmp_path,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resumed from" in resumed.stderr
    assert resumed.stdout.strip().splitlines()[-1] == str(cut / "model.safetensors")

    a, b = load_file(ref / "model.safetensors"), load_file(cut / "model.safetensors")
    assert a.keys() == b.keys()
    worst = max(float((a[k] - b[k]).abs().max()) for k in a)
    assert worst <= 1e-6, f"weights differ by {worst}"
    # The log has every step exactly once, with the uninterrupted run's losses.
    la, lb = _losses(ref), _losses(cut)
    assert [s for s, _ in lb] == list(range(1, 37))
    assert all(abs(x - y) <= 1e-6 * max(1.0, abs(x)) for (_, x), (_, y) in zip(la, lb))
    info = json.loads((cut / "run.json").read_text())
    assert info["status"] == "completed" and info["resumed_from_step"] == killed_at
    assert torch.is_tensor(next(iter(b.values())))
