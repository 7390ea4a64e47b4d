"""Dataset layouts, HR/LR pairing rules and region labels."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from gblsr.data import (
    REGIONS,
    BenchmarkImages,
    DIV2KImages,
    DTDImages,
    FlatImageFolder,
    KodakImages,
    RegionThresholds,
    SRPairs,
    fit_region_thresholds,
    imresize,
    label_patches,
    load_or_fit_thresholds,
    load_thresholds,
    open_dataset,
    per_patch_edge_density,
    per_patch_hf_fraction,
    pil_bicubic,
    read_rgb_uint8,
    save_thresholds,
)
from gblsr.errors import UserInputError

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
BENCH = SHARED / "data" / "benchmark"


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _png(path: Path, h: int, w: int, mode: str = "RGB", seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    if mode == "I;16":
        arr = rng.integers(0, 65536, size=(h, w), dtype=np.uint16)
        Image.fromarray(arr).save(path)
        return path
    c = {"RGB": 3, "RGBA": 4, "L": 1}[mode]
    arr = rng.integers(0, 256, size=(h, w, c), dtype=np.uint8)
    Image.fromarray(arr[..., 0] if c == 1 else arr, mode).save(path)
    return path


def test_benchmark_layout_uses_lr_files_then_matlab(tmp_path):
    root = tmp_path / "MySet"
    hr = _png(root / "HR" / "a.png", 50, 37)
    _png(root / "HR" / "b.png", 24, 24, mode="L", seed=1)
    # a stand-in "file" LR for a at x2 (not what MATLAB would make, so its use is visible)
    _png(root / "LR_bicubic" / "X2" / "ax2.png", 25, 18, seed=9)
    ds = open_dataset(root)
    assert isinstance(ds, BenchmarkImages) and ds.layout == "benchmark" and ds.name == "MySet"
    assert ds.names == ["a", "b"]
    samples = list(SRPairs(ds, 2))
    a, b = samples
    assert a.lr_origin == "file" and a.hr.shape == (3, 50, 36) and a.lr.shape == (3, 25, 18)
    assert torch.equal(
        (a.lr * 255).round().to(torch.uint8), read_rgb_uint8(root / "LR_bicubic" / "X2" / "ax2.png")
    )
    assert b.lr_origin == "matlab" and b.hr.shape == (3, 24, 24) and b.lr.shape == (3, 12, 12)
    assert torch.equal(b.hr[0], b.hr[2])  # grey image -> 3 equal channels
    # x3 has no files: HR cropped to a multiple of 3, LR = MATLAB bicubic of the uint8 crop
    a3 = SRPairs(ds, 3).get(0)
    hr_u8 = read_rgb_uint8(hr)[:, :48, :36]
    assert a3.lr_origin == "matlab" and a3.hr.shape == (3, 48, 36)
    assert torch.equal((a3.lr * 255).round().to(torch.uint8), imresize(hr_u8, 1 / 3))
    # "matlab" ignores the files, "pil" uses Pillow
    assert SRPairs(ds, 2, lr_source="matlab").get(0).lr_origin == "matlab"
    p = SRPairs(ds, 2, lr_source="pil").get(0)
    assert p.lr_origin == "pil"
    assert torch.equal(
        (p.lr * 255).round().to(torch.uint8),
        pil_bicubic(read_rgb_uint8(hr)[:, :50, :36], size=(25, 18)),
    )
    assert SRPairs(ds, 2, lr_source="liif").get(0).lr_origin == "file"


def test_non_integer_and_too_large_scales(tmp_path):
    _png(tmp_path / "x.png", 512, 228)
    _png(tmp_path / "tiny.png", 20, 20, seed=2)
    ds = open_dataset(tmp_path)
    assert isinstance(ds, FlatImageFolder) and ds.names == ["tiny", "x"]
    pairs = SRPairs(ds, 2.5)
    s = pairs.get(1)
    # h_lr = floor(512 / 2.5 + 1e-9) = 204, HR crop round(204 * 2.5) = 510; 228 -> 91 -> 228
    assert s.lr.shape == (3, 204, 91) and s.hr.shape == (3, 510, 228)
    big = SRPairs(ds, 30)
    out = list(big)
    assert [o.name for o in out] == ["x"] and big.skipped == ["tiny"]
    assert out[0].lr.shape == (3, 17, 7) and out[0].hr.shape == (3, 510, 210)
    ident = SRPairs(ds, 1).get(0)
    assert ident.lr_origin == "identity" and torch.equal(ident.lr, ident.hr)
    for bad in (0, -2, float("nan"), float("inf"), 0.5, "abc"):
        with pytest.raises(UserInputError):
            SRPairs(ds, bad)
    with pytest.raises(UserInputError):
        SRPairs(ds, 2, lr_source="bogus")


def test_div2k_dtd_kodak_flat_detection(tmp_path):
    d = tmp_path / "DIV2K"
    _png(d / "DIV2K_valid_HR" / "0801.png", 32, 40)
    _png(d / "DIV2K_valid_LR_bicubic" / "X4" / "0801x4.png", 8, 10)
    _png(d / "DIV2K_train_HR" / "0001.png", 16, 16)
    ds = open_dataset(d)
    assert isinstance(ds, DIV2KImages) and ds.name == "DIV2K_valid" and ds.names == ["0801"]
    assert SRPairs(ds, 4).get(0).lr_origin == "file" and SRPairs(ds, 2).get(0).lr_origin == "matlab"
    assert open_dataset(d / "DIV2K_train_HR").names == ["0001"]

    t = tmp_path / "dtd_root" / "dtd"
    for cls, n in (("banded", 2), ("zigzagged", 2)):
        for i in range(n):
            _png(t / "images" / cls / f"{cls}_{i}.jpg", 20, 20, seed=i)
    (t / "labels").mkdir()
    (t / "labels" / "test1.txt").write_text("banded/banded_1.jpg\nzigzagged/zigzagged_0.jpg\n")
    dtd = open_dataset(tmp_path / "dtd_root")
    assert isinstance(dtd, DTDImages) and dtd.names == ["banded_1", "zigzagged_0"]
    assert len(DTDImages(tmp_path / "dtd_root", split="train")) == 4  # no list: every image

    k = tmp_path / "kodak"
    for i in (2, 1):
        _png(k / f"kodim{i:02d}.png", 12, 12, seed=i)
    _png(k / "notes.png", 12, 12)
    kd = open_dataset(k)
    assert isinstance(kd, KodakImages) and kd.names == ["kodim01", "kodim02"]

    f = tmp_path / "flat"
    _png(f / "sub" / "rgba.png", 10, 10, mode="RGBA")
    _png(f / "g16.png", 10, 10, mode="I;16")
    (f / "readme.txt").write_text("not an image")
    fl = open_dataset(f)
    assert fl.layout == "flat" and fl.names == ["g16", "rgba"]
    for i in range(len(fl)):
        img = fl[i]
        assert img.shape == (3, 10, 10) and img.dtype == torch.float32
    assert len(open_dataset(f, max_images=1)) == 1

    with pytest.raises(UserInputError, match="not found"):
        open_dataset(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserInputError, match="no images"):
        open_dataset(tmp_path / "empty")
    with pytest.raises(UserInputError):
        open_dataset(f / "g16.png")


@pytest.mark.skipif(not BENCH.is_dir(), reason="../shared/data/benchmark is not present")
def test_shared_benchmarks_open():
    s5 = open_dataset(BENCH / "Set5")
    assert s5.layout == "benchmark" and s5.names == ["baby", "bird", "butterfly", "head", "woman"]
    sample = SRPairs(s5, 3).get(4)  # woman: 344x228 HR, 114x76 LR file
    assert (
        sample.lr_origin == "file"
        and sample.hr.shape == (3, 342, 228)
        and sample.lr.shape == (3, 114, 76)
    )
    assert open_dataset(BENCH / "Kodak24" / "HR").name == "Kodak24"
    assert len(open_dataset(BENCH / "BSD68")) == 68


# --------------------------------------------------------------------------- regions


def test_hf_fraction_edge_density_and_labels():
    assert REGIONS == ["smooth", "edge", "texture", "mixed"]
    flat = torch.full((1, 3, 16, 16), 0.4)
    checker = (
        ((torch.arange(16)[:, None] + torch.arange(16)[None, :]) % 2).float().expand(1, 3, 16, 16)
    )
    assert per_patch_hf_fraction(flat, 16).item() == pytest.approx(0.0, abs=1e-6)
    # a pixel checkerboard: half its power is DC, half at (0.5, 0.5) cycles/pixel
    assert per_patch_hf_fraction(checker, 16).item() == pytest.approx(0.5, abs=1e-6)
    step = torch.zeros(1, 3, 16, 32)
    step[..., 24:] = 1.0
    ed = per_patch_edge_density(step, 16)
    assert ed.shape == (1, 1, 2) and ed[0, 0, 1] > ed[0, 0, 0]
    th = RegionThresholds(hf_q1=0.01, hf_q3=0.3, edge_median=0.5)
    img = torch.cat([flat, checker], dim=-1)
    assert label_patches(img, 16, th).tolist() == [[[0, 2]]]
    # sizes that are not multiples of the patch are cropped, not rejected
    assert label_patches(torch.rand(2, 3, 40, 50), 16, th).shape == (2, 2, 3)


def test_fit_save_load_thresholds(tmp_path):
    g = torch.Generator().manual_seed(0)
    imgs = [torch.rand(3, 64, 64, generator=g) * (i + 1) / 4 for i in range(4)]
    th = fit_region_thresholds(imgs, 16, n_samples=40)
    hf = torch.cat([per_patch_hf_fraction(x, 16).reshape(-1) for x in imgs])[:40].double()
    assert th.hf_q1 == pytest.approx(torch.quantile(hf, 0.25).item())
    assert th.hf_q3 == pytest.approx(torch.quantile(hf, 0.75).item())
    # loader items may be tuples (image, name, path) as the reference's loaders yield
    th2 = fit_region_thresholds([(x[None], "dtd", "p") for x in imgs], 16, n_samples=40)
    assert th2 == th
    path = save_thresholds(th, tmp_path / "th.json")
    assert load_thresholds(path) == th
    cached = tmp_path / "cache.json"
    assert load_or_fit_thresholds(cached, imgs, 16, n_samples=40) == th and cached.exists()
    assert load_or_fit_thresholds(cached, [], 16) == th  # read back, not refitted
    (tmp_path / "bad.json").write_text('{"hf_q1": 1}')
    with pytest.raises(UserInputError):
        load_thresholds(tmp_path / "bad.json")
    with pytest.raises(UserInputError):
        fit_region_thresholds([torch.rand(3, 8, 8)], 16)
    assert math.isfinite(th.edge_median)
