"""The fixed latency protocol (10 warm-up + 50 timed passes, eager, no AMP)."""

from .protocol import (
    TIMED_DEFAULT,
    WARMUP_DEFAULT,
    LatencyConfig,
    LatencyResult,
    measure_latency,
    measure_latency_grid,
    summarize_times,
)
from .report import latency_report, load_for_latency

__all__ = [
    "LatencyConfig",
    "LatencyResult",
    "measure_latency",
    "measure_latency_grid",
    "summarize_times",
    "WARMUP_DEFAULT",
    "TIMED_DEFAULT",
    "latency_report",
    "load_for_latency",
]
