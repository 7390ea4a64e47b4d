#!/usr/bin/env python
"""What one viewer tile costs, against rendering its whole level, in one run.

The viewer renders each 256 x 256 tile with ``render_region`` from an encoding made once. This
prints, for levels from 1x to --max-scale of an image, the median time of one tile (each of the
up to 3 x 3 tiles around the centre rendered once, in row-major order as a view fills, after one
warm-up tile elsewhere), the time of the whole level (``rep.render``; skipped above
--whole-max-pixels and marked "-"), and their ratio, so the claim "a window of a 16x
enlargement costs only that window" is measured, not asserted. Also the encode time, and the
PNG encoding time of one tile.

    python benchmarks/bench_viewer_tiles.py --checkpoint model.safetensors --image photo.png
    python benchmarks/bench_viewer_tiles.py                 # random-weight GB-LSR-ASR, 128x128
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

import gblsr
from gblsr.viewer.bicubic import BicubicRepresentation
from gblsr.viewer.tiles import build_levels, encode_png, render_tile


def _median_time(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", help="model file (default: random-weight gblsr_asr, EDSR)")
    p.add_argument("--image", help="input image (default: random 128x128)")
    p.add_argument("--max-scale", type=float, default=16.0)
    p.add_argument("--tile", type=int, default=256)
    p.add_argument("--repeats", type=int, default=5, help="runs of the PNG encoding")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--whole-max-pixels", type=int, default=4_000_000)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    if args.image:
        from gblsr.data.image_io import read_image

        lr = read_image(args.image).rgb[None]
    else:
        torch.manual_seed(0)
        lr = torch.rand(1, 3, 128, 128)
    if args.checkpoint:
        model = gblsr.load_model(args.checkpoint)
    else:
        torch.manual_seed(0)
        model = gblsr.create_model("gblsr_asr", encoder="edsr").eval()
    name = getattr(model, "registry_name", type(model).__name__)
    h, w = lr.shape[-2:]
    with torch.no_grad():
        t_enc = _median_time(lambda: model.encode(lr), 1)
        reps = {name: model.encode(lr), "bicubic": BicubicRepresentation(lr)}
    print(
        f"input {h}x{w}, {name}: encode {t_enc * 1e3:.0f} ms; torch threads "
        f"{torch.get_num_threads()}; tile {args.tile}"
    )
    print()
    print("| method | level | size | one tile (ms) | whole level (ms) | whole / tile |")
    print("|---|---|---|---|---|---|")
    png_ms = None
    for label, rep in reps.items():
        for lv in build_levels((h, w), args.max_scale, args.tile):
            if lv.scale < 1:
                continue
            cols, rows = lv.grid(args.tile)
            c, r = cols // 2, rows // 2
            block = [
                (x, y)
                for y in range(max(0, r - 1), min(rows, r + 2))
                for x in range(max(0, c - 1), min(cols, c + 2))
            ]
            with torch.no_grad():
                render_tile(rep, lv, 0, 0, args.tile)  # warm-up
                times = []
                for x, y in block:
                    t0 = time.perf_counter()
                    render_tile(rep, lv, x, y, args.tile)
                    times.append(time.perf_counter() - t0)
                t_tile = statistics.median(times)
                if lv.height * lv.width <= args.whole_max_pixels:
                    t_whole = _median_time(
                        lambda rep=rep, lv=lv: rep.render(lv.height, lv.width), 1
                    )
                    whole, ratio = f"{t_whole * 1e3:.0f}", f"{t_whole / t_tile:.1f}"
                else:
                    whole, ratio = "-", "-"
            if png_ms is None:
                tile = render_tile(rep, lv, c, r, args.tile)
                png_ms = _median_time(lambda tile=tile: encode_png(tile), args.repeats) * 1e3
            print(
                f"| {label} | x{lv.scale:g} | {lv.width}x{lv.height} | {t_tile * 1e3:.1f} "
                f"| {whole} | {ratio} |"
            )
    print()
    print(f"PNG encoding of one tile: {png_ms:.1f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
