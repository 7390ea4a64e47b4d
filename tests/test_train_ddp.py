"""torchrun with two gloo processes on CPU trains like one process with the same global batch."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch.distributed as dist

REPO = Path(__file__).resolve().parents[1]

CONFIG = """
kind: sr
seed: 3
device: cpu
model:
  name: gblsr_asr
  args:
    encoder_cfg: {num_features: 8, growth_rate: 8, num_rdbs: 1, num_layers_per_rdb: 2}
    decoder_cfg: {p_max: 3}
data:
  image_dirs: [builtin:samples]
  repeat: 8
  inp_size: 12
  sample_q: 64
  lr_kernel: pil
  num_workers: 0
val: {datasets: [builtin:samples], scales: [2], max_images: 1, every_epochs: 1}
train: {batch_size: 8, epochs: 3, max_steps: 20}
optim: {lr: 1.0e-3}
checkpoint: {every_steps: 10}
log: {every_steps: 1, progress: false, tensorboard: false}
"""


def _env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO / "src") + os.pathsep + env.get("PYTHONPATH", "")
    env["OMP_NUM_THREADS"] = "1"
    env["OMP_WAIT_POLICY"] = "PASSIVE"
    return env


def _losses(run: Path) -> list[float]:
    with open(run / "train_log.csv") as f:
        return [float(r["loss"]) for r in csv.DictReader(f)]


@pytest.mark.slow
@pytest.mark.skipif(
    not dist.is_available() or not dist.is_gloo_available(),
    reason="torch.distributed with gloo is not available",
)
def test_two_gloo_processes_match_one_process(tmp_path):
    cfg = tmp_path / "ddp.yaml"
    cfg.write_text(CONFIG)
    one = subprocess.run(
        [
            sys.executable,
            "-m",
            "gblsr.cli.train",
            "--config",
            str(cfg),
            "--run-dir",
            str(tmp_path / "one"),
        ],
        cwd=tmp_path,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert one.returncode == 0, one.stderr[-2000:]
    two = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node",
            "2",
            "-m",
            "gblsr.cli.train",
            "--config",
            str(cfg),
            "--run-dir",
            str(tmp_path / "two"),
        ],
        cwd=tmp_path,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert two.returncode == 0, two.stderr[-3000:]
    # Rank 0 alone prints the final checkpoint.
    assert two.stdout.strip().splitlines() == [str(tmp_path / "two" / "model.safetensors")]
    a, b = _losses(tmp_path / "one"), _losses(tmp_path / "two")
    assert len(a) == len(b) == 20
    worst = max(abs(x - y) / abs(x) for x, y in zip(a, b))
    assert worst <= 1e-4, f"losses differ by {worst:.2e} (relative)"
    assert "x 2 processes" in two.stderr
