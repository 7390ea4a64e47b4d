#!/usr/bin/env python
"""Decode speed and memory of the GB-LSR renderer against the reference algorithm, in one run.

Prints markdown tables:

1. decoding a feature map (coefficient projection + rendering) with our renderer and with a
   plain per-query implementation of the reference algorithm (benchmarks/reference_algorithm.py;
   same weights), for 48x48 and 256x256 feature maps at x2, x2.5, x4, x8, x16: time, speed-up,
   peak memory, and the largest relative difference of the two outputs;
2. the native arm's forward at 256x256 (and its decoder alone, against the 6-index einsum);
3. encode once, then render at several scales, against predict_full each time.

Timing: CUDA events around each run on CUDA (after a synchronise), perf_counter on the CPU; the
median of --repeats runs (after one warm-up). Peak memory is what the run adds on top of what was
allocated before it: torch.cuda.max_memory_allocated on CUDA, the peak resident set size on the
CPU (Linux; its high-water mark is reset before each run, and glibc is told to mmap blocks of
64 KiB and more during memory runs so that freed memory leaves the resident set).

The reference algorithm is slow (about 50 us per output pixel on one CPU core). Outputs larger
than --ref-max-pixels are timed on the first tiles of --ref-tile queries and extrapolated
linearly (the algorithm does the same work for every query); those rows are marked "~". The
reference's memory is measured untiled up to --ref-untiled-max pixels and with --ref-tile
queries per call above that (its untiled memory grows with the output: ~12 KiB per pixel).

    python benchmarks/bench_render.py                      # CPU, torch's thread count
    python benchmarks/bench_render.py --threads 2 --json out.json
    python benchmarks/bench_render.py --device cuda        # on a GPU machine
"""

# ruff: noqa: B023  (the closures below are called before their loop variables change)
from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import reference_algorithm as ref_alg  # noqa: E402

import gblsr  # noqa: E402
from gblsr.asr import GBLSRScalarASRDecoder  # noqa: E402
from gblsr.models import LocalSpectralArm, ModelConfig  # noqa: E402

# ------------------------------------------------------------------------------------------
# Measurement


def _rss_kb(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


class _Glibc:
    """glibc malloc knobs, so that the resident set size reflects live memory during memory
    runs: large blocks are mmapped (returned to the OS when freed) and the heap is trimmed."""

    M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3

    def __init__(self):
        try:
            import ctypes

            self.lib = ctypes.CDLL("libc.so.6")
            self.lib.mallopt  # noqa: B018 - probe
        except (OSError, AttributeError):
            self.lib = None

    def timing_mode(self) -> None:
        # What glibc's dynamic threshold converges to anyway: blocks up to 32 MiB are recycled
        # from the heap, bigger ones mmapped. Fixed here so that runs do not depend on history.
        if self.lib is not None:
            self.lib.mallopt(self.M_MMAP_THRESHOLD, 32 << 20)

    def memory_mode(self) -> None:
        if self.lib is not None:
            self.lib.mallopt(self.M_MMAP_THRESHOLD, 64 << 10)
            self.lib.mallopt(self.M_TRIM_THRESHOLD, 64 << 10)
            self.lib.malloc_trim(0)


GLIBC = _Glibc()


def _reset_hwm() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


class Meter:
    """Times a callable (median of repeats) and measures the memory one run adds."""

    def __init__(self, device: torch.device):
        self.device = device
        self.cuda = device.type == "cuda"

    def sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize(self.device)

    def time_once(self, fn) -> float:
        if self.cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            self.sync()
            start.record()
            fn()
            end.record()
            self.sync()
            return start.elapsed_time(end) / 1000.0
        t0 = time.perf_counter()
        fn()
        return time.perf_counter() - t0

    def time(self, fn, repeats: int, warmup: int = 1) -> float:
        for _ in range(warmup):
            fn()
        return statistics.median(self.time_once(fn) for _ in range(max(1, repeats)))

    def peak_extra_bytes(self, fn) -> int | None:
        """Memory one run of ``fn`` adds at its peak (its result included while it exists)."""
        return self.run(fn)[1]

    def run(self, fn):
        """One run of ``fn``: (seconds, peak extra bytes or None, result)."""
        self.sync()
        if self.cuda:
            torch.cuda.empty_cache()
            base = torch.cuda.memory_allocated(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            out = fn()
            end.record()
            self.sync()
            return start.elapsed_time(end) / 1000.0, torch.cuda.max_memory_allocated() - base, out
        GLIBC.memory_mode()
        tracked = _reset_hwm()
        base = _rss_kb("VmRSS")
        t0 = time.perf_counter()
        out = fn()
        dt = time.perf_counter() - t0
        peak = (_rss_kb("VmHWM") - base) * 1024 if tracked else None
        GLIBC.timing_mode()
        return dt, peak, out


def fmt_time(s: float | None) -> str:
    if s is None:
        return "-"
    if s < 1e-3:
        return f"{s * 1e6:.0f} us"
    if s < 1:
        return f"{s * 1e3:.1f} ms"
    return f"{s:.2f} s"


def fmt_mem(b: int | None) -> str:
    if b is None:
        return "-"
    if b < (1 << 20):
        return f"{b / 1024:.0f} KiB"
    if b < (1 << 30):
        return f"{b / 2**20:.0f} MiB"
    return f"{b / 2**30:.2f} GiB"


# ------------------------------------------------------------------------------------------
# 1. Decoding a feature map


def bench_decode(args, meter: Meter, results: dict) -> None:
    dev = meter.device
    torch.manual_seed(0)
    dec = GBLSRScalarASRDecoder(args.in_dim, p_max=16).to(dev).eval()
    with torch.no_grad():
        dec.coeff_proj.weight.normal_(0, 0.05)
        dec.coeff_proj.bias.normal_(0, 0.05)
    rows = []
    print(f"\n### Decoding a feature map (D={args.in_dim}, p_max=16, local ensemble on)\n")
    print(
        "| features | scale | output | ours | reference algorithm | speed-up | ours peak mem "
        "| reference peak mem | max rel. diff |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for n in args.feat_sizes:
        feat = torch.randn(1, args.in_dim, n, n, device=dev)
        for s in args.scales:
            H = W = round(s * n)
            px = H * W
            with torch.no_grad():

                def ours():
                    return dec.encode(feat).render(H, W)

                t_ours = meter.time(ours, args.repeats)
                m_ours = meter.peak_extra_bytes(ours)
                img = ours()

                tile = args.ref_tile
                untiled = px <= args.ref_untiled_max
                extrap = px > args.ref_max_pixels
                n_tiles = -(-args.ref_max_pixels // tile) if extrap else None
                tile_q = None if (untiled and not extrap) else tile
                t_run, m_ref, (ref_pixels, done) = meter.run(
                    lambda: ref_alg.decode_full(dec, feat, H, W, tile_q=tile_q, max_tiles=n_tiles)
                )
                t_ref = t_run * px / done
                mine = img.permute(0, 2, 3, 1).reshape(1, -1, 3)[:, :done]
                diff = float((mine - ref_pixels).abs().max() / ref_pixels.abs().max())
                del ref_pixels, img
            row = {
                "features": n,
                "scale": s,
                "output": [H, W],
                "ours_s": t_ours,
                "reference_s": t_ref,
                "reference_extrapolated": extrap,
                "reference_tiled": not untiled or extrap,
                "speedup": t_ref / t_ours,
                "ours_peak_bytes": m_ours,
                "reference_peak_bytes": m_ref,
                "max_rel_diff": diff,
            }
            rows.append(row)
            mark = "~" if extrap else ""
            ref_mem = fmt_mem(m_ref) + ("" if untiled and not extrap else f" (tile_q={tile})")
            print(
                f"| {n}x{n} | x{s:g} | {H}x{W} | {fmt_time(t_ours)} | {mark}{fmt_time(t_ref)} | "
                f"{mark}{t_ref / t_ours:.0f}x | {fmt_mem(m_ours)} | {ref_mem} | {diff:.1e} |",
                flush=True,
            )
    results["decode"] = rows


# ------------------------------------------------------------------------------------------
# 2. Native arm


def bench_native(args, meter: Meter, results: dict) -> None:
    dev = meter.device
    rows = []
    print("\n### Native arm (d_feat 128, patch 32, p_max 16), 256x256 input, batch 1\n")
    print(
        "| bandwidth mode | forward (ours) | decoder: ours | decoder: 6-index einsum | speed-up |"
    )
    print("|---|---|---|---|---|")
    for mode in ("global_scalar", "local_linear"):
        torch.manual_seed(0)
        model = LocalSpectralArm(ModelConfig(arm="local_spectral"), bandwidth_mode=mode)
        model = model.to(dev).eval()
        x = torch.rand(1, 3, 256, 256, device=dev)
        with torch.no_grad():
            t_fwd = meter.time(lambda: model(x), args.repeats)
            feat, _ = model.encode(x)
            d = model.decoder
            coeffs, s_e, p_soft = d.spectral_params(feat)
            coords = torch.linspace(-1, 1, d.basis_cfg.patch_size, device=dev)
            t_dec = meter.time(lambda: d.render(coeffs, s_e, p_soft), args.repeats)
            t_ein = meter.time(
                lambda: ref_alg.native_reference_render(coeffs, s_e, p_soft, coords, d.basis_cfg),
                args.repeats,
            )
        rows.append({"mode": mode, "forward_s": t_fwd, "decoder_s": t_dec, "einsum_s": t_ein})
        print(
            f"| {mode} | {fmt_time(t_fwd)} | {fmt_time(t_dec)} | {fmt_time(t_ein)} | "
            f"{t_ein / t_dec:.1f}x |",
            flush=True,
        )
    results["native"] = rows


# ------------------------------------------------------------------------------------------
# 3. Encode once, render many


def bench_rerender(args, meter: Meter, results: dict) -> None:
    dev = meter.device
    torch.manual_seed(0)
    enc_cfg = dict(num_features=64, growth_rate=32, num_rdbs=4, num_layers_per_rdb=4)
    model = gblsr.GBLSRScalarASR(encoder_cfg=enc_cfg).to(dev).eval()
    n = args.rerender_size
    lr = torch.rand(1, 3, n, n, device=dev)
    print(f"\n### Encode once, render many (RDN 64/32/4/4, p_max 16, {n}x{n} input)\n")
    with torch.no_grad():
        t_enc = meter.time(lambda: model.encode(lr), args.repeats)
        rep = model.encode(lr)
        print(f"encode (RDN + coefficient map): {fmt_time(t_enc)}\n")
        print("| scale | output | render after encode | predict_full (encode + render) |")
        print("|---|---|---|---|")
        rows = []
        for s in args.rerender_scales:
            H = W = round(s * n)
            t_r = meter.time(lambda: rep.render(H, W), args.repeats)
            t_p = meter.time(lambda: model.predict_full(lr, H, W), args.repeats)
            rows.append({"scale": s, "output": [H, W], "render_s": t_r, "predict_full_s": t_p})
            print(f"| x{s:g} | {H}x{W} | {fmt_time(t_r)} | {fmt_time(t_p)} |", flush=True)
    results["rerender"] = {"encode_s": t_enc, "rows": rows}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="auto", help="auto, cpu or cuda")
    ap.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    ap.add_argument("--feat-sizes", type=int, nargs="+", default=[48, 256])
    ap.add_argument("--scales", type=float, nargs="+", default=[2, 2.5, 4, 8, 16])
    ap.add_argument("--in-dim", type=int, default=64, help="feature channels (RDN: 64)")
    ap.add_argument("--repeats", type=int, default=3, help="timed runs of ours (median)")
    ap.add_argument("--ref-tile", type=int, default=65536, help="reference queries per call")
    ap.add_argument(
        "--ref-max-pixels",
        type=int,
        default=1 << 20,
        help="time the reference on at most this many pixels, extrapolating beyond",
    )
    ap.add_argument(
        "--ref-untiled-max",
        type=int,
        default=1 << 18,
        help="run the reference untiled (its default) up to this many output pixels",
    )
    ap.add_argument("--rerender-size", type=int, default=256)
    ap.add_argument("--rerender-scales", type=float, nargs="+", default=[2, 3.7, 4, 8])
    ap.add_argument(
        "--only", choices=["decode", "native", "rerender"], nargs="+", help="run only these parts"
    )
    ap.add_argument("--json", help="write all numbers to this JSON file")
    args = ap.parse_args(argv)

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.device == "auto":
        dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        dev = torch.device(args.device)
    meter = Meter(dev)
    GLIBC.timing_mode()
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else platform.processor()
    print(
        f"device: {dev} ({name or platform.machine()}), torch {torch.__version__}, "
        f"CPU threads {torch.get_num_threads()}"
    )
    results: dict = {
        "device": str(dev),
        "device_name": name,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
    }
    parts = args.only or ["decode", "native", "rerender"]
    if "decode" in parts:
        bench_decode(args, meter, results)
    if "native" in parts:
        bench_native(args, meter, results)
    if "rerender" in parts:
        bench_rerender(args, meter, results)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
