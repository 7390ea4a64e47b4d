"""gblsr-reconstruct / gblsr-encode / gblsr-decode end to end, and their handling of mistakes."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from _helpers import write_png
from PIL import Image

import gblsr
from gblsr.cli import decode, encode, reconstruct


def run(main, argv, capsys):
    try:
        code = main(argv)
    except SystemExit as e:  # argparse errors
        code = e.code
    out = capsys.readouterr()
    return code, out.out + out.err


@pytest.fixture
def ckpts(tmp_path, asr_model, native_model):
    return {
        "asr": gblsr.save_model(asr_model, tmp_path / "asr.safetensors"),
        "native": gblsr.save_model(native_model, tmp_path / "native.safetensors"),
    }


def test_reconstruct_scale_37_output_size(tmp_path, ckpts, capsys):
    src = write_png(tmp_path / "in.png", 64, 50)
    code, text = run(
        reconstruct.main,
        [
            "--checkpoint",
            str(ckpts["asr"]),
            "--input",
            str(src),
            "--scale",
            "3.7",
            "--output",
            str(tmp_path / "o.png"),
        ],
        capsys,
    )
    assert code == 0, text
    assert Image.open(tmp_path / "o.png").size == (round(3.7 * 50), round(3.7 * 64))


def test_reconstruct_size_option(tmp_path, ckpts, capsys):
    src = write_png(tmp_path / "in.png", 9, 7)
    code, text = run(
        reconstruct.main,
        [
            "--checkpoint",
            str(ckpts["asr"]),
            "--input",
            str(src),
            "--size",
            "31x20",
            "--output",
            str(tmp_path / "o.png"),
        ],
        capsys,
    )
    assert code == 0, text
    assert Image.open(tmp_path / "o.png").size == (20, 31)


@pytest.mark.parametrize("which, extra", [("native", []), ("asr", ["--scale", "3.7"])])
@pytest.mark.parametrize("mode", ["RGB", "RGBA", "L"])
def test_encode_then_decode_equals_reconstruct(tmp_path, ckpts, capsys, which, extra, mode):
    src = write_png(tmp_path / "in.png", 19, 26, mode=mode)
    ck = ["--checkpoint", str(ckpts[which])]
    blob, dec, rec = (tmp_path / n for n in ("f.safetensors", "dec.png", "rec.png"))
    assert run(encode.main, ck + ["--input", str(src), "--output", str(blob)], capsys)[0] == 0
    assert (
        run(decode.main, ck + ["--input", str(blob), "--output", str(dec)] + extra, capsys)[0] == 0
    )
    assert (
        run(reconstruct.main, ck + ["--input", str(src), "--output", str(rec)] + extra, capsys)[0]
        == 0
    )
    a, b = np.asarray(Image.open(dec)), np.asarray(Image.open(rec))
    assert a.shape == b.shape
    assert np.array_equal(a, b)
    if mode == "RGBA":  # alpha survives, resized on its own
        assert a.shape[-1] == 4
        src_alpha = np.asarray(Image.open(src))[..., 3].astype(float)
        assert abs(a[..., 3].mean() - src_alpha.mean()) < 8


def test_native_reconstructs_at_input_size_and_refuses_scale(tmp_path, ckpts, capsys):
    src = write_png(tmp_path / "in.png", 21, 30)
    ck = ["--checkpoint", str(ckpts["native"]), "--input", str(src)]
    assert run(reconstruct.main, ck + ["--output", str(tmp_path / "o.png")], capsys)[0] == 0
    assert Image.open(tmp_path / "o.png").size == (30, 21)
    code, text = run(
        reconstruct.main, ck + ["--scale", "2", "--output", str(tmp_path / "x.png")], capsys
    )
    assert code == 2 and "input size" in text
    assert not (tmp_path / "x.png").exists()


def test_odd_inputs(tmp_path, ckpts, capsys):
    """1x1, palette, 16-bit greyscale and EXIF-rotated images all work; sizes use Python's
    round (18.5 -> 18), like LIIF's test code."""
    tiny = write_png(tmp_path / "tiny.png", 1, 1)
    pal = tmp_path / "pal.png"
    Image.fromarray(np.arange(48, dtype=np.uint8).reshape(6, 8)).convert("P").save(pal)
    g16 = tmp_path / "g16.png"
    Image.fromarray((np.arange(35).reshape(5, 7) * 1000).astype(np.uint16)).save(g16)
    rot = tmp_path / "rot.jpg"
    img = Image.fromarray(np.zeros((4, 10, 3), np.uint8))
    exif = img.getexif()
    exif[0x0112] = 6  # rotate 90 degrees on display
    img.save(rot, exif=exif)
    for src, size in [(tiny, (4, 4)), (pal, (30, 22)), (g16, (26, 18)), (rot, (15, 37))]:
        out = tmp_path / f"{src.stem}_out.png"
        code, text = run(
            reconstruct.main,
            [
                "--checkpoint",
                str(ckpts["asr"]),
                "--input",
                str(src),
                "--scale",
                "3.7",
                "--output",
                str(out),
            ],
            capsys,
        )
        assert code == 0, text
        assert Image.open(out).size == size, src.name


def _mistakes(tmp_path, ckpts):
    good = write_png(tmp_path / "in.png", 12, 12)
    trunc = tmp_path / "trunc.png"
    trunc.write_bytes(good.read_bytes()[:200])
    notckpt = tmp_path / "notes.safetensors"
    notckpt.write_text("just some text")
    ck = str(ckpts["asr"])
    return [
        (reconstruct.main, ["--checkpoint", ck, "--input", str(trunc), "--scale", "2"]),
        (
            reconstruct.main,
            ["--checkpoint", ck, "--input", str(tmp_path / "nope.png"), "--scale", "2"],
        ),
        (reconstruct.main, ["--checkpoint", ck, "--input", str(good), "--scale", "0"]),
        (reconstruct.main, ["--checkpoint", ck, "--input", str(good), "--scale", "nan"]),
        (reconstruct.main, ["--checkpoint", ck, "--input", str(good), "--scale", "-2"]),
        (reconstruct.main, ["--checkpoint", ck, "--input", str(good)]),
        (reconstruct.main, ["--checkpoint", ck, "--input", str(good), "--size", "12by3"]),
        (reconstruct.main, ["--checkpoint", str(notckpt), "--input", str(good), "--scale", "2"]),
        (
            reconstruct.main,
            [
                "--checkpoint",
                str(tmp_path / "missing.safetensors"),
                "--input",
                str(good),
                "--scale",
                "2",
            ],
        ),
        (decode.main, ["--checkpoint", ck, "--input", str(good), "--scale", "2"]),
    ]


def test_user_mistakes_exit_2_with_short_message_and_no_output(tmp_path, ckpts, capsys):
    for i, (main, argv) in enumerate(_mistakes(tmp_path, ckpts)):
        out = tmp_path / f"out{i}.png"
        code, text = run(main, argv + ["--output", str(out)], capsys)
        assert code == 2, (argv, text)
        assert 1 <= len(text.strip().splitlines()) <= 3, text
        assert "Traceback" not in text
        assert not out.exists()
    assert not list(tmp_path.glob(".*.tmp"))


def test_blob_from_another_model_is_refused(tmp_path, ckpts, capsys, asr_model):
    import torch

    other = gblsr.GBLSRScalarASR(encoder_cfg=asr_model.get_config()["encoder_cfg"])
    with torch.no_grad():
        other.decoder.log_s_e.add_(0.1)
    other_ck = gblsr.save_model(other, tmp_path / "other.safetensors")
    src = write_png(tmp_path / "in.png", 10, 10)
    blob = tmp_path / "f.safetensors"
    assert (
        run(
            encode.main,
            ["--checkpoint", str(ckpts["asr"]), "--input", str(src), "--output", str(blob)],
            capsys,
        )[0]
        == 0
    )
    for ck in (other_ck, ckpts["native"]):
        out = tmp_path / "o.png"
        code, text = run(
            decode.main,
            ["--checkpoint", str(ck), "--input", str(blob), "--scale", "2", "--output", str(out)],
            capsys,
        )
        assert code == 2 and "another model" in text
        assert not out.exists()


@pytest.mark.parametrize("name", ["reconstruct", "encode", "decode"])
def test_module_and_script_entry_points(name):
    repo = __import__("pathlib").Path(__file__).resolve().parents[1]
    for cmd in (
        [sys.executable, "-m", f"gblsr.cli.{name}", "--help"],
        [sys.executable, str(repo / "scripts" / f"{name}.py"), "--help"],
    ):
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
        assert res.returncode == 0 and "--checkpoint" in res.stdout


@pytest.mark.parametrize("arch", ["liif", "lte", "lmlte"])
def test_peer_models_encode_decode_equals_reconstruct(tmp_path, capsys, arch):
    import torch

    torch.manual_seed(0)
    tiny = {"encoder": "edsr", "encoder_cfg": {"num_blocks": 1, "num_features": 8}}
    model = gblsr.create_model(arch, **tiny)
    ck = ["--checkpoint", str(gblsr.save_model(model, tmp_path / f"{arch}.safetensors"))]
    src = write_png(tmp_path / "in.png", 9, 11)
    blob, dec, rec = (tmp_path / n for n in ("f.safetensors", "dec.png", "rec.png"))
    extra = ["--scale", "2.5"]
    assert run(encode.main, ck + ["--input", str(src), "--output", str(blob)], capsys)[0] == 0
    assert (
        run(decode.main, ck + ["--input", str(blob), "--output", str(dec)] + extra, capsys)[0] == 0
    )
    code, text = run(
        reconstruct.main, ck + ["--input", str(src), "--output", str(rec)] + extra, capsys
    )
    assert code == 0, text
    a, b = np.asarray(Image.open(dec)), np.asarray(Image.open(rec))
    assert a.shape == (22, 28, 3) and np.array_equal(a, b)
