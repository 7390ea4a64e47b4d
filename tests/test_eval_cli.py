"""gblsr-eval and gblsr.evaluation: the literature's bicubic numbers, protocols, scales, reports,
checkpoints, and one-line errors for user mistakes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import gblsr
from gblsr.cli.eval import main
from gblsr.data import read_rgb_uint8
from gblsr.evaluation import PROTOCOLS, evaluate, get_baseline
from gblsr.metrics import has_lpips

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
BENCH = SHARED / "data" / "benchmark"
needs_bench = pytest.mark.skipif(
    not BENCH.is_dir(), reason="../shared/data/benchmark is not present"
)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def run(argv, capsys):
    code = main(argv)
    out = capsys.readouterr()
    return code, out.out, out.err


def _smooth_png(path: Path, h: int, w: int, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    arr = np.stack([np.sin(6 * xx + c + rng.random()) * np.cos(4 * yy) for c in range(3)], -1)
    Image.fromarray(((arr * 0.5 + 0.5) * 255).round().astype(np.uint8)).save(path)
    return path


@needs_bench
def test_bicubic_matches_literature_on_set5_and_set14(capsys):
    code, out, err = run(
        [
            "--model",
            "bicubic",
            "--dataset",
            str(BENCH / "Set5"),
            str(BENCH / "Set14"),
            "--scale",
            "2",
            "3",
            "4",
            "--no-lpips",
        ],
        capsys,
    )
    assert code == 0, err
    res = json.loads(out)
    got = {(r["dataset"], r["scale"]): r for r in res["rows"]}
    expected = {
        ("Set5", 2): (33.66, 0.03),
        ("Set5", 3): (30.39, 0.03),
        ("Set5", 4): (28.42, 0.03),
        ("Set14", 2): (30.33, 0.05),
        ("Set14", 3): (27.63, 0.05),
        ("Set14", 4): (26.09, 0.05),
    }
    for key, (psnr, tol) in expected.items():
        row = got[key]
        assert row["psnr"] == pytest.approx(psnr, abs=tol), key
        assert row["protocol"] == "benchmark" and row["channel"] == "y" and row["shave"] == key[1]
        assert row["n_images"] == (5 if key[0] == "Set5" else 14)
        assert len(row["images"]) == row["n_images"]
        assert {im["lr_origin"] for im in row["images"]} == {"file"}
        assert row["psnr"] == pytest.approx(np.mean([im["psnr"] for im in row["images"]]))
    # SSIM of bicubic on Set5 (literature: 0.9299 / 0.8682 / 0.8104, MATLAB on 8-bit Y)
    for s, v in ((2, 0.9299), (3, 0.8682), (4, 0.8104)):
        assert got[("Set5", s)]["ssim"] == pytest.approx(v, abs=0.002)


@needs_bench
def test_scales_beyond_x4_and_non_integer(capsys):
    code, out, _ = run(
        [
            "--model",
            "bicubic",
            "--dataset",
            str(BENCH / "Set5"),
            "--max-images",
            "2",
            "--scale",
            "2.5",
            "6",
            "30",
            "--protocol",
            "div2k",
            "--no-lpips",
        ],
        capsys,
    )
    assert code == 0
    rows = json.loads(out)["rows"]
    assert [r["scale"] for r in rows] == [2.5, 6, 30]
    assert [r["shave"] for r in rows] == [9, 12, 36]  # div2k: ceil(s) + 6
    assert all(r["channel"] == "rgb" and r["n_images"] == 2 for r in rows)
    assert all(im["lr_origin"] == "matlab" for r in rows for im in r["images"])
    psnrs = [r["psnr"] for r in rows]
    assert psnrs[0] > psnrs[1] > psnrs[2] > 15


def test_evaluate_api_on_synthetic_folder(tmp_path):
    _smooth_png(tmp_path / "imgs" / "a.png", 48, 40)
    _smooth_png(tmp_path / "imgs" / "b.png", 30, 30, seed=1)
    rows = evaluate(get_baseline("bicubic"), [tmp_path / "imgs"], scales=[2, 4])
    assert [r["n_images"] for r in rows] == [2, 2]
    assert [im["name"] for im in rows[0]["images"]] == ["a", "b"]
    assert rows[0]["psnr"] > rows[1]["psnr"] > 20
    nearest = evaluate(get_baseline("nearest"), [tmp_path / "imgs"], scales=[2])[0]
    assert nearest["psnr"] < rows[0]["psnr"]
    # images with nothing left after the shave (or smaller than the SSIM window) are skipped
    big = evaluate(get_baseline("bilinear"), [tmp_path / "imgs"], scales=[16])[0]
    assert big["n_images"] == 0 and big["skipped"] == ["a", "b"] and big["psnr"] is None
    assert PROTOCOLS["benchmark"].shave(2.5) == 3 and PROTOCOLS["div2k"].shave(4) == 10


def test_without_lpips_notice_null_exit_0(tmp_path, capsys):
    if has_lpips():
        pytest.skip("LPIPS is installed here")
    _smooth_png(tmp_path / "d" / "a.png", 40, 40)
    code, out, err = run(
        ["--model", "bicubic", "--dataset", str(tmp_path / "d"), "--scale", "2"], capsys
    )
    assert code == 0
    assert err.count("LPIPS not computed") == 1 and "lpips" in err.lower()
    assert len(err.strip().splitlines()) == 1  # the notice, no progress bar, no warning noise
    row = json.loads(out)["rows"][0]
    assert row["lpips"] is None and row["images"][0]["lpips"] is None
    assert row["psnr"] is not None


def test_out_dir_reports(tmp_path, capsys):
    _smooth_png(tmp_path / "d" / "a.png", 40, 40)
    out_dir = tmp_path / "report"
    code, out, _ = run(
        [
            "--model",
            "bicubic",
            "--dataset",
            str(tmp_path / "d"),
            "--scale",
            "2",
            "3",
            "--no-lpips",
            "--out",
            str(out_dir),
        ],
        capsys,
    )
    assert code == 0
    assert json.loads((out_dir / "results.json").read_text()) == json.loads(out)
    md = (out_dir / "results.md").read_text()
    assert "| dataset | x2 | x3 |" in md and "| d |" in md
    assert (out_dir / "psnr_vs_scale.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["--model", "bicubic", "--dataset", "/nonexistent/set"], "not found"),
        (["--model", "bicubic", "--dataset", "{d}", "--scale", "0"], "scale"),
        (["--model", "bicubic", "--dataset", "{d}", "--scale", "nan"], "scale"),
        (["--model", "bicubic", "--dataset", "{d}", "--scale", "-3"], "scale"),
        (["--model", "bicubic", "--dataset", "{d}", "--scale", "inf"], "scale"),
        (["--model", "bicubic", "--dataset", "{d}", "--scale", "two"], "scale"),
        (["--model", "lanczos9", "--dataset", "{d}"], "unknown model"),
        (["--checkpoint", "{bad}", "--dataset", "{d}"], "checkpoint"),
        (["--model", "{bad}", "--dataset", "{d}"], "checkpoint"),
        (["--checkpoint", "/nonexistent/model.safetensors", "--dataset", "{d}"], "not found"),
        (["--model", "bicubic"], "--dataset"),
        (["--model", "bicubic", "--dataset", "{d}", "--frobnicate"], "unrecognized"),
    ],
)
def test_user_mistakes_exit_2_with_one_line(tmp_path, capsys, argv, needle):
    _smooth_png(tmp_path / "d" / "a.png", 24, 24)
    (tmp_path / "bad.pt").write_bytes(b"this is not a checkpoint")
    argv = [a.format(d=tmp_path / "d", bad=tmp_path / "bad.pt") for a in argv]
    code, out, err = run(argv, capsys)
    assert code == 2
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gblsr-eval: error:"), err
    assert needle in lines[0]
    assert "Traceback" not in err


def test_checkpoints_sr_and_native(tmp_path, capsys, asr_model, native_model):
    _smooth_png(tmp_path / "d" / "a.png", 40, 36)
    asr = gblsr.save_model(asr_model, tmp_path / "asr.safetensors")
    code, out, _ = run(
        [
            "--checkpoint",
            str(asr),
            "--dataset",
            str(tmp_path / "d"),
            "--scale",
            "2",
            "3.5",
            "--no-lpips",
        ],
        capsys,
    )
    assert code == 0
    res = json.loads(out)
    assert res["task"] == "sr" and [r["scale"] for r in res["rows"]] == [2, 3.5]
    assert all(r["n_images"] == 1 and r["psnr"] is not None for r in res["rows"])

    nat = gblsr.save_model(native_model, tmp_path / "native.safetensors")
    th = tmp_path / "th.json"
    code, out, err = run(
        [
            "--model",
            str(nat),
            "--dataset",
            str(tmp_path / "d"),
            "--scale",
            "4",
            "--no-lpips",
            "--region-thresholds",
            str(th),
            "--patch-size",
            "8",
        ],
        capsys,
    )
    assert code == 0 and "scale 1" in err
    row = json.loads(out)["rows"][0]
    assert row["scale"] == 1 and row["protocol"] == "reconstruction" and row["shave"] == 0
    assert set(row["psnr_region"]) == {"smooth", "edge", "texture", "mixed"}
    assert th.exists()  # thresholds fitted once and cached
    with torch.no_grad():
        x = read_rgb_uint8(tmp_path / "d" / "a.png")[None].float() / 255
        direct = gblsr.metrics.psnr(native_model(x)["recon"].clamp(0, 1), x)
    assert row["psnr"] == pytest.approx(direct.item(), abs=1e-4)


def test_legacy_config_checkpoint_form(tmp_path, capsys, native_model):
    from gblsr.training.config import build_model_from_run_config, expand_run_configs, load_config

    data = tmp_path / "imgs"
    _smooth_png(data / "a.png", 32, 32)
    _smooth_png(data / "b.png", 32, 40, seed=1)
    yaml_path = tmp_path / "run.yaml"
    yaml_path.write_text(
        "experiment_id: t\nrun_root: " + str(tmp_path / "runs") + "\n"
        "base:\n  image_size: 32\n  patch_size: 8\n  d_feat: 16\n  p_max: 4\n"
        "  data:\n    dtd_root: " + str(data) + "\n    div2k_root: ''\n"
        "arms:\n  - arm: local_spectral\n"
    )
    rc = expand_run_configs(load_config(yaml_path))[0]
    model = build_model_from_run_config(rc)
    torch.save({"state_dict": model.state_dict()}, tmp_path / "model.pt")
    # the reference's flags: --num-val-images, --region-threshold-samples, --output
    argv = ["--config", str(yaml_path), "--checkpoint", str(tmp_path / "model.pt"), "--no-lpips"]
    extra = ["--num-val-images", "1", "--region-threshold-samples", "16"]
    code, out, err = run([*argv, *extra, "--output", str(tmp_path / "eval.json")], capsys)
    assert code == 0, err
    assert json.loads((tmp_path / "eval.json").read_text()) == json.loads(out)
    rows = json.loads(out)["rows"]
    assert len(rows) == 1 and rows[0]["dataset"] == "imgs" and rows[0]["n_images"] == 1
    assert rows[0]["scale"] == 1 and set(rows[0]["psnr_region"]) == {
        "smooth",
        "edge",
        "texture",
        "mixed",
    }


def test_module_and_script_entry_points(tmp_path):
    _smooth_png(tmp_path / "d" / "a.png", 24, 24)
    for cmd in (
        [sys.executable, "-m", "gblsr.cli.eval", "--help"],
        [
            sys.executable,
            str(REPO / "scripts" / "eval.py"),
            "--model",
            "bilinear",
            "--dataset",
            str(tmp_path / "d"),
            "--scale",
            "2",
            "--no-lpips",
        ],
    ):
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        assert res.returncode == 0, res.stderr
        assert "--dataset" in res.stdout or json.loads(res.stdout)["rows"][0]["n_images"] == 1
        assert "it/s" not in res.stderr and "img/s" not in res.stderr  # no progress bar off a TTY
