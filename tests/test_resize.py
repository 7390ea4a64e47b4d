"""MATLAB-compatible imresize: hand-computed values, output-size rule, uint8 semantics, and exact
reproduction of the MATLAB-made LR files shipped with Set5 / Set14."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from gblsr.data import imresize, output_size, pil_bicubic, read_rgb_uint8
from gblsr.data.resize import cubic_kernel, hr_crop_for_scale, lr_size_for_scale, resize_weights

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
BENCH = SHARED / "data" / "benchmark"


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # Small tensor ops: extra intra-op threads only add contention on shared CI machines.
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def test_cubic_kernel_values():
    x = torch.tensor([0.0, 0.5, 1.0, 1.5, 2.0, 2.5, -0.25], dtype=torch.float64)
    # a = -0.5: 1.5|x|^3 - 2.5|x|^2 + 1 on [0, 1]; -0.5|x|^3 + 2.5|x|^2 - 4|x| + 2 on (1, 2]
    expected = [1.0, 0.5625, 0.0, -0.0625, 0.0, 0.0, 0.8671875]
    assert cubic_kernel(x).tolist() == expected


def test_output_size_rule():
    assert output_size((255, 255), scale=1 / 3)[0] == (85, 85)  # not 86 from float error
    assert output_size((7, 9), scale=0.5)[0] == (4, 5)  # ceil
    assert output_size((10, 10), scale=0.35)[0] == (4, 4)
    assert output_size((10, 20), size=(5, None)) == ((5, 10), (0.5, 0.5))
    (h, w), (fh, fw) = output_size((100, 50), size=(30, 20))
    assert (h, w) == (30, 20) and fh == pytest.approx(0.3) and fw == pytest.approx(0.4)
    assert lr_size_for_scale((512, 228), 2.5) == (204, 91)
    assert hr_crop_for_scale((512, 228), 2.5) == (510, 228)
    assert lr_size_for_scale((255, 30), 3) == (85, 10)
    for bad in (0, -1, float("nan"), float("inf")):
        with pytest.raises(ValueError):
            output_size((10, 10), scale=bad)


def test_upscale_x2_matches_hand_computed_matlab():
    # imresize([0 1], 2) in MATLAB: [-0.09375 0.203125 0.796875 1.09375] (worked out by hand
    # from the cubic taps at distances 0.25 / 0.75 / 1.25 / 1.75 with mirrored borders).
    x = torch.tensor([[[0.0, 1.0]]], dtype=torch.float64)
    y = imresize(x, 2)
    assert y.shape == (1, 2, 4)
    expected = torch.tensor([-0.09375, 0.203125, 0.796875, 1.09375], dtype=torch.float64)
    torch.testing.assert_close(y[0, 0], expected, rtol=0, atol=1e-12)
    torch.testing.assert_close(y[0, 1], expected, rtol=0, atol=1e-12)


def test_downscale_x2_antialiased_matches_hand_computed_matlab():
    # Shrinking by 2 widens the kernel to 8 taps: weights 0.5 * k(d / 2) at d = +-0.5 ... +-3.5,
    # so a [0 0 1 1] step becomes [0.0546875 0.9453125].
    x = torch.tensor([0.0, 0.0, 1.0, 1.0], dtype=torch.float64).repeat(1, 4, 1)
    y = imresize(x, 0.5)
    assert y.shape == (1, 2, 2)
    torch.testing.assert_close(
        y[0], torch.tensor([[0.0546875, 0.9453125]] * 2, dtype=torch.float64)
    )


def test_uint8_rounds_and_clips_like_matlab():
    x = torch.tensor([[[0, 255]]], dtype=torch.uint8)
    y = imresize(x, 2)
    assert y.dtype == torch.uint8
    # 255 * [-0.09375, 0.203125, 0.796875, 1.09375] = [-23.9, 51.797, 203.203, 278.9]
    assert y[0, 0].tolist() == [0, 52, 203, 255]
    # ties round half away from zero (MATLAB), not half to even: bilinear x2 of [0 2] is
    # [0 0.5 1.5 2] before rounding
    z = imresize(torch.tensor([[[0, 2]]], dtype=torch.uint8), 2, method="bilinear")
    assert z[0, 0].tolist() == [0, 1, 2, 2]


def test_uint8_rounds_after_each_pass_and_orders_axes_by_scale():
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (3, 40, 60), generator=g, dtype=torch.uint8)
    # The width shrinks more (0.3 < 0.5), so MATLAB resizes the width first.
    got = imresize(x, size=(20, 18))
    xf = x.double()

    def one_pass(t, dim, n_out):
        n_in = t.shape[dim]
        w, idx = resize_weights(n_in, n_out, n_out / n_in)
        t = t.movedim(dim, -1)
        out = (t[..., idx] * w).sum(-1)
        return torch.floor(out.clamp(0, 255) + 0.5).movedim(-1, dim)

    width_first = one_pass(one_pass(xf, 2, 18), 1, 20).to(torch.uint8)
    height_first = one_pass(one_pass(xf, 1, 20), 2, 18).to(torch.uint8)
    assert torch.equal(got, width_first)
    assert not torch.equal(got, height_first)
    # float input is not quantised
    f = imresize(x.float() / 255, size=(20, 18))
    assert f.dtype == torch.float32
    assert (f * 255 - got.float()).abs().max() <= 1.0
    assert ((f * 255) - (f * 255).round()).abs().max() > 1e-3


def test_batched_dtype_and_identity():
    g = torch.Generator().manual_seed(1)
    x = torch.rand(2, 3, 17, 23, generator=g)
    y = imresize(x, 1.7)
    assert y.shape == (2, 3, 29, 40) and y.dtype == torch.float32
    torch.testing.assert_close(y[1], imresize(x[1], 1.7))
    y64 = imresize(x.double(), 1.7)
    assert y64.dtype == torch.float64
    torch.testing.assert_close(y.double(), y64, atol=1e-5, rtol=0)
    assert imresize(x.to(torch.bfloat16), 0.5).dtype == torch.bfloat16
    torch.testing.assert_close(imresize(x, 1), x)
    # constant images stay constant (weights sum to one, including at the borders)
    c = torch.full((3, 9, 11), 0.3, dtype=torch.float64)
    torch.testing.assert_close(imresize(c, 0.37), torch.full((3, 4, 5), 0.3, dtype=torch.float64))
    with pytest.raises(TypeError):
        imresize(torch.zeros(3, 4, 4, dtype=torch.int32), 2)


def test_nearest_and_bilinear_upscale():
    x = torch.tensor([[[0.0, 1.0]]])
    assert imresize(x, 2, method="nearest")[0, 0].tolist() == [0.0, 0.0, 1.0, 1.0]
    # triangle kernel at distances 0.25 / 0.75, edges mirrored
    assert imresize(x, 2, method="bilinear")[0, 0].tolist() == [0.0, 0.25, 0.75, 1.0]


def test_pil_bicubic_is_pillow():
    g = torch.Generator().manual_seed(2)
    x = torch.randint(0, 256, (3, 37, 41), generator=g, dtype=torch.uint8)
    ref = Image.fromarray(x.permute(1, 2, 0).numpy(), "RGB").resize(
        (13, 12), Image.Resampling.BICUBIC
    )
    out = pil_bicubic(x, size=(12, 13))
    assert out.dtype == torch.uint8
    assert np.array_equal(out.permute(1, 2, 0).numpy(), np.asarray(ref))
    f = pil_bicubic(x.float() / 255, size=(12, 13))
    assert f.dtype == torch.float32 and torch.equal((f * 255).round().to(torch.uint8), out)
    batch = pil_bicubic(torch.stack([x, x]), size=(12, 13))
    assert torch.equal(batch[0], out) and torch.equal(batch[1], out)
    # Pillow clips its kernel at the border, MATLAB mirrors: close inside, not identical
    m = imresize(x, size=(12, 13))
    assert (m.int() - out.int()).abs()[:, 2:-2, 2:-2].float().mean() < 3


def _match_rates(set_name: str, scale: int) -> tuple[float, int]:
    total = exact = worst = 0
    for hr_path in sorted((BENCH / set_name / "HR").glob("*.png")):
        lr = read_rgb_uint8(
            BENCH / set_name / "LR_bicubic" / f"X{scale}" / f"{hr_path.stem}x{scale}.png"
        )
        h, w = lr.shape[-2:]
        hr = read_rgb_uint8(hr_path)[:, : h * scale, : w * scale]
        d = (imresize(hr, 1 / scale).int() - lr.int()).abs()
        assert d.shape == lr.shape
        total += d.numel()
        exact += int((d == 0).sum())
        worst = max(worst, int(d.max()))
    return exact / total, worst


@pytest.mark.skipif(not BENCH.is_dir(), reason="../shared/data/benchmark is not present")
@pytest.mark.parametrize("set_name", ["Set5", "Set14"])
@pytest.mark.parametrize("scale", [2, 3, 4])
def test_reproduces_matlab_lr_files(set_name, scale):
    rate, worst = _match_rates(set_name, scale)
    assert rate >= 0.99, f"{set_name} x{scale}: only {rate:.4%} of pixels match"
    assert worst <= 2
