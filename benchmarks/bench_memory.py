#!/usr/bin/env python
"""Peak memory of big renders, each in a fresh process (so nothing else inflates the peak).

1. ``predict_full``: a 256x256 input to a 4096x4096 output with RDN(num_features 64,
   growth_rate 32, num_rdbs 4, num_layers_per_rdb 4) and p_max 16, encoder included, random
   weights. Reported: wall time and the child's peak resident set size.
2. ``reconstruct``: ``gblsr-reconstruct`` of a 256x256 PNG to --big-size (default 16384x16384)
   with a tiny random-weight checkpoint written by ``gblsr.save_model``. Reported: wall time,
   peak RSS, output file size; the PNG is checked to decode to the right size.

    python benchmarks/bench_memory.py                    # both
    python benchmarks/bench_memory.py --only predict_full --threads 2
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PREDICT_FULL = r"""
import json, sys, time, torch, gblsr
torch.manual_seed(0)
cfg = dict(num_features=64, growth_rate=32, num_rdbs=4, num_layers_per_rdb=4)
m = gblsr.GBLSRScalarASR(encoder_cfg=cfg).eval()
lr = torch.rand(1, 3, {h}, {w})
t = time.perf_counter()
out = m.predict_full(lr, {H}, {W})
dt = time.perf_counter() - t
print(json.dumps({{"seconds": dt, "shape": list(out.shape), "finite": bool(out.isfinite().all())}}))
"""

MAKE_INPUTS = r"""
import numpy as np, torch, gblsr
from PIL import Image
torch.manual_seed(0)
m = gblsr.GBLSRScalarASR(encoder_cfg=dict(num_features=8, growth_rate=8, num_rdbs=2,
                                          num_layers_per_rdb=2)).eval()
gblsr.save_model(m, "{ckpt}")
x = np.linspace(0, 6, {n})
img = 127 + 120 * np.sin(x[:, None, None] + x[None, :, None] * np.array([1.0, 1.5, 2.0]))
Image.fromarray(img.clip(0, 255).astype(np.uint8)).save("{png}")
"""


def run_child(cmd: list[str], env: dict) -> tuple[float, float, str]:
    """(seconds, peak RSS of that child in MiB, stdout), from the child's own rusage."""
    t = time.perf_counter()
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, text=True, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        dt = time.perf_counter() - t
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    if proc.returncode != 0:
        sys.exit(f"command failed ({proc.returncode}): {' '.join(cmd)}\n{stderr}")
    return dt, usage.ru_maxrss / 1024.0, stdout


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", choices=["predict_full", "reconstruct"], nargs="+")
    ap.add_argument("--threads", type=int, help="OMP_NUM_THREADS for the children")
    ap.add_argument("--big-size", default="16384x16384", help="reconstruct output HxW")
    ap.add_argument("--max-memory", default="1G", help="gblsr-reconstruct --max-memory")
    ap.add_argument("--keep", help="folder to keep the reconstruct output in")
    ap.add_argument("--json", help="write the numbers to this JSON file")
    args = ap.parse_args(argv)
    env = dict(os.environ)
    if args.threads:
        env["OMP_NUM_THREADS"] = str(args.threads)
    parts = args.only or ["predict_full", "reconstruct"]
    results = {}

    if "predict_full" in parts:
        code = PREDICT_FULL.format(h=256, w=256, H=4096, W=4096)
        dt, peak, out = run_child([sys.executable, "-c", code], env)
        info = json.loads(out.strip().splitlines()[-1])
        results["predict_full"] = {"wall_s": dt, "peak_rss_mib": peak, **info}
        print(
            f"predict_full 256x256 -> 4096x4096, RDN 64/32/4/4, p_max 16: "
            f"{info['seconds']:.1f} s in the call ({dt:.1f} s with start-up), "
            f"peak RSS {peak:.0f} MiB"
        )

    if "reconstruct" in parts:
        folder = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="gblsr-big-"))
        folder.mkdir(parents=True, exist_ok=True)
        ckpt, png, out = folder / "tiny.safetensors", folder / "in256.png", folder / "out.png"
        subprocess.run(
            [sys.executable, "-c", MAKE_INPUTS.format(ckpt=ckpt, png=png, n=256)], check=True
        )
        cmd = [
            sys.executable,
            "-m",
            "gblsr.cli.reconstruct",
            "--checkpoint",
            str(ckpt),
            "--input",
            str(png),
            "--size",
            args.big_size,
            "--output",
            str(out),
            "--device",
            "cpu",
            "--max-memory",
            args.max_memory,
        ]
        dt, peak, _ = run_child(cmd, env)
        from PIL import Image

        Image.MAX_IMAGE_PIXELS = None
        with Image.open(out) as im:
            size = im.size
        results["reconstruct"] = {
            "output": args.big_size,
            "wall_s": dt,
            "peak_rss_mib": peak,
            "file_bytes": out.stat().st_size,
            "png_size_wh": list(size),
        }
        print(
            f"gblsr-reconstruct 256x256 -> {args.big_size} (PNG, --max-memory "
            f"{args.max_memory}): {dt:.0f} s, peak RSS {peak:.0f} MiB, "
            f"{out.stat().st_size / 2**20:.0f} MiB file ({size[0]}x{size[1]})"
        )
        if not args.keep:
            for f in (ckpt, png, out):
                f.unlink(missing_ok=True)
            folder.rmdir()

    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
