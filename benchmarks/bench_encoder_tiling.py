"""Tiled vs untiled encoding with the SwinIR encoder (LTE's configuration), on CPU.

1. Difference: the SwinIR encoder's features of a real photo (a crop of a shipped Kodak
   image), untiled and tiled (``gblsr.encoders.tiling.encode_tiled``) at two overlaps:
   max / mean absolute difference, also relative to the features' mean absolute value.
   Weights: ``--checkpoint`` (an official swinir-lte.pth or any gblsr SwinIR-LTE file) or, by
   default, seeded random weights at the official initialisation scale (say which in reports).
2. Peak memory: SwinIR-LTE full-image super-resolution (what ``predict_full`` does) of a
   ``--size`` x ``--size`` input at x``--scale``, each variant in a fresh process, peak RSS
   (ru_maxrss) printed side by side with the ratio. Untiled = ``model.encoder`` on the whole
   image, tiled = encoder tiles of ``--tile`` (+ ``--mem-overlap``); both then render with the
   same 256 MB query-chunk budget, so the difference is the encoder's.

    python benchmarks/bench_encoder_tiling.py                       # 512 x 512 input at x4
    python benchmarks/bench_encoder_tiling.py --size 128 --diff-size 96 --threads 2

On 2 busy cores SwinIR's forward costs ~6 s per 64 x 64 input, so the 512 x 512 run takes
tens of minutes; ``--size`` makes it smaller (the memory ratio grows with the size).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

ASSET = Path(__file__).resolve().parents[1] / "src" / "gblsr" / "assets" / "kodim23.png"


def _model(checkpoint: str | None):
    import torch

    import gblsr
    from gblsr.peers.lte import LTE

    if checkpoint:
        return gblsr.load_model(checkpoint).eval()
    torch.manual_seed(0)
    return LTE(encoder="swinir").eval()


def _photo(size: int):
    import numpy as np
    import torch
    from PIL import Image

    img = np.asarray(Image.open(ASSET).convert("RGB"))
    h, w = img.shape[:2]
    top, left = (h - size) // 2, (w - size) // 2
    crop = img[top : top + size, left : left + size] if size <= min(h, w) else img
    if crop.shape[0] != size or crop.shape[1] != size:  # larger than the photo: resize
        crop = np.asarray(Image.fromarray(img).resize((size, size), Image.BICUBIC))
    return torch.from_numpy(crop.copy()).permute(2, 0, 1)[None].float() / 255


def run_diff(args) -> None:
    import torch

    from gblsr.encoders.tiling import encode_tiled
    from gblsr.peers._common import normalize

    model = _model(args.checkpoint)
    x = normalize(_photo(args.diff_size))
    with torch.no_grad():
        t = time.perf_counter()
        ref = model.encoder(x)
        t_ref = time.perf_counter() - t
    scale = float(ref.abs().mean())
    n = args.diff_size
    print(f"features of a {n}x{n} crop of {ASSET.name}: {tuple(ref.shape)}")
    print(f"  untiled: {t_ref:.1f} s; mean |feature| {scale:.4f}")
    for ov in args.overlaps:
        t = time.perf_counter()
        got = encode_tiled(model.encoder, x, args.tile, ov)
        dt = time.perf_counter() - t
        d = (got - ref).abs()
        print(
            f"  tile {args.tile} overlap {ov:3d}: max abs diff {float(d.max()):.3e}  "
            f"mean abs diff {float(d.mean()):.3e}  (relative to mean |feature|: "
            f"{float(d.max()) / scale:.2e} / {float(d.mean()) / scale:.2e})  {dt:.1f} s"
        )


def child(args) -> None:
    """One predict_full in this process; prints JSON with the peak RSS."""
    import torch

    from gblsr.encoders.tiling import encode_tiled
    from gblsr.peers._common import normalize

    torch.set_num_threads(args.threads)
    model = _model(args.checkpoint)
    lr = _photo(args.size)
    H = W = args.size * args.scale
    t = time.perf_counter()
    with torch.no_grad():
        # Both variants render with the same 256 MB query-chunk budget, so the difference in
        # peak RSS is the encoder's alone.
        inp = normalize(lr)
        if args.child == "untiled":
            feat = model.encoder(inp)
        else:
            feat = encode_tiled(model.encoder, inp, args.tile, args.mem_overlap)
        rep = model.representation({"inp": inp, "feat": feat})
        out = rep.render(H, W, max_memory=256 << 20)
    dt = time.perf_counter() - t
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB
    print(
        json.dumps(
            {"variant": args.child, "peak_rss": peak, "seconds": dt, "shape": list(out.shape)}
        )
    )


def run_memory(args) -> None:
    res = {}
    for variant in args.variants:
        cmd = [
            sys.executable,
            __file__,
            "--child",
            variant,
            "--size",
            str(args.size),
            "--scale",
            str(args.scale),
            "--tile",
            str(args.tile),
            "--mem-overlap",
            str(args.mem_overlap),
            "--threads",
            str(args.threads),
        ]
        if args.checkpoint:
            cmd += ["--checkpoint", args.checkpoint]
        line = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
        res[variant] = json.loads(line.strip().splitlines()[-1])
        r = res[variant]
        print(
            f"  {variant:8s} peak RSS {r['peak_rss'] / 2**30:6.2f} GiB  "
            f"{r['seconds']:7.1f} s  output {r['shape']}"
        )
    if len(res) == 2:
        ratio = res["untiled"]["peak_rss"] / res["tiled"]["peak_rss"]
        print(f"  untiled / tiled peak RSS: {ratio:.2f}")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", type=int, default=512, help="LR side for the memory run")
    ap.add_argument("--scale", type=int, default=4)
    ap.add_argument("--diff-size", type=int, default=128, help="LR side for the difference run")
    ap.add_argument("--tile", type=int, default=64)
    ap.add_argument("--overlaps", type=int, nargs="+", default=[8, 24])
    ap.add_argument("--mem-overlap", type=int, default=16)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--checkpoint", default=None)
    ap.add_argument("--skip-diff", action="store_true")
    ap.add_argument("--skip-memory", action="store_true")
    ap.add_argument(
        "--variants", nargs="+", choices=["untiled", "tiled"], default=["untiled", "tiled"]
    )
    ap.add_argument("--child", choices=["untiled", "tiled"], help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        return child(args)
    import torch

    torch.set_num_threads(args.threads)
    print(
        f"torch {torch.__version__}, {args.threads} thread(s), weights: "
        f"{args.checkpoint or 'seeded random (official init scale)'}"
    )
    if not args.skip_diff:
        run_diff(args)
    if not args.skip_memory:
        print(
            f"SwinIR-LTE predict_full {args.size}x{args.size} -> x{args.scale} "
            f"(encoder tile {args.tile}, overlap {args.mem_overlap}):"
        )
        run_memory(args)


if __name__ == "__main__":
    main()
