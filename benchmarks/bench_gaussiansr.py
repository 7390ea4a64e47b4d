#!/usr/bin/env python
"""GaussianSR: our renderer against the official test path, same weights and input, one run.

Both sides get the official configuration (EDSR-baseline, 1,838,159 parameters) with the same
seeded random weights (built by the official factory, converted by ``gblsr.peers.convert``) and
the same seeded Gumbel stream, so their outputs must agree (the script checks: max relative
difference). Cases:

* ``x8_48``: x8 from a 48x48 LR (384x384 output);
* ``x4_256``: x4 from a 256x256 LR (1024x1024 output); the official path renders the whole
  image and runs both HR convs once per 30,000-query chunk (35 chunks here). With
  ``--official-chunks N`` only its first N chunks run and its time is extrapolated linearly to
  all chunks (each chunk repeats the same whole-image work plus its own queries); the report says
  so;
* ``big``: ours only, 4096x4096 from a 256x256 LR, peak RSS of the whole process (target < 3
  GiB).

Each measurement runs in a fresh subprocess (``--worker``): time is the process CPU time of the
call (robust on a shared machine; with ``--threads 1`` it equals the compute time; wall time is
reported too) around the official ``gen_feat`` and every ``query_rgb`` chunk, as test.py runs
them, and around our ``encode(lr).render(H, W)``; the added memory is the peak resident set
sampled every 2 ms during the call minus the resident set just before it.

* ``--gumbel-variation CKPT --dataset DIR``: no official code; how much the official Gumbel
  selection's run-to-run randomness moves benchmark PSNR (Y, shave s) of a trained checkpoint:
  ``--seeds`` evaluations with different Gumbel seeds, and one with ``selection="argmax"``.

    python benchmarks/bench_gaussiansr.py --official /path/GaussianSR --threads 1
    python benchmarks/bench_gaussiansr.py --official /path/GaussianSR --cases big
    python benchmarks/bench_gaussiansr.py --gumbel-variation model.safetensors \
        --dataset ../shared/data/benchmark/Set5 --seeds 5
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import subprocess
import sys
import threading
import time
import types
from pathlib import Path

SEED = 0
GUMBEL_SEED = 1
CHUNK = 30000  # official eval_bsize
CASES = {"x8_48": (48, 8), "x4_256": (256, 4), "big": (256, 16)}


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class PeakRSS:
    """Peak resident set during a ``with`` block, sampled by a thread every 2 ms."""

    def __enter__(self):
        self.base = self.peak = _rss()
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()
        return self

    def _run(self):
        while not self._stop.wait(0.002):
            self.peak = max(self.peak, _rss())

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join()
        self.peak = max(self.peak, _rss())

    @property
    def added(self) -> int:
        return self.peak - self.base


def _official(root: Path):
    import torch

    sys.modules.setdefault("tensorboardX", types.ModuleType("tensorboardX"))
    sys.modules["tensorboardX"].SummaryWriter = None
    torch.Tensor.cuda = lambda self, *a, **k: self
    torch.nn.Module.cuda = lambda self, *a, **k: self
    sys.path.insert(0, str(root.resolve()))
    import models
    import utils

    spec = {
        "name": "gaussian-splatter",
        "args": {
            "encoder_spec": {"name": "edsr-baseline", "args": {"no_upsampling": True}},
            "dec_spec": {"name": "mlp", "args": {"out_dim": 3, "hidden_list": [256] * 4}},
            "kernel_size": 5,
        },
    }
    torch.manual_seed(SEED)
    model = models.make(spec).eval()
    gen = torch.Generator().manual_seed(SEED + 1)
    with torch.no_grad():  # unit-ish activations, a bank near its initialisation
        for name, p in model.named_parameters():
            if "mean" in name:
                continue
            if name == "rho":
                p.copy_(0.6 * torch.rand(p.shape, generator=gen) - 0.3)
            elif p.ndim >= 2:
                p.copy_(torch.randn(p.shape, generator=gen) / math.sqrt(p[0].numel()))
            elif name not in ("sigma_x", "sigma_y", "opacity"):
                p.copy_(0.1 * torch.randn(p.shape, generator=gen))
    return model, utils, spec


def worker(args) -> dict:
    import torch

    torch.set_num_threads(args.threads)
    h, s = CASES[args.case]
    H = W = h * s
    off, utils, spec = _official(Path(args.official))
    lr = torch.rand(1, 3, h, h, generator=torch.Generator().manual_seed(SEED + 2))
    res = {"side": args.worker, "case": args.case, "H": H, "W": W}
    if args.worker == "ours":
        from gblsr.peers.convert import convert_official
        from gblsr.registry import create_model

        arch, cfg, sd = convert_official({**spec, "sd": off.state_dict()})
        del off
        model = create_model(arch, **cfg).eval()
        model.load_state_dict(sd)
        g = torch.Generator().manual_seed(GUMBEL_SEED)
        out = torch.empty(1, 3, H, W) if args.case == "big" else None
        with PeakRSS() as mem:
            t0, c0 = time.perf_counter(), time.process_time()
            with torch.no_grad():
                out = model.encode(lr, generator=g).render(H, W, out=out)
            res["wall"], res["seconds"] = time.perf_counter() - t0, time.process_time() - c0
        rows = H * W
    else:
        coord = utils.make_coord((H, W)).unsqueeze(0)
        cell = torch.ones_like(coord)
        cell[..., 0] *= 2 / H
        cell[..., 1] *= 2 / W
        n = coord.shape[1]
        chunks = math.ceil(n / CHUNK)
        limit = args.official_chunks if args.case == "x4_256" else None
        run = chunks if limit is None else min(chunks, limit)
        preds = []
        with PeakRSS() as mem:
            t0, c0 = time.perf_counter(), time.process_time()
            with torch.no_grad():
                torch.manual_seed(GUMBEL_SEED)
                off.gen_feat((lr - 0.5) / 0.5)
                for i in range(run):
                    q = slice(i * CHUNK, min(n, (i + 1) * CHUNK))
                    preds.append(off.query_rgb(coord[:, q], torch.ones(1) * s, cell[:, q]))
            res["wall"], res["seconds"] = time.perf_counter() - t0, time.process_time() - c0
        res.update(chunks=chunks, chunks_run=run)
        if run < chunks:
            res["seconds_extrapolated"] = res["seconds"] * chunks / run
        rows = run * CHUNK if run < chunks else n
        out = (torch.cat(preds, 1) * 0.5 + 0.5).view(1, -1, 3)
    res["added_bytes"] = mem.added
    res["max_rss_bytes"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    if args.case != "big":
        if args.worker == "ours":
            out = out.permute(0, 2, 3, 1).reshape(1, -1, 3)
        torch.save(out[:, :rows].contiguous(), args.dump)
    return res


def _run(case: str, side: str, a, dump: Path) -> dict:
    cmd = [sys.executable, __file__, "--worker", side, "--case", case, "--official", a.official]
    cmd += ["--threads", str(a.threads), "--dump", str(dump)]
    if a.official_chunks is not None:
        cmd += ["--official-chunks", str(a.official_chunks)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def gumbel_variation(a) -> int:
    import statistics

    import torch

    from gblsr import load_model
    from gblsr.evaluation import evaluate

    torch.set_num_threads(a.threads)
    model = load_model(a.gumbel_variation)
    runs = {}
    for seed in range(a.seeds):
        model.set_selection("gumbel", seed=1000 + seed)
        runs[f"gumbel seed {1000 + seed}"] = evaluate(model, [a.dataset], a.scales, lpips=False)
    model.set_selection("argmax")
    runs["argmax"] = evaluate(model, [a.dataset], a.scales, lpips=False)
    print(f"# Gumbel run-to-run variation: {a.gumbel_variation}, {a.dataset}, PSNR (Y, shave s)")
    for i, sc in enumerate(a.scales):
        g = [r[i]["psnr"] for k, r in runs.items() if k != "argmax"]
        per_img = [[im["psnr"] for im in r[i]["images"]] for k, r in runs.items() if k != "argmax"]
        img_range = max(max(col) - min(col) for col in zip(*per_img))
        print(
            f"x{sc:g}: gumbel mean {statistics.mean(g):.4f} dB, min {min(g):.4f}, max "
            f"{max(g):.4f} (range {max(g) - min(g):.4f} dB, std {statistics.pstdev(g):.4f}; "
            f"largest per-image range {img_range:.4f} dB) over {len(g)} seeds; argmax "
            f"{runs['argmax'][i]['psnr']:.4f} dB"
        )
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--official", help="GaussianSR checkout (tljxyys/GaussianSR)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--cases", nargs="+", choices=list(CASES), default=["x8_48", "x4_256", "big"])
    p.add_argument("--official-chunks", type=int, help="run only N official chunks (x4_256)")
    p.add_argument("--gumbel-variation", metavar="CKPT", help="a trained checkpoint (no official)")
    p.add_argument("--dataset", help="benchmark folder for --gumbel-variation")
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--scales", type=float, nargs="+", default=[2.0, 3.0, 4.0])
    p.add_argument("--worker", choices=("ours", "official"), help=argparse.SUPPRESS)
    p.add_argument("--case", choices=list(CASES), help=argparse.SUPPRESS)
    p.add_argument("--dump", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.gumbel_variation:
        return gumbel_variation(a)
    if not a.official:
        p.error("--official is required (or --gumbel-variation)")
    if a.worker:
        print(json.dumps(worker(a)))
        return 0
    import tempfile

    import torch

    print(f"# GaussianSR, ours vs official test path ({platform.processor() or 'cpu'}, "
          f"{a.threads} thread(s), torch {torch.__version__})")  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        for case in a.cases:
            ours = _run(case, "ours", a, Path(tmp) / "ours.pt")
            gib = ours["max_rss_bytes"] / 2**30
            if case == "big":
                print(f"{case}: ours {ours['seconds']:.1f} s CPU, peak RSS {gib:.2f} GiB "
                      f"(target < 3 GiB: {'ok' if gib < 3 else 'FAILED'})")  # fmt: skip
                continue
            off = _run(case, "official", a, Path(tmp) / "off.pt")
            o, r = torch.load(Path(tmp) / "ours.pt"), torch.load(Path(tmp) / "off.pt")
            n = r.shape[1]
            diff = ((o[:, :n] - r).abs().max() / r.abs().max()).item()
            t_off = off.get("seconds_extrapolated", off["seconds"])
            note = ""
            if off["chunks_run"] < off["chunks"]:
                note = (f" (official: {off['chunks_run']} of {off['chunks']} chunks run in "
                        f"{off['seconds']:.1f} s, extrapolated)")  # fmt: skip
            mem_ratio = off["added_bytes"] / max(ours["added_bytes"], 1)
            print(
                f"{case}: CPU time official {t_off:.2f} s, ours {ours['seconds']:.2f} s (wall "
                f"{off['wall']:.1f} s / {ours['wall']:.1f} s), "
                f"speed-up {t_off / ours['seconds']:.1f}x; added memory official "
                f"{off['added_bytes'] / 2**20:.0f} MiB, ours {ours['added_bytes'] / 2**20:.0f} "
                f"MiB (ratio {mem_ratio:.1f}x); max rel. diff {diff:.2e}{note}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
