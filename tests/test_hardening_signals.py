"""Interrupts at any moment, and the cost of a crafted checkpoint, in real processes.

Each case starts an interpreter (seconds of imports on a busy machine), so there are few:
SIGINT / SIGTERM while the command's imports run and while its output is being written, each
ending in exit code 130 / 143, one stderr line, no temporary file, the earlier output intact;
and a crafted ~60 KB checkpoint claiming a huge architecture, refused within 2 s and 1 GiB.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from _helpers import TINY_RDN, write_png
from safetensors import safe_open
from safetensors.torch import save_file

import gblsr

pytestmark = pytest.mark.skipif(os.name != "posix", reason="POSIX signals")

# The console script's body. It says "ready" from inside gblsr_entry.run, after the handlers are
# installed and just before the command's imports (seconds) start, so the test knows when to
# signal.
CHILD = (
    "import importlib, sys, types, gblsr_entry\n"
    "def announce(name):\n"
    "    print('ready', flush=True)\n"
    "    return importlib.import_module(name)\n"
    "gblsr_entry.importlib = types.SimpleNamespace(import_module=announce)\n"
    "sys.exit(gblsr_entry.reconstruct())\n"
)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    d = tmp_path_factory.mktemp("sig")
    torch.manual_seed(0)
    ckpt = gblsr.save_model(gblsr.GBLSRScalarASR(encoder_cfg=TINY_RDN).eval(), d / "m.safetensors")
    return {"ckpt": ckpt, "img": write_png(d / "in.png", 64, 64)}


def _start(setup, out: Path) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    argv = ["--checkpoint", str(setup["ckpt"]), "--input", str(setup["img"]), "--scale", "16"]
    argv += ["--tile", "2048", "--device", "cpu", "--output", str(out)]
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def _wait_for_tmp(folder: Path, proc: subprocess.Popen, timeout: float = 120) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end and proc.poll() is None:
        if any(p.name.endswith(".tmp") for p in folder.iterdir()):
            return
        time.sleep(0.02)
    pytest.fail("the output's temporary file never appeared")


@pytest.mark.parametrize(
    "moment, sig",
    [
        ("imports", signal.SIGINT),
        ("imports", signal.SIGTERM),
        ("writing", signal.SIGTERM),
        ("writing", signal.SIGINT),
    ],
)
def test_interrupt_at_any_moment(tmp_path, setup, moment, sig):
    out = tmp_path / "o.png"
    out.write_bytes(b"old")
    proc = _start(setup, out)
    assert proc.stdout.readline().strip() == "ready"
    if moment == "writing":
        _wait_for_tmp(tmp_path, proc)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    word = "terminated" if sig == signal.SIGTERM else "interrupted"
    assert proc.returncode == 128 + sig, err
    assert err.strip().splitlines() == [f"gblsr-reconstruct: {word}"], err
    assert out.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o.png"]


def test_crafted_checkpoint_costs_little(tmp_path, setup):
    with safe_open(str(setup["ckpt"]), "pt") as f:
        meta, sd = dict(f.metadata()), {k: f.get_tensor(k) for k in f.keys()}
    cfg = json.loads(meta["config"])
    # ~360 GB of weights if built: 100000 features through 16 dense blocks.
    cfg["encoder_cfg"].update(num_features=100000, growth_rate=64, num_rdbs=16)
    crafted = tmp_path / "crafted.safetensors"
    save_file(sd, str(crafted), metadata={**meta, "config": json.dumps(cfg)})
    assert crafted.stat().st_size < 64 << 10
    code = (
        "import json, resource, sys, time\n"
        "import gblsr\n"
        "t = time.perf_counter()\n"
        "try:\n"
        "    gblsr.load_model(sys.argv[1])\n"
        "    err = None\n"
        "except gblsr.errors.CheckpointError as e:\n"
        "    err = str(e)\n"
        "rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024\n"
        "print(json.dumps({'s': time.perf_counter() - t, 'rss': rss, 'err': err}))\n"
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    res = subprocess.run(
        [sys.executable, "-c", code, str(crafted)],
        capture_output=True,
        text=True,
        check=True,
        env=env,
    )
    got = json.loads(res.stdout.strip().splitlines()[-1])
    assert got["err"] and "larger model than the weights" in got["err"]
    assert got["s"] < 2.0, got
    assert got["rss"] < 1 << 30, got
