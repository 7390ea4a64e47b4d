"""Decode time and peak memory of every method, measured one after another in one process.

SR methods: a fixed random LR of ``timing.lr_size`` squared is encoded once; ``encode_ms`` times
the encoder, ``decode_ms`` the rendering of the whole ``lr_size * scale`` output from the encoded
representation, ``total_ms`` ``predict_full``. Native arms: ``encode_ms`` / ``decode_ms`` /
``total_ms`` of one ``timing.image_size`` squared image. Each is the median of ``timing.runs``
passes after ``timing.warmup`` warm-up passes (:func:`gblsr.latency.measure_latency`, eager,
no AMP). Peak memory is CUDA's peak allocation on a GPU; on a CPU the process's peak resident
set during the decode passes, reported with the resident set just before them (so the increase
is the decode's own).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn

__all__ = ["time_sr", "time_native", "rss_mb", "peak_tensor_bytes"]


class _TensorPeak:
    """Counts the bytes of tensor storages created while active and still referenced."""

    def __init__(self) -> None:
        self.live = 0
        self.peak = 0
        self.refs: dict[int, list[int]] = {}  # data_ptr -> [tensors alive, nbytes]

    def _free(self, key: int) -> None:
        ref = self.refs.get(key)
        if ref is None:
            return
        ref[0] -= 1
        if ref[0] <= 0:
            self.live -= ref[1]
            del self.refs[key]

    def add(self, t: torch.Tensor) -> None:
        import weakref

        st = t.untyped_storage()
        key, n = st.data_ptr(), st.nbytes()
        if n == 0:
            return
        ref = self.refs.get(key)
        if ref is None:
            self.refs[key] = ref = [0, n]
            self.live += n
            self.peak = max(self.peak, self.live)
        ref[0] += 1
        weakref.finalize(t, self._free, key)


def peak_tensor_bytes(fn, *args) -> int:
    """Peak bytes of the tensors ``fn(*args)`` allocates and holds at once (its output
    included; weights and inputs excluded), counted at the dispatcher, on any device. A view
    keeps its base's storage counted until the last tensor on it is gone."""
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils._pytree import tree_flatten

    tracker = _TensorPeak()

    class _Mode(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            for t in tree_flatten(out)[0]:
                if isinstance(t, torch.Tensor) and not t.is_meta:
                    tracker.add(t)
            return out

    with _Mode():
        out = fn(*args)
    del out
    return tracker.peak


def rss_mb() -> float | None:
    """Current resident set size of this process in MiB (Linux), else None."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        return None
    return None


def _cfg(timing: dict[str, Any]):
    from ..latency import LatencyConfig

    return LatencyConfig(n_warmup=int(timing["warmup"]), n_timed=int(timing["runs"]))


def _measure(model: nn.Module, x: torch.Tensor, run, timing, memory: bool) -> dict[str, Any]:
    from ..latency import measure_latency

    before = rss_mb() if not x.is_cuda else None
    r = measure_latency(model, x, _cfg(timing), track_peak_memory=memory, run=run)
    out: dict[str, Any] = {"median_ms": r.median_ms, "mean_ms": r.mean_ms, "std_ms": r.std_ms}
    if memory:
        with torch.no_grad():
            out["decode_tensor_peak_mb"] = peak_tensor_bytes(run or model, x) / 2**20
        out["peak_memory_mb"] = r.peak_memory_mb
        out["peak_memory_kind"] = r.peak_memory_kind
        if before is not None and r.peak_memory_mb is not None:
            out["rss_before_mb"] = before
            out["peak_increase_mb"] = max(0.0, r.peak_memory_mb - before)
    return out


def _device(model: nn.Module) -> torch.device:
    for p in model.parameters():
        return p.device
    return torch.device("cpu")


def _time_scale(model: nn.Module, lr: torch.Tensor, H: int, W: int, timing) -> dict[str, Any]:
    res: dict[str, Any] = {"hr_size": H}

    def full(x: torch.Tensor) -> torch.Tensor:
        return model.predict_full(x, H, W)

    if hasattr(model, "encode"):
        rep = model.encode(lr)
        dec = _measure(model, lr, lambda _x: rep.render(H, W), timing, memory=True)
        bpp = getattr(rep, "bytes_per_pixel", None)
        if bpp is not None:
            res["bytes_per_pixel"] = int(bpp(H, W))
        del rep
    else:  # no separate decode: everything is decode
        dec = _measure(model, lr, full, timing, memory=True)
    tot = _measure(model, lr, full, timing, memory=False)
    res["decode_ms"] = dec.pop("median_ms")
    res["decode_std_ms"] = dec.pop("std_ms")
    dec.pop("mean_ms")
    res["total_ms"] = tot["median_ms"]
    res.update(dec)
    return res


@torch.no_grad()
def time_sr(model: nn.Module, timing: dict[str, Any]) -> dict[str, Any]:
    """{"x4": {encode_ms, decode_ms, total_ms, peak_memory_mb, ...}, ...} for timing.scales."""
    model.eval()
    n = int(timing["lr_size"])
    g = torch.Generator().manual_seed(0)
    lr = torch.rand(1, 3, n, n, generator=g).to(_device(model))
    enc = None
    if hasattr(model, "encode_state"):
        enc = _measure(model, lr, lambda x: model.encode_state(x), timing, memory=False)
    out: dict[str, Any] = {}
    for s in timing["scales"]:
        H = int(round(n * float(s)))
        res = {"lr_size": n, "encode_ms": enc["median_ms"] if enc else None}
        res.update(_time_scale(model, lr, H, H, timing))
        out[f"x{float(s):g}"] = res
    return out


@torch.no_grad()
def time_native(model: nn.Module, timing: dict[str, Any]) -> dict[str, Any]:
    """{"image": {encode_ms, decode_ms, total_ms, peak_memory_mb, ...}} for one square image
    (the global Fourier-MLP at its own locked size)."""
    model.eval()
    locked = getattr(model.cfg, "arm", "") != "local_spectral"
    n = int(model.cfg.image_size) if locked else int(timing["image_size"])
    g = torch.Generator().manual_seed(0)
    x = torch.rand(1, 3, n, n, generator=g).to(_device(model))
    if locked:
        feat = model.encoder(x)
        encode = lambda t: model.encoder(t)  # noqa: E731
        decode = lambda _t: model.decoder(feat)  # noqa: E731
    else:
        feat, pad = model.encode(x)
        encode = lambda t: model.encode(t)  # noqa: E731
        decode = lambda _t: model.decode(feat, pad)  # noqa: E731
    enc = _measure(model, x, encode, timing, memory=False)
    dec = _measure(model, x, decode, timing, memory=True)
    tot = _measure(model, x, lambda t: model(t), timing, memory=False)
    res = {"image_size": n, "encode_ms": enc["median_ms"], "total_ms": tot["median_ms"]}
    res["decode_ms"] = dec.pop("median_ms")
    res["decode_std_ms"] = dec.pop("std_ms")
    dec.pop("mean_ms")
    res.update(dec)
    return {"image": res}
