"""The fixed latency protocol: eager mode, batch as given, 10 warm-up + 50 timed passes.

Each timed pass is bracketed by CUDA events (on CUDA) or ``perf_counter`` (elsewhere). The
statistics are the median (mean of the two middle values for even n), the mean, the population
standard deviation, and p90 / p95 as the lower nearest-rank element ``sorted[int(q * (n - 1))]``.
Peak memory is ``max_memory_allocated`` on CUDA (reset before warm-up, so it includes weights,
input and warm-up) and the process's peak resident set size on CPU.
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
    n_warmup: int = WARMUP_DEFAULT
    n_timed: int = TIMED_DEFAULT
    sync_before_timing: bool = True


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
    call = run if run is not None else model
    is_cuda = sample.is_cuda
    if track_peak_memory:
        if is_cuda:
            torch.cuda.reset_peak_memory_stats(sample.device)
        else:
            _reset_cpu_peak()

    for _ in range(cfg.n_warmup):
        call(sample)
    if cfg.sync_before_timing and is_cuda:
        torch.cuda.synchronize(sample.device)

    times: list[float] = []
    for _ in range(cfg.n_timed):
        if is_cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            call(sample)
            end.record()
            torch.cuda.synchronize(sample.device)
            times.append(float(start.elapsed_time(end)))
        else:
            t0 = time.perf_counter()
            call(sample)
            times.append((time.perf_counter() - t0) * 1000.0)

    peak = None
    if track_peak_memory:
        peak = torch.cuda.max_memory_allocated(sample.device) / 2**20 if is_cuda else _cpu_peak_mb()
    median, mean, std, p90, p95 = summarize_times(times)
    return LatencyResult(sorted(times), median, mean, std, p90, p95, peak, cfg)


def measure_latency_grid(
    model: torch.nn.Module,
    samples: dict[str, torch.Tensor],
    cfg: LatencyConfig | None = None,
    track_peak_memory: bool = True,
) -> dict[str, LatencyResult]:
    """:func:`measure_latency` for each named sample, each with its own peak-memory reset."""
    return {
        name: measure_latency(model, s, cfg=cfg, track_peak_memory=track_peak_memory)
        for name, s in samples.items()
    }
