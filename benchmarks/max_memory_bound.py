"""Is --max-memory an honest bound? Peak working memory of writing a wide PNG, side by side
with the budget.

    python benchmarks/max_memory_bound.py [--width 200000] [--budgets 96M 128M 256M]

For each budget the RSS of this process is sampled every 2 ms while ``write_decoded`` renders
and writes a 16 x WIDTH PNG (a wide output makes the per-column planning arrays matter); the
peak above the RSS just before is the working memory, printed with its ratio to the budget.
Budgets the planner refuses are reported with its one line. A tiny random GB-LSR-ASR model.
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from pathlib import Path

import torch

import gblsr
from gblsr.errors import UserInputError
from gblsr.inference import EncodedImage, encode_image, parse_bytes, write_decoded


def rss() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def peak_during(fn) -> tuple[int, object]:
    base, peak, done = rss(), [0], threading.Event()

    def watch():
        while not done.is_set():
            peak[0] = max(peak[0], rss())
            time.sleep(0.002)

    t = threading.Thread(target=watch)
    t.start()
    try:
        out = fn()
    finally:
        done.set()
        t.join()
    return max(peak[0], rss()) - base, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--width", type=int, default=200_000)
    ap.add_argument("--budgets", nargs="+", default=["64M", "128M", "256M"])
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = gblsr.GBLSRScalarASR(
        encoder_cfg=dict(num_features=8, growth_rate=8, num_rdbs=2, num_layers_per_rdb=2)
    ).eval()
    from gblsr.data.image_io import ImageData

    enc: EncodedImage = encode_image(model, ImageData(rgb=torch.rand(3, 8, 40), alpha=None))
    H, W = 16, args.width
    print(f"output {H}x{W} PNG; working memory = peak RSS during the write - RSS before")
    with tempfile.TemporaryDirectory() as d:
        for text in args.budgets:
            budget = parse_bytes(text)
            out = Path(d) / "o.png"
            try:
                used, _ = peak_during(
                    lambda b=budget, o=out: write_decoded(model, enc, o, size=(H, W), max_memory=b)
                )
            except UserInputError as e:
                print(f"  --max-memory {text:>5}: refused: {e}")
                continue
            print(
                f"  --max-memory {text:>5}: working memory {used / 2**20:7.1f} MiB "
                f"= {used / budget:.2f} x the budget"
            )
            out.unlink()


if __name__ == "__main__":
    main()
