"""Streaming outputs: the band-by-band PNG writer and gblsr-reconstruct / gblsr-decode with
--max-memory / --tile."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from _helpers import write_png
from PIL import Image

import gblsr
from gblsr.cli import decode, encode, reconstruct
from gblsr.data.image_io import read_image, to_uint8
from gblsr.data.png_stream import PNGStreamWriter, write_png_streamed
from gblsr.inference import decode_features, encode_image, parse_bytes


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.mark.parametrize("channels, mode", [(1, "L"), (2, "LA"), (3, "RGB"), (4, "RGBA")])
def test_png_stream_round_trip(tmp_path, channels, mode):
    rng = np.random.default_rng(channels)
    img = rng.integers(0, 256, size=(37, 23, channels), dtype=np.uint8)
    bands = [img[i : i + 5] for i in range(0, 37, 5)]
    write_png_streamed(tmp_path / "x.png", 23, 37, channels, iter(bands), compress_level=1)
    with Image.open(tmp_path / "x.png") as im:
        assert im.mode == mode and im.size == (23, 37)
        back = np.asarray(im)
    assert np.array_equal(back.reshape(img.shape), img)


def test_png_stream_checks_rows():
    buf = io.BytesIO()
    png = PNGStreamWriter(buf, width=4, height=3, channels=3)
    with pytest.raises(ValueError, match="uint8"):
        png.write_rows(np.zeros((1, 4, 3), dtype=np.float32))
    with pytest.raises(ValueError):
        png.write_rows(np.zeros((1, 5, 3), dtype=np.uint8))
    png.write_rows(np.zeros((2, 4, 3), dtype=np.uint8))
    with pytest.raises(ValueError, match="declared"):
        png.write_rows(np.zeros((2, 4, 3), dtype=np.uint8))
    with pytest.raises(ValueError, match="of the 3"):
        png.close()
    with pytest.raises(ValueError):
        PNGStreamWriter(io.BytesIO(), width=0, height=3)


def test_failed_stream_leaves_no_file(tmp_path):
    def bands():
        yield np.zeros((2, 4, 3), dtype=np.uint8)
        raise RuntimeError("renderer died")

    with pytest.raises(RuntimeError):
        write_png_streamed(tmp_path / "x.png", 4, 4, 3, bands())
    assert list(tmp_path.iterdir()) == []


def test_parse_bytes():
    assert parse_bytes("512M") == 512 << 20
    assert parse_bytes("2g") == 2 << 30
    assert parse_bytes("1.5GiB") == 3 << 29
    assert parse_bytes("1048576") == 1 << 20
    for bad in ("12X", "", "0.5M", "-1G"):
        with pytest.raises(gblsr.errors.UserInputError):
            parse_bytes(bad)


def _run(main, argv, capsys):
    try:
        code = main(argv)
    except SystemExit as e:
        code = e.code
    out = capsys.readouterr()
    return code, out.out + out.err


@pytest.fixture
def ckpt(tmp_path, asr_model):
    return str(gblsr.save_model(asr_model, tmp_path / "asr.safetensors"))


@pytest.mark.parametrize("mode", ["RGB", "RGBA"])
def test_streamed_bands_equal_one_piece(tmp_path, ckpt, capsys, asr_model, mode):
    src = write_png(tmp_path / "in.png", 23, 17, mode=mode)
    base = ["--checkpoint", ckpt, "--input", str(src), "--scale", "3.3"]
    outs = {}
    for name, extra in {
        "default": [],
        "tile": ["--tile", "300"],
        "memory": ["--max-memory", "1M"],
    }.items():
        path = tmp_path / f"{name}.png"
        code, text = _run(reconstruct.main, base + ["--output", str(path)] + extra, capsys)
        assert code == 0, text
        outs[name] = np.asarray(Image.open(path))
    assert outs["default"].shape == (round(3.3 * 23), round(3.3 * 17), 3 if mode == "RGB" else 4)
    # Bands are exact windows of one rendering: 8-bit results agree except, at most, for values
    # that sit on a rounding boundary (last-bit differences of the contraction).
    for name in ("tile", "memory"):
        diff = np.abs(outs[name].astype(int) - outs["default"].astype(int))
        assert diff.max() <= 1 and (diff > 0).mean() < 1e-3, name
    # The in-memory API gives the same pixels.
    rgb, _ = decode_features(asr_model, encode_image(asr_model, read_image(src)), scale=3.3)
    api = to_uint8(rgb).permute(1, 2, 0).numpy()
    diff = np.abs(api.astype(int) - outs["default"][..., :3].astype(int))
    assert diff.max() <= 1 and (diff > 0).mean() < 1e-3


def test_other_formats_and_limits(tmp_path, ckpt, capsys):
    src = write_png(tmp_path / "in.png", 20, 30)
    base = ["--checkpoint", ckpt, "--input", str(src)]
    code, text = _run(
        reconstruct.main, base + ["--scale", "2", "--output", str(tmp_path / "o.bmp")], capsys
    )
    assert code == 0, text
    png = tmp_path / "o.png"
    assert _run(reconstruct.main, base + ["--scale", "2", "--output", str(png)], capsys)[0] == 0
    assert np.array_equal(np.asarray(Image.open(tmp_path / "o.bmp")), np.asarray(Image.open(png)))
    # A whole-image format over the memory limit is refused with one line, and no file.
    code, text = _run(
        reconstruct.main,
        base + ["--size", "700x700", "--max-memory", "1M", "--output", str(tmp_path / "big.bmp")],
        capsys,
    )
    assert code == 2 and "png" in text and text.count("\n") == 1, text
    assert not (tmp_path / "big.bmp").exists()
    for bad in (["--max-memory", "lots"], ["--tile", "0"]):
        code, text = _run(
            reconstruct.main,
            base + ["--scale", "2", "--output", str(tmp_path / "x.png")] + bad,
            capsys,
        )
        assert code == 2 and text.count("\n") == 1, text
        assert not (tmp_path / "x.png").exists()


def test_decode_streams_like_reconstruct(tmp_path, ckpt, capsys):
    src = write_png(tmp_path / "in.png", 15, 12)
    blob, dec, rec = tmp_path / "f.safetensors", tmp_path / "d.png", tmp_path / "r.png"
    ck = ["--checkpoint", ckpt]
    assert _run(encode.main, ck + ["--input", str(src), "--output", str(blob)], capsys)[0] == 0
    extra = ["--scale", "4", "--max-memory", "1M"]
    assert (
        _run(decode.main, ck + ["--input", str(blob), "--output", str(dec)] + extra, capsys)[0] == 0
    )
    assert (
        _run(reconstruct.main, ck + ["--input", str(src), "--output", str(rec)] + extra, capsys)[0]
        == 0
    )
    assert np.array_equal(np.asarray(Image.open(dec)), np.asarray(Image.open(rec)))
