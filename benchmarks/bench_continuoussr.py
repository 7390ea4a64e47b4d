#!/usr/bin/env python
"""ContinuousSR on a CPU: the cost of a second scale, peak memory of a big render, and the
figure of the official 256-per-tile cap (docs/continuoussr.md).

1. ``rerender``: a 64x64 input, the CNN encoder (``upsampled4``: EDSR 8 x 64 + x4 feature
   upsampler), random weights. Measured side by side in one process: ``encode`` (encoder + all
   heads, once), the first render (x4, 256x256) and a second scale (x3, 192x192) of the same
   field, best of 3, in wall-clock and process CPU time (CPU time is the fair measure on a
   shared machine). Target: second scale <= 10% of encode + first render.
2. ``memory``: a 256x256 input to a 4096x4096 output (encode + render), in a fresh process;
   reported: wall time and that process's peak resident set size. Target: < 3 GiB.
3. ``train`` (not in the default run): one training step (forward through the trainer's call,
   L1, backward, Adam) of the ``cpu_small`` study's setting (batch 16 of 32x32 LR crops at x3,
   1024 queries; EDSR 4 x 32 + upsampler) for each ``--head-widths``, best of 2 after a warm-up:
   what sized the study's ``head_width: 0.25`` (docs/study.md).
4. ``--figure PATH``: a PNG of the official cap's artefact. A field fitted by hand to a Kodak
   crop (the 256x256 shipped kodim23 reduced to 64x64; one isotropic Gaussian per grid cell,
   coloured by its LR pixel, normalised by the uncapped coverage) rendered at x1.5 with
   ``tile_cap=256`` (official, left), ``None`` (middle) and their difference (right).

    python benchmarks/bench_continuoussr.py --threads 2
    python benchmarks/bench_continuoussr.py --only rerender --figure docs/continuoussr_cap.png
    python benchmarks/bench_continuoussr.py --only train --threads 2 --head-widths 1 0.5 0.25
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

MEMORY = r"""
import json, time, torch
torch.set_num_threads({threads})
from gblsr.registry import create_model
torch.manual_seed(0)
m = create_model("continuoussr").eval()
lr = torch.rand(1, 3, 256, 256)
t = time.perf_counter()
with torch.no_grad():
    rep = m.encode(lr)
    t_enc = time.perf_counter() - t
    out = rep.render(4096, 4096)
dt = time.perf_counter() - t
print(json.dumps({{"seconds": dt, "encode_s": t_enc, "shape": list(out.shape),
                  "finite": bool(out.isfinite().all())}}))
"""


def _rerender(threads: int) -> dict:
    import torch

    from gblsr.registry import create_model

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    m = create_model("continuoussr").eval()
    lr = torch.rand(1, 3, 64, 64)
    rows = []
    clocks = {"wall": time.perf_counter, "cpu": time.process_time}
    with torch.no_grad():
        m.encode(lr).render(64, 64)  # warm-up (allocator, kernels)
        for _ in range(3):
            for clock_name, clock in clocks.items():
                t0 = clock()
                rep = m.encode(lr)
                t1 = clock()
                rep.render(256, 256)
                t2 = clock()
                rep.render(192, 192)
                t3 = clock()
                rows.append((clock_name, t1 - t0, t2 - t1, t3 - t2))
    out = {}
    for clock_name in clocks:
        enc, first, second = (min(r[i] for r in rows if r[0] == clock_name) for i in (1, 2, 3))
        out[clock_name] = {
            "encode_s": enc,
            "first_render_x4_s": first,
            "second_render_x3_s": second,
            "ratio": second / (enc + first),
        }
    return out


def _memory(threads: int) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    code = MEMORY.format(threads=threads)
    t = time.perf_counter()
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen([sys.executable, "-c", code], stdout=out, stderr=err, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
        out.seek(0)
        err.seek(0)
        if os.waitstatus_to_exitcode(status) != 0:
            sys.exit(f"memory child failed:\n{err.read()}")
        info = json.loads(out.read().strip().splitlines()[-1])
    return {"wall_s": time.perf_counter() - t, "peak_rss_mib": usage.ru_maxrss / 1024, **info}


def _train(threads: int, widths: list[float]) -> dict:
    import torch

    from gblsr.registry import create_model

    torch.set_num_threads(threads)
    enc = {"base": "edsr", "base_cfg": {"num_blocks": 4, "num_features": 32}, "num_feat": 64}
    out = {}
    for w in widths:
        torch.manual_seed(0)
        m = create_model("continuoussr", encoder="upsampled4", encoder_cfg=enc, head_width=w)
        opt = torch.optim.Adam(m.parameters(), 1e-4)
        lr = torch.rand(16, 3, 32, 32)
        coord = torch.rand(16, 1024, 2) * 2 - 1
        cell = torch.full((16, 1024, 2), 2.0 / 96)  # x3: 96x96 renders
        times = []
        for _ in range(3):
            t = time.perf_counter()
            m(lr, coord, cell).abs().mean().backward()
            opt.step()
            opt.zero_grad()
            times.append(time.perf_counter() - t)
        n = sum(p.numel() for p in m.parameters())
        out[str(w)] = {"params": n, "s_per_step": min(times[1:])}
    return out


def _figure(path: str, scale: float = 1.5) -> dict:
    import numpy as np
    import torch
    from PIL import Image

    from gblsr.data.image_io import read_rgb_uint8
    from gblsr.peers.gaussian_raster import render_gaussians

    assets = os.path.join(os.path.dirname(__file__), "..", "src", "gblsr", "assets")
    hr = read_rgb_uint8(os.path.join(assets, "kodim23.png")).float() / 255
    lr = torch.nn.functional.interpolate(hr[None], size=(64, 64), mode="area")
    h, w = lr.shape[-2:]
    H, W = round(h * scale), round(w * scale)
    i, j = torch.meshgrid(torch.arange(2 * h), torch.arange(2 * w), indexing="ij")
    means = torch.stack([2 * (j / (2 * w)) - 1 - 1 / W, 2 * (i / (2 * h)) - 1 - 1 / H], -1)
    means = means.reshape(1, -1, 2).float()
    n = means.shape[1]
    # Isotropic Gaussians of 0.45 LR px (a dictionary-typical width), in render pixels.
    chol = torch.tensor([0.45 * scale, 0.0, 0.45 * scale]).expand(1, n, 3)
    colour = lr[0, :, i // 2, j // 2].reshape(3, -1).t()[None]
    ones = torch.ones(1, n, 3)
    cover = render_gaussians(means, chol, ones, H, W)[0, 0].mean()
    colour = colour / cover
    full = render_gaussians(means, chol, colour, H, W)[0]
    capped = render_gaussians(means, chol, colour, H, W, tile_cap=256)[0]
    diff = (full - capped).abs().amax(0, keepdim=True).expand(3, -1, -1)
    diff = diff / diff.max().clamp_min(1e-8)
    gap = torch.ones(3, H, 4)
    panel = torch.cat([capped.clamp(0, 1), gap, full.clamp(0, 1), gap, diff], dim=2)
    img = (panel.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    Image.fromarray(img).resize((img.shape[1] * 2, img.shape[0] * 2), Image.NEAREST).save(path)
    changed = float(((full - capped).abs().amax(0) > 1 / 255).float().mean())
    return {"figure": path, "scale": scale, "pixels_changed_by_cap": changed}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", choices=["rerender", "memory", "train"], nargs="+")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--head-widths", type=float, nargs="+", default=[1.0, 0.5, 0.25, 0.125])
    ap.add_argument("--figure", help="write the tile-cap figure to this PNG")
    ap.add_argument("--json", help="write the numbers to this JSON file")
    args = ap.parse_args(argv)
    parts = args.only or ["rerender", "memory"]
    results = {}
    if "rerender" in parts:
        res = results["rerender"] = _rerender(args.threads)
        for clock_name, r in res.items():
            print(
                f"64x64, upsampled4 (EDSR 8x64), {args.threads} thread(s), {clock_name} time: "
                f"encode {r['encode_s'] * 1e3:.0f} ms + first render x4 "
                f"{r['first_render_x4_s'] * 1e3:.0f} ms; second scale x3 "
                f"{r['second_render_x3_s'] * 1e3:.0f} ms = {100 * r['ratio']:.1f}% of encode + "
                "first render (target <= 10%)"
            )
    if "memory" in parts:
        r = results["memory"] = _memory(args.threads)
        print(
            f"256x256 -> 4096x4096, upsampled4: {r['seconds']:.1f} s (encode {r['encode_s']:.1f}"
            f" s), peak RSS {r['peak_rss_mib']:.0f} MiB (target < 3072 MiB)"
        )
    if "train" in parts:
        res = results["train"] = _train(args.threads, args.head_widths)
        full = res.get("1.0", {}).get("s_per_step")
        for w, r in res.items():
            rel = f" ({full / r['s_per_step']:.1f}x faster than 1.0)" if full and w != "1.0" else ""
            print(
                f"train step, batch 16 x 32x32 at x3, head_width {w}: {r['params']:,} params, "
                f"{r['s_per_step']:.2f} s/step{rel}, {args.threads} thread(s)"
            )
    if args.figure:
        r = results["figure"] = _figure(args.figure)
        print(
            f"figure {r['figure']}: x{r['scale']}, the cap changes "
            f"{100 * r['pixels_changed_by_cap']:.0f}% of pixels by > 1/255"
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
