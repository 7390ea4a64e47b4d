"""CPU time of our SwinIR encoder against the official one (LTE repository) on the same input.

Builds the official ``SwinIR()`` of jaewon-lee-b/lte @ a8815d6 (LTE's configuration: embed 180,
6 x 6 blocks, window 8) from a checkout given by ``--lte`` (timm is replaced by stand-ins at
run time, as in tests/fixtures/generate_encoder_fixtures.py), loads its state dict into ours
with :func:`gblsr.encoders.swinir.swinir_from_official`, and times one forward of each on the
same random ``--size`` x ``--size`` input (after one small warm-up call each), printing both,
the ratio and the largest output difference.

    python benchmarks/bench_swinir_speed.py --lte /path/to/lte [--size 64] [--threads 1]
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
import types
from pathlib import Path


def _official_swinir(root: Path):
    import torch
    import torch.nn as nn

    class _Identity(nn.Module):  # timm's DropPath, which is the identity in eval mode
        def __init__(self, *a, **k):
            super().__init__()

        def forward(self, x):
            return x

    layers = types.ModuleType("timm.models.layers")
    layers.DropPath = _Identity
    layers.to_2tuple = lambda x: tuple(x) if isinstance(x, (list, tuple)) else (x, x)
    layers.trunc_normal_ = lambda t, mean=0.0, std=1.0, a=-2.0, b=2.0: nn.init.trunc_normal_(
        t, mean, std, a, b
    )
    for name in ("timm", "timm.models"):
        sys.modules.setdefault(name, types.ModuleType(name))
    sys.modules.setdefault("timm.models.layers", layers)
    torch.Tensor.cuda = lambda self, *a, **k: self
    pkg = types.ModuleType("models")
    pkg.__path__ = [str(root / "models")]
    sys.modules["models"] = pkg
    sys.path.insert(0, str(root))
    pkg.register = importlib.import_module("models.models").register
    return importlib.import_module("models.swinir").SwinIR


def _time(fn, x) -> tuple[float, object]:
    import torch

    with torch.no_grad():
        t = time.perf_counter()
        y = fn(x)
        return time.perf_counter() - t, y


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--lte", type=Path, required=True, help="official LTE checkout")
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)

    import torch

    from gblsr.encoders.swinir import swinir_from_official

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    official = _official_swinir(args.lte.resolve())().eval()
    ours = swinir_from_official(official.state_dict()).eval()
    warm = torch.rand(1, 3, 16, 16)
    _time(official, warm)
    _time(ours, warm)
    x = torch.rand(1, 3, args.size, args.size)
    t_off, y_off = _time(official, x)
    t_ours, y_ours = _time(ours, x)
    diff = float((y_ours - y_off).abs().max() / y_off.abs().max())
    print(f"torch {torch.__version__}, {args.threads} thread(s), input {tuple(x.shape)}")
    print(f"official SwinIR (LTE @ a8815d6): {t_off:7.2f} s")
    print(f"gblsr SwinIREncoder:            {t_ours:7.2f} s")
    print(f"ours / official: {t_ours / t_off:.2f}   max relative output difference {diff:.1e}")


if __name__ == "__main__":
    main()
