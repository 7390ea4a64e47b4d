"""The fixed latency protocol: eager mode, batch as given, 10 warm-up + 50 timed passes.

Each timed pass is bracketed by CUDA events (on CUDA) or ``perf_counter`` (elsewhere). The
statistics are the median (mean of the two middle values for even n), the mean, the population
standard deviation, and p90 / p95 as the lower nearest-rank element ``sorted[int(q * (n - 1))]``.
Peak memory is ``max_memory_allocated`` on CUDA (reset before warm-up, so it includes weights,
input and warm-up) and the process's peak resident set size on CPU (its high-water mark is reset
before warm-up where Linux allows it, so it covers the process's baseline plus the runs).

The protocol times eager execution without AMP. Two opt-in variants, off by default and recorded
in the result's ``cfg`` so that numbers taken with them are never mistaken for protocol numbers:

* ``compile=True``: the callable goes through ``torch.compile`` (``compile_mode``,
  ``compile_backend``; default inductor) first;
  compilation happens in the first warm-up pass, whose time is reported as ``first_call_ms``.
* ``cuda_graphs=True`` (CUDA only): after the warm-up (run on a side stream, as graph capture
  requires) one pass is captured into a CUDA graph and every timed pass replays it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

__all__ = [
    "WARMUP_DEFAULT",
    "TIMED_DEFAULT",
    "LatencyConfig",
    "LatencyResult",
    "measure_latency",
    "measure_latency_grid",
    "summarize_times",
]

WARMUP_DEFAULT = 10
TIMED_DEFAULT = 50


@dataclass
class LatencyConfig:
    """Protocol settings. ``compile`` / ``compile_mode`` / ``cuda_graphs`` leave the protocol
    (eager execution) and are off by default."""

    n_warmup: int = WARMUP_DEFAULT
    n_timed: int = TIMED_DEFAULT
    sync_before_timing: bool = True
    compile: bool = False
    compile_mode: str | None = None
    compile_backend: str | None = None
    cuda_graphs: bool = False

    def __post_init__(self) -> None:
        if self.n_warmup < 0:
            raise ValueError(f"n_warmup must be >= 0, got {self.n_warmup}")

    @property
    def is_protocol(self) -> bool:
        """True when these settings are the fixed protocol's (eager, no graphs)."""
        return not self.compile and not self.cuda_graphs


@dataclass
class LatencyResult:
    per_image_times_ms: list[float]
    median_ms: float
    mean_ms: float
    std_ms: float
    p90_ms: float
    p95_ms: float
    peak_memory_mb: float | None = None
    cfg: LatencyConfig = field(default_factory=LatencyConfig)
    # What peak_memory_mb measures: "cuda_max_allocated" or "cpu_peak_rss" (None: not tracked).
    peak_memory_kind: str | None = None
    # Wall time of the first warm-up pass (includes compilation with cfg.compile).
    first_call_ms: float | None = None
    device: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _autocast_active() -> bool:
    for device_type in ("cuda", "cpu"):
        try:
            if torch.is_autocast_enabled(device_type):
                return True
        except TypeError:  # torch without the device_type argument only knows CUDA
            return torch.is_autocast_enabled()
    return False


def _check_settings(model: torch.nn.Module) -> None:
    if model.training:
        raise RuntimeError(
            "the latency protocol times models in eval() mode; call model.eval() first"
        )
    if _autocast_active():
        raise RuntimeError(
            "the latency protocol times without AMP; call measure_latency() outside autocast"
        )


def summarize_times(times_ms: list[float]) -> tuple[float, float, float, float, float]:
    """(median, mean, population std, p90, p95) of a non-empty list."""
    if not times_ms:
        raise RuntimeError("no timing samples collected")
    s = sorted(times_ms)
    n = len(s)
    median = s[n // 2] if n % 2 else 0.5 * (s[n // 2 - 1] + s[n // 2])
    mean = sum(s) / n
    std = math.sqrt(sum((t - mean) ** 2 for t in s) / n)
    return median, mean, std, s[int(0.90 * (n - 1))], s[int(0.95 * (n - 1))]


def _reset_cpu_peak() -> None:
    # Linux lets a process reset its resident-set high-water mark; elsewhere the peak is the
    # process lifetime's, which still bounds what the model used.
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def _cpu_peak_mb() -> float | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    try:
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    except (ImportError, OSError):
        return None


def _cuda_graph_step(call: Callable[[torch.Tensor], Any], sample: torch.Tensor, n_warmup: int):
    """Warm ``call`` up on a side stream, capture one pass into a CUDA graph, return its replay
    (the graph reads a private copy of ``sample``)."""
    static_in = sample.clone()
    side = torch.cuda.Stream(device=sample.device)
    side.wait_stream(torch.cuda.current_stream(sample.device))
    with torch.cuda.stream(side):
        for _ in range(max(1, n_warmup)):
            call(static_in)
    torch.cuda.current_stream(sample.device).wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        static_out = call(static_in)
    graph.static_output = static_out  # keep the output buffers alive with the graph

    def step(_: torch.Tensor) -> None:
        graph.replay()

    return step


@torch.no_grad()
def measure_latency(
    model: torch.nn.Module,
    sample: torch.Tensor,
    cfg: LatencyConfig | None = None,
    track_peak_memory: bool = True,
    run: Callable[[torch.Tensor], Any] | None = None,
) -> LatencyResult:
    """Time ``model(sample)`` (or ``run(sample)``) under the protocol.

    ``run`` lets models whose call needs more than the image be timed, e.g.
    ``run=lambda x: model.predict_full(x, 4 * h, 4 * w)``; ``model`` is still checked for
    eval mode.
    """
    cfg = cfg if cfg is not None else LatencyConfig()
    _check_settings(model)
    is_cuda = sample.is_cuda
    if cfg.cuda_graphs and not is_cuda:
        raise RuntimeError("cuda_graphs=True needs the model and sample on a CUDA device")
    call = run if run is not None else model
    if cfg.compile:
        kwargs = {"backend": cfg.compile_backend} if cfg.compile_backend else {}
        call = torch.compile(call, mode=cfg.compile_mode, **kwargs)
    if track_peak_memory:
        if is_cuda:
            torch.cuda.reset_peak_memory_stats(sample.device)
        else:
            _reset_cpu_peak()

    def sync() -> None:
        if is_cuda:
            torch.cuda.synchronize(sample.device)

    first_ms = None
    if cfg.cuda_graphs:
        sync()
        t0 = time.perf_counter()
        step = _cuda_graph_step(call, sample, cfg.n_warmup)
        sync()
        first_ms = (time.perf_counter() - t0) * 1000.0
    else:
        step = call
        for i in range(cfg.n_warmup):
            if i == 0:
                sync()
                t0 = time.perf_counter()
                step(sample)
                sync()
                first_ms = (time.perf_counter() - t0) * 1000.0
            else:
                step(sample)
    if cfg.sync_before_timing:
        sync()

    times: list[float] = []
    for _ in range(cfg.n_timed):
        if is_cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            step(sample)
            end.record()
            torch.cuda.synchronize(sample.device)
            times.append(float(start.elapsed_time(end)))
        else:
            t0 = time.perf_counter()
            step(sample)
            times.append((time.perf_counter() - t0) * 1000.0)

    peak = kind = None
    if track_peak_memory:
        if is_cuda:
            peak, kind = (
                torch.cuda.max_memory_allocated(sample.device) / 2**20,
                "cuda_max_allocated",
            )
        else:
            peak = _cpu_peak_mb()
            kind = "cpu_peak_rss" if peak is not None else None
    median, mean, std, p90, p95 = summarize_times(times)
    return LatencyResult(
        sorted(times),
        median,
        mean,
        std,
        p90,
        p95,
        peak,
        cfg,
        peak_memory_kind=kind,
        first_call_ms=first_ms,
        device=str(sample.device),
    )


def measure_latency_grid(
    model: torch.nn.Module,
    samples: dict[str, torch.Tensor],
    cfg: LatencyConfig | None = None,
    track_peak_memory: bool = True,
    run: Callable[[torch.Tensor], Any] | None = None,
) -> dict[str, LatencyResult]:
    """:func:`measure_latency` for each named sample, each with its own peak-memory reset."""
    return {
        name: measure_latency(model, s, cfg=cfg, track_peak_memory=track_peak_memory, run=run)
        for name, s in samples.items()
    }
