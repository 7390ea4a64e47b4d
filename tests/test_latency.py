"""The fixed latency protocol (gblsr.latency) and gblsr-measure-latency."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest
import torch
from _helpers import REPO

import gblsr
from gblsr.cli import latency as latency_cli
from gblsr.latency import (
    TIMED_DEFAULT,
    WARMUP_DEFAULT,
    LatencyConfig,
    LatencyResult,
    measure_latency,
    measure_latency_grid,
    summarize_times,
)


class Counter(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(4, 4)
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        return self.lin(x)


def test_defaults_and_pass_counts():
    assert (WARMUP_DEFAULT, TIMED_DEFAULT) == (10, 50)
    cfg = LatencyConfig()
    assert (cfg.n_warmup, cfg.n_timed, cfg.sync_before_timing) == (10, 50, True)
    assert not cfg.compile and not cfg.cuda_graphs and cfg.is_protocol
    m = Counter().eval()
    res = measure_latency(m, torch.randn(2, 4), LatencyConfig(n_warmup=3, n_timed=7))
    assert m.calls == 10
    assert isinstance(res, LatencyResult) and len(res.per_image_times_ms) == 7
    assert res.per_image_times_ms == sorted(res.per_image_times_ms)
    assert (res.median_ms, res.mean_ms, res.std_ms, res.p90_ms, res.p95_ms) == pytest.approx(
        summarize_times(res.per_image_times_ms)
    )
    assert res.first_call_ms is not None and res.device == "cpu"
    # CPU: peak resident set size of the process, in MiB.
    assert res.peak_memory_kind == "cpu_peak_rss" and res.peak_memory_mb > 10
    d = res.to_dict()
    assert d["cfg"]["n_timed"] == 7 and json.dumps(d)
    assert measure_latency(m, torch.randn(2, 4), LatencyConfig(1, 2), False).peak_memory_mb is None


def test_statistics_definitions():
    # median of an even count averages the middle pair; std is the population one; p90 / p95
    # are the lower nearest-rank elements sorted[int(q * (n - 1))].
    times = [5.0, 1.0, 3.0, 2.0, 4.0, 10.0]
    median, mean, std, p90, p95 = summarize_times(times)
    assert median == 3.5 and mean == pytest.approx(25 / 6)
    assert std == pytest.approx(math.sqrt(sum((t - 25 / 6) ** 2 for t in times) / 6))
    assert (p90, p95) == (5.0, 5.0)
    assert summarize_times([7.0]) == (7.0, 7.0, 0.0, 7.0, 7.0)
    with pytest.raises(RuntimeError, match="no timing samples"):
        summarize_times([])
    with pytest.raises(RuntimeError, match="no timing samples"):
        measure_latency(Counter().eval(), torch.randn(1, 4), LatencyConfig(1, 0))


def test_refuses_training_mode_and_autocast():
    m = Counter()
    with pytest.raises(RuntimeError, match="eval"):
        measure_latency(m, torch.randn(1, 4), LatencyConfig(1, 1))
    m.eval()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        with pytest.raises(RuntimeError, match="autocast"):
            measure_latency(m, torch.randn(1, 4), LatencyConfig(1, 1))


def test_run_callable_compile_and_graph_options(asr_model):
    lr = torch.rand(1, 3, 5, 6)
    res = measure_latency(
        asr_model, lr, LatencyConfig(1, 2), run=lambda x: asr_model.predict_full(x, 15, 18)
    )
    assert len(res.per_image_times_ms) == 2
    cfg = LatencyConfig(1, 2, compile=True, compile_backend="eager")
    assert not cfg.is_protocol
    m = Counter().eval()
    assert len(measure_latency(m, torch.randn(1, 4), cfg).per_image_times_ms) == 2
    with pytest.raises(RuntimeError, match="CUDA"):
        measure_latency(m, torch.randn(1, 4), LatencyConfig(1, 1, cuda_graphs=True))
    grid = measure_latency_grid(
        m, {"a": torch.randn(1, 4), "b": torch.randn(3, 4)}, LatencyConfig(0, 1)
    )
    assert set(grid) == {"a", "b"}


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_events_and_graphs(asr_model):  # pragma: no cover - runs on GPU machines only
    m = asr_model.cuda()
    lr = torch.rand(1, 3, 8, 8, device="cuda")
    run = lambda x: m.predict_full(x, 32, 32)  # noqa: E731
    for graphs in (False, True):
        res = measure_latency(m, lr, LatencyConfig(2, 3, cuda_graphs=graphs), run=run)
        assert res.peak_memory_kind == "cuda_max_allocated" and res.peak_memory_mb > 0


def _run_cli(argv, capsys):
    try:
        code = latency_cli.main(argv)
    except SystemExit as e:
        code = e.code
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture
def ckpts(tmp_path, asr_model, native_model):
    return {
        "asr": str(gblsr.save_model(asr_model, tmp_path / "asr.safetensors")),
        "native": str(gblsr.save_model(native_model, tmp_path / "native.safetensors")),
    }


def test_cli_prints_protocol_json(ckpts, capsys, tmp_path):
    base = ["--device", "cpu", "--warmup", "1", "--timed", "3", "--threads", "1"]
    code, out, err = _run_cli(
        [
            "--checkpoint",
            ckpts["asr"],
            "--size",
            "6x7",
            "--scale",
            "2.5",
            *base,
            "--output",
            str(tmp_path / "lat.json"),
        ],
        capsys,
    )
    assert code == 0, err
    rep = json.loads(out)
    assert rep == json.loads((tmp_path / "lat.json").read_text())
    assert rep["model"] == "gblsr_asr" and rep["protocol"] is True
    assert rep["input_shape"] == [1, 3, 6, 7] and rep["output_shape"] == [1, 3, 15, 18]
    assert rep["n_warmup"] == 1 and rep["n_timed"] == 3 and rep["threads"] == 1
    for key in ("median_ms", "mean_ms", "std_ms", "p90_ms", "p95_ms", "peak_memory_mb"):
        assert isinstance(rep[key], float)
    assert rep["peak_memory_kind"] == "cpu_peak_rss"

    code, out, err = _run_cli(["--checkpoint", ckpts["native"], "--size", "16x24", *base], capsys)
    assert code == 0, err
    rep = json.loads(out)
    assert rep["task"] == "reconstruction" and rep["output_shape"] == [1, 3, 16, 24]

    code, out, err = _run_cli(
        [
            "--checkpoint",
            ckpts["native"],
            "--size",
            "8x8",
            "--compile",
            "--compile-backend",
            "eager",
            "--per-pass",
            *base,
        ],
        capsys,
    )
    assert code == 0, err
    rep = json.loads(out)
    assert rep["protocol"] is False and len(rep["per_image_times_ms"]) == 3


def test_cli_user_errors_exit_2(ckpts, capsys, tmp_path):
    cases = [
        ["--checkpoint", ckpts["native"], "--scale", "2"],
        ["--checkpoint", ckpts["asr"], "--size", "3by4"],
        ["--checkpoint", ckpts["asr"], "--cuda-graphs", "--device", "cpu"],
        ["--checkpoint", str(tmp_path / "missing.safetensors")],
    ]
    for argv in cases:
        code, out, err = _run_cli([*argv, "--timed", "1", "--warmup", "0"], capsys)
        assert code == 2, (argv, out, err)
        assert out == "" and err.count("\n") == 1, err


def test_module_and_script_entry_points():
    for cmd in (
        [sys.executable, "-m", "gblsr.cli.latency", "--help"],
        [sys.executable, str(REPO / "scripts" / "measure_latency.py"), "--help"],
    ):
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        assert r.returncode == 0 and "--checkpoint" in r.stdout
