#!/usr/bin/env python
"""Decode time of GB-LSR against LIIF, LTE and LM-LIIF (and LM-LTE) with the same encoder and the
same output sizes, in one run.

Every model gets the same EDSR-baseline encoder (16 blocks, 64 features; ``--encoder rdn`` for
RDN) and its paper's decoder (GB-LSR-ASR: p_max 16; LIIF: MLP 580-256x4-3; LTE: 256-wide; LM-LIIF:
208-wide latent MLP, 16x6 render MLP; LM-LTE: 288 / 16x8). Weights are random (timing does not
depend on them). For each LR size and scale it measures, as the median of ``--repeats`` runs
after one warm-up:

* encoder: the encoder alone on the (normalised) LR image;
* total: ``predict_full(lr, H, W)`` (the full super-resolution, the encoder included);
* decode: from precomputed encoder features to the image, i.e. everything after the encoder
  (GB-LSR: ``decoder.encode(feat).render(H, W)``, the coefficient projection and rendering;
  LIIF: unfolding and queries; LTE: coef/freq convs and queries; LMF: latent MLP and render
  MLP), in ms and in ns per output pixel.

Peer models decode ``--tile`` queries at a time (default 30,000, the official eval_bsize); GB-LSR
uses its own renderer defaults. Timing: perf_counter on the CPU, CUDA events' equivalent
(synchronise before and after) on a GPU.

    python benchmarks/bench_peers.py                       # CPU, 48x48 LR, x2 x4 x8
    python benchmarks/bench_peers.py --threads 2 --out benchmarks/peers_decode_cpu.md
    python benchmarks/bench_peers.py --device cuda --lr-size 256 --scales 2 4 8 16
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch

import gblsr
from gblsr.peers._common import PeerRepresentation, normalize

DECODERS = {
    "gblsr_asr": ("GB-LSR", {"decoder_cfg": {"p_max": 16}}),
    "liif": ("LIIF", {}),
    "lte": ("LTE", {}),
    "lmliif": ("LM-LIIF", {}),
    "lmlte": ("LM-LTE", {}),
}


def build(name: str, encoder: str) -> torch.nn.Module:
    label, args = DECODERS[name]
    return gblsr.create_model(name, encoder=encoder, **args).eval()


def timed(fn, device: torch.device, repeats: int) -> float:
    """Median seconds of ``repeats`` runs after one warm-up."""

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    with torch.no_grad():
        fn()
        times = []
        for _ in range(repeats):
            sync()
            t0 = time.perf_counter()
            fn()
            sync()
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def decoder_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for n, p in model.named_parameters() if not n.startswith("encoder."))


def decoder_fn(name: str, model: torch.nn.Module, lr: torch.Tensor, H: int, W: int, tile: int):
    """A callable that decodes precomputed encoder features to the H x W image."""
    if name == "gblsr_asr":
        feat = model.encoder(lr)  # GB-LSR-ASR takes [0, 1] images as they are
        if hasattr(model.decoder, "encode"):
            return lambda: model.decoder.encode(feat).render(H, W)
        return None
    inp = normalize(lr)
    feat = model.encoder(inp)
    return lambda: PeerRepresentation(model, inp, feat).render(H, W, max_pixels=tile)


def run(args) -> list[dict]:
    device = torch.device(args.device)
    torch.manual_seed(0)
    rows = []
    models = {name: build(name, args.encoder).to(device) for name in args.models}
    for size in args.lr_size:
        lr = torch.rand(1, 3, size, size, device=device)
        for name, model in models.items():
            x = lr if name == "gblsr_asr" else normalize(lr)
            t_enc = timed(lambda m=model, x=x: m.encoder(x), device, args.repeats)
            for s in args.scales:
                H = W = round(s * size)
                kw = {} if name == "gblsr_asr" else {"tile": args.tile}
                with torch.no_grad():
                    decode = decoder_fn(name, model, lr, H, W, args.tile)
                full = lambda m=model, lr=lr, kw=kw, H=H, W=W: m.predict_full(lr, H, W, **kw)  # noqa: E731
                t_full = timed(full, device, args.repeats)
                dec = timed(decode, device, args.repeats) if decode else max(t_full - t_enc, 0.0)
                rows.append(
                    {
                        "model": DECODERS[name][0],
                        "decoder_params": decoder_params(model),
                        "lr": size,
                        "scale": s,
                        "out": H,
                        "encoder_ms": 1e3 * t_enc,
                        "total_ms": 1e3 * t_full,
                        "decode_ms": 1e3 * dec,
                        "decode_ns_per_px": 1e9 * dec / (H * W),
                    }
                )
                print(
                    f"{rows[-1]['model']:8s} {size}->{H} x{s:g}: total {1e3 * t_full:9.1f} ms, "
                    f"decode {1e3 * dec:9.1f} ms",
                    flush=True,
                )
    return rows


def markdown(rows: list[dict], args) -> str:
    dev = args.device
    if args.device == "cpu":
        dev = (
            f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"
        )
    elif torch.cuda.is_available():
        dev = torch.cuda.get_device_name(torch.device(args.device))
    lines = [
        "# Decode time: GB-LSR against LIIF, LTE and LMF",
        "",
        f"`python benchmarks/bench_peers.py {' '.join(args.argv)}` on {dev}, torch "
        f"{torch.__version__}; encoder {args.encoder} for every model, random weights, batch 1, "
        f"median of {args.repeats} runs. decode: encoder features -> image. decode and total are "
        "timed separately, so on a busy machine decode can come out above total.",
        "",
        "| LR | scale | output | model | decoder params | encoder ms | total ms | decode ms "
        "| decode ns/px | decode vs GB-LSR |",
        "|---|---|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    base = {(r["lr"], r["scale"]): r["decode_ms"] for r in rows if r["model"] == "GB-LSR"}
    for r in rows:
        ref = base.get((r["lr"], r["scale"]))
        rel = f"{r['decode_ms'] / ref:.2f}x" if ref else "-"
        lines.append(
            f"| {r['lr']}x{r['lr']} | x{r['scale']:g} | {r['out']}x{r['out']} | {r['model']} | "
            f"{r['decoder_params']:,} | {r['encoder_ms']:.1f} | {r['total_ms']:.1f} | "
            f"{r['decode_ms']:.1f} | {r['decode_ns_per_px']:.0f} | {rel} |"
        )
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    import sys

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--encoder", default="edsr", choices=["edsr", "rdn"])
    p.add_argument(
        "--models",
        nargs="+",
        default=["gblsr_asr", "liif", "lte", "lmliif"],
        choices=sorted(DECODERS),
    )
    p.add_argument("--lr-size", nargs="+", type=int, default=[48])
    p.add_argument("--scales", nargs="+", type=float, default=[2, 4, 8])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--tile", type=int, default=30000, help="peer queries per chunk")
    p.add_argument("--threads", type=int, help="torch CPU threads")
    p.add_argument("--out", help="also write the markdown table here")
    args = p.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = run(args)
    text = markdown(rows, args)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
