"""Every command keeps its promise on failure paths: one stderr line, exit code 2, no traceback,
no leftover file, earlier outputs intact. In-process (no interpreter start-up per case); the
interrupt cases, which need a real process, are in test_hardening_signals.py.

Classes: the output layer (umask, missing / directory / read-only / full targets), sizes nobody
can render, crafted checkpoints and feature blobs, numbers that are not numbers, training
starts that fail before their first step.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import torch
import yaml
from _helpers import TINY_RDN, write_png
from safetensors import safe_open
from safetensors.torch import save_file

import gblsr
from gblsr.cli import cmsr, convert, decode, encode, latency, reconstruct, train
from gblsr.cli import eval as eval_cli
from gblsr.errors import CheckpointError, OutputError
from gblsr.fileio import Interrupted, atomic_write, write_text_atomic

IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


@pytest.fixture(autouse=True)
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def call(main, argv, capsys) -> tuple[int, str]:
    try:
        code = main(argv)
    except SystemExit as e:
        code = e.code
    return code, capsys.readouterr().err


def assert_one_line_error(code: int, err: str, *needles: str) -> None:
    lines = err.strip().splitlines()
    assert code == 2, err
    assert len(lines) == 1 and "Traceback" not in err, err
    for n in needles:
        assert n in err, err


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("in")
    torch.manual_seed(0)
    model = gblsr.GBLSRScalarASR(encoder_cfg=TINY_RDN).eval()
    ckpt = gblsr.save_model(model, d / "asr.safetensors")
    img = write_png(d / "in.png", 12, 10)
    blob = d / "in.features"
    assert encode.main(["--checkpoint", str(ckpt), "--input", str(img), "--output", str(blob)]) == 0
    return {"ckpt": ckpt, "img": img, "blob": blob, "dir": d}


# ---------------------------------------------------------------------------- targets


@contextlib.contextmanager
def _mounted(path: Path, opts: str):
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(path)], check=False)
    if res.returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    try:
        yield path
    finally:
        subprocess.run(["umount", str(path)], check=False)


@pytest.fixture
def full_dir(tmp_path):
    """A folder on a full 1 MiB tmpfs, holding a precious old output."""
    if not IS_ROOT:
        pytest.skip("a full disk is simulated with a tmpfs, which needs root")
    d = tmp_path / "full"
    d.mkdir()
    with _mounted(d, "size=1m"):
        (d / "old.png").write_bytes(b"old")
        (d / "filler").write_bytes(b"\0" * shutil.disk_usage(d).free)
        yield d


@pytest.fixture
def readonly_dir(tmp_path):
    """A read-only folder holding an old output (a read-only tmpfs as root, else chmod)."""
    d = tmp_path / "ro"
    d.mkdir()
    if IS_ROOT:
        with _mounted(d, "size=1m"):
            (d / "old.png").write_bytes(b"old")
            r = subprocess.run(["mount", "-o", "remount,ro", str(d)], check=False)
            if r.returncode != 0:
                pytest.skip("cannot remount read-only")
            yield d
    else:
        (d / "old.png").write_bytes(b"old")
        d.chmod(0o555)
        yield d
        d.chmod(0o755)


@pytest.mark.parametrize("mask", [0o022, 0o027, 0o002])
def test_files_get_the_umask_permissions(tmp_path, mask, files):
    old = os.umask(mask)
    try:
        p = write_text_atomic(tmp_path / "a.txt", "x")
        m = gblsr.load_model(files["ckpt"])
        q = gblsr.save_model(m, tmp_path / "m.safetensors")
    finally:
        os.umask(old)
    assert p.stat().st_mode & 0o777 == 0o666 & ~mask
    assert q.stat().st_mode & 0o777 == 0o666 & ~mask


def test_atomic_write_cleans_up_on_interrupt_and_keeps_the_old_file(tmp_path):
    target = write_text_atomic(tmp_path / "t.txt", "old")

    def interrupted(tmp):
        Path(tmp).write_text("half")
        raise Interrupted(15)

    with pytest.raises(Interrupted) as e:
        atomic_write(target, interrupted)
    assert e.value.exit_code == 143
    assert target.read_text() == "old" and leftovers(tmp_path) == []


@pytest.mark.parametrize("where", ["missing", "directory"])
def test_missing_folder_and_directory_targets(tmp_path, where, files, capsys):
    out = tmp_path / "nope" / "o.png" if where == "missing" else tmp_path
    with pytest.raises(OutputError, match=str(out)):
        write_text_atomic(out, "x")
    code, err = call(
        reconstruct.main,
        ["--checkpoint", str(files["ckpt"]), "--input", str(files["img"]), "--scale", "2"]
        + ["--output", str(out)],
        capsys,
    )
    assert_one_line_error(code, err, str(out))


def _writers(files: dict, d: Path) -> dict[str, tuple]:
    """command -> (main, argv) writing into folder d (the output named o.*)."""
    ck, img, blob = str(files["ckpt"]), str(files["img"]), str(files["blob"])
    imgdir = str(files["dir"])
    return {
        "reconstruct": (
            reconstruct.main,
            ["--checkpoint", ck, "--input", img, "--scale", "4", "--output", str(d / "o.png")],
        ),
        "decode": (
            decode.main,
            ["--checkpoint", ck, "--input", blob, "--scale", "4", "--output", str(d / "o.png")],
        ),
        "encode": (
            encode.main,
            ["--checkpoint", ck, "--input", img, "--output", str(d / "o.features")],
        ),
        "convert": (convert.main, [ck, str(d / "o.safetensors")]),
        "eval-out": (
            eval_cli.main,
            ["--model", "bicubic", "--dataset", imgdir, "--scale", "2", "--out", str(d / "rep")],
        ),
        "eval-output": (
            eval_cli.main,
            ["--model", "bicubic", "--dataset", imgdir, "--scale", "2"]
            + ["--output", str(d / "o.json")],
        ),
        "latency": (
            latency.main,
            ["--checkpoint", ck, "--size", "8x8", "--warmup", "0", "--timed", "1"]
            + ["--device", "cpu", "--output", str(d / "o.json")],
        ),
    }


WRITERS = ["reconstruct", "decode", "encode", "convert", "eval-out", "eval-output", "latency"]


@pytest.mark.parametrize("name", WRITERS)
def test_read_only_target(readonly_dir, files, name, capsys):
    main, argv = _writers(files, readonly_dir)[name]
    code, err = call(main, argv, capsys)
    assert_one_line_error(code, err, str(readonly_dir))
    assert ".tmp" not in err  # the user's path, never the hidden temporary file
    assert (readonly_dir / "old.png").read_bytes() == b"old"
    assert sorted(p.name for p in readonly_dir.iterdir()) == ["old.png"]


@pytest.mark.parametrize("name", ["reconstruct", "encode", "convert"])
def test_full_disk(full_dir, files, name, capsys):
    main, argv = _writers(files, full_dir)[name]
    code, err = call(main, argv, capsys)
    assert_one_line_error(code, err, str(full_dir))
    # Refused by the plan (the free space) or by the write itself.
    assert "no space left" in err or "bytes free" in err, err
    assert (full_dir / "old.png").read_bytes() == b"old"
    assert sorted(p.name for p in full_dir.iterdir()) == ["filler", "old.png"]


def test_full_disk_training_run_leaves_nothing(full_dir, files, tmp_path, capsys):
    cfg = _tiny_train(full_dir / "run", files)
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    code, err = call(train.main, ["--config", str(tmp_path / "c.yaml")], capsys)
    assert code == 2 and "Traceback" not in err and "no space left" in err, err
    assert sorted(p.name for p in full_dir.iterdir()) == ["filler", "old.png"]


# ---------------------------------------------------------------------------- sizes


@pytest.mark.parametrize(
    "option, needle",
    [
        (["--size", "99999999x99999999"], "largest size of this shape that fits is"),
        (["--scale", "1e6"], "largest scale that fits is"),
        (["--scale", "6000", "--output-ext", ".jpg"], "JPEG images are limited to 65500"),
        (["--scale", "600", "--max-memory", "1M"], "largest scale that fits is"),
    ],
)
def test_sizes_nobody_can_render_are_refused_with_what_fits(
    tmp_path, files, option, needle, capsys
):
    ext = ".png"
    if "--output-ext" in option:
        ext, option = option[-1], option[:-2]
    out = tmp_path / f"o{ext}"
    argv = ["--checkpoint", str(files["ckpt"]), "--input", str(files["img"]), "--output", str(out)]
    code, err = call(reconstruct.main, argv + option, capsys)
    assert_one_line_error(code, err, needle)
    assert list(tmp_path.iterdir()) == []


def test_the_largest_scale_offered_fits(tmp_path, files, capsys):
    from gblsr.feasibility import check_image_output

    code, err = call(
        reconstruct.main,
        ["--checkpoint", str(files["ckpt"]), "--input", str(files["img"])]
        + ["--output", str(tmp_path / "o.png"), "--scale", "600", "--max-memory", "1M"],
        capsys,
    )
    offered = float(err.split("largest scale that fits is ")[1].split()[0])
    kw = dict(fmt="PNG", channels=3, alpha=False, max_memory=1 << 20, path=tmp_path / "o.png")
    check_image_output(round(offered * 12) - 1, round(offered * 10) - 1, **kw)
    with pytest.raises(gblsr.errors.UserInputError):
        check_image_output(round(offered * 12 * 1.1), round(offered * 10 * 1.1), **kw)


def test_measure_latency_huge_size(files, capsys):
    for size, needle in (("99999x99999", "largest input"), ("3000000x3000000", "out of range")):
        code, err = call(
            latency.main,
            ["--checkpoint", str(files["ckpt"]), "--size", size, "--device", "cpu"],
            capsys,
        )
        assert_one_line_error(code, err, size, needle)


# ---------------------------------------------------------------------------- crafted files


def _tampered(files: dict, d: Path, name: str, *, config=None, meta=None, tensors=None) -> Path:
    with safe_open(str(files["ckpt"]), "pt") as f:
        m, sd = dict(f.metadata()), {k: f.get_tensor(k) for k in f.keys()}
    cfg = json.loads(m["config"])
    if config:
        cfg = config(cfg)
    m["config"] = cfg if isinstance(cfg, str) else json.dumps(cfg)
    m.update(meta or {})
    path = d / name
    save_file(tensors(sd) if tensors else sd, str(path), metadata=m)
    return path


def _enc(**kw):
    return lambda c: {**c, "encoder_cfg": {**c["encoder_cfg"], **kw}}


CRAFTED = {
    "huge width": (_enc(num_features=100000, num_rdbs=16), "larger model than the weights"),
    "many blocks": (_enc(num_rdbs=2000000), "out of range"),
    "many blocks in range": (_enc(num_rdbs=5000), "larger model than the weights"),
    "negative width": (_enc(num_features=-8), "invalid gblsr_asr config"),
    "width as text": (_enc(num_features="8"), "invalid gblsr_asr config"),
    "nan": (
        lambda c: {**c, "decoder_cfg": {**c["decoder_cfg"], "bandwidth_init": float("nan")}},
        "not a usable number",
    ),
    "not json": (lambda c: "{not json", "config is not JSON"),
    "config a list": (lambda c: [1, 2], "must be a mapping"),
    "deep nesting": (lambda c: {**c, "x": [[[[[[[[[[1]]]]]]]]]]}, "too deeply nested"),
}


@pytest.mark.parametrize("case", sorted(CRAFTED))
def test_crafted_checkpoint_config_is_refused_before_allocation(tmp_path, files, case, capsys):
    edit, needle = CRAFTED[case]
    path = _tampered(files, tmp_path, "c.safetensors", config=edit)
    with pytest.raises(CheckpointError) as e:
        gblsr.load_model(path)
    msg = str(e.value)
    assert "\n" not in msg and (needle is None or needle in msg), msg
    code, err = call(convert.main, [str(path), str(tmp_path / "o.safetensors")], capsys)
    assert_one_line_error(code, err)
    assert not (tmp_path / "o.safetensors").exists()


def test_architecture_that_does_not_fit_its_config(tmp_path, files):
    path = _tampered(files, tmp_path, "c.safetensors", meta={"architecture": "liif"})
    with pytest.raises(CheckpointError, match="invalid liif config"):
        gblsr.load_model(path)
    path = _tampered(files, tmp_path, "d.safetensors", meta={"architecture": "nosuch"})
    with pytest.raises(gblsr.errors.UserInputError, match="unknown model 'nosuch'"):
        gblsr.load_model(path)


def _blob_variant(files: dict, d: Path, *, meta=None, tensors=None) -> Path:
    with safe_open(str(files["blob"]), "pt") as f:
        m, t = dict(f.metadata()), {k: f.get_tensor(k) for k in f.keys()}
    m.update(meta or {})
    path = d / "b.features"
    save_file(tensors(t) if tensors else t, str(path), metadata=m)
    return path


BLOBS = {
    "giant input claim": (dict(meta={"input_h": "99999", "input_w": "99999"}), "does not fit"),
    "negative size": (dict(meta={"input_h": "-4"}), "out of range"),
    "too few channels": (
        dict(tensors=lambda t: {"state.features": t["state.features"][:, :5]}),
        "channels",
    ),
    "integer features": (
        dict(tensors=lambda t: {"state.features": t["state.features"].to(torch.int32)}),
        "not floating point",
    ),
    "wrong task": (dict(meta={"task": "reconstruction"}), "task"),
    "bad alpha": (
        dict(tensors=lambda t: {**t, "alpha": torch.zeros(1, 2, 2, dtype=torch.uint8)}),
        "alpha",
    ),
    "extra tensor": (dict(tensors=lambda t: {**t, "state.other": torch.zeros(3)}), "holds"),
}


@pytest.mark.parametrize("case", sorted(BLOBS))
def test_crafted_feature_blob_is_refused(tmp_path, files, case, capsys):
    kw, needle = BLOBS[case]
    blob = _blob_variant(files, tmp_path, **kw)
    out = tmp_path / "o.png"
    code, err = call(
        decode.main,
        ["--checkpoint", str(files["ckpt"]), "--input", str(blob), "--scale", "2"]
        + ["--output", str(out)],
        capsys,
    )
    assert_one_line_error(code, err, needle)
    assert not out.exists()


# ---------------------------------------------------------------------------- numbers


@pytest.mark.parametrize("value", ["nan", "-2", "inf", "abc"])
def test_cmsr_numbers_that_are_not_numbers(tmp_path, files, value, capsys):
    code, err = call(
        cmsr.main,
        ["--checkpoint", str(files["ckpt"]), "--data", str(files["dir"]), "--scale", "2"]
        + ["--out", str(tmp_path / "t.yaml"), "--trained-scale", value],
        capsys,
    )
    assert_one_line_error(code, err, "--trained-scale")
    assert not (tmp_path / "t.yaml").exists()


# ---------------------------------------------------------------------------- training


def _tiny_train(run_dir: Path, files: dict, **data) -> dict:
    return {
        "kind": "sr",
        "run_dir": str(run_dir),
        "seed": 0,
        "device": "cpu",
        "model": {
            "name": "gblsr_asr",
            "args": {
                "encoder": "rdn",
                "encoder_cfg": {
                    "num_features": 4,
                    "growth_rate": 4,
                    "num_rdbs": 1,
                    "num_layers_per_rdb": 1,
                },
                "decoder_cfg": {"p_max": 2},
            },
        },
        "data": {
            "image_dirs": [str(files["dir"])],
            "repeat": 2,
            "inp_size": 4,
            "sample_q": 8,
            "num_workers": 0,
            **data,
        },
        "val": {"datasets": []},
        "train": {"batch_size": 2, "epochs": 1, "max_steps": 1},
        "checkpoint": {"every_steps": 100, "keep_last": 1},
        "log": {"every_steps": 1, "progress": False, "tensorboard": False},
    }


TRAIN_MISTAKES = {
    "empty data folder": ({"data": "empty"}, "no images"),
    "missing data folder": ({"data": "missing"}, "not found"),
    "batch larger than the data": ({"set": ["train.batch_size=64"]}, "fewer than one batch"),
    "unknown model": ({"set": ["model.name=nosuch"]}, "unknown model"),
    "bad yaml type": ({"set": ["train.batch_size=abc"]}, "batch_size"),
    "nan epochs": ({"set": ["train.epochs=.nan"]}, "epochs"),
    "data folders a number": ({"set": ["data.image_dirs=5"]}, "data.image_dirs"),
    "zero width": ({"set": ["model.args.encoder_cfg.num_features=0"]}, "empty layer"),
    "nan width": ({"set": ["model.args.encoder_cfg.num_features=.nan"]}, "not a usable number"),
}


@pytest.mark.parametrize("case", sorted(TRAIN_MISTAKES))
def test_failed_training_start_leaves_nothing_and_the_fixed_rerun_needs_no_overwrite(
    tmp_path, files, case, capsys
):
    mistake, needle = TRAIN_MISTAKES[case]
    (tmp_path / "empty").mkdir()
    run_dir = tmp_path / "run"
    cfg = _tiny_train(run_dir, files)
    if "data" in mistake:
        cfg["data"]["image_dirs"] = [str(tmp_path / mistake["data"])]
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(cfg))
    code, err = call(
        train.main,
        ["--config", str(tmp_path / "bad.yaml")]
        + [a for s in mistake.get("set", []) for a in ("--set", s)],
        capsys,
    )
    assert_one_line_error(code, err, needle)
    assert not run_dir.exists()
    if case != "nan epochs":  # one full (1-step) rerun is enough to show it
        return
    cfg["data"]["image_dirs"] = [str(files["dir"])]
    (tmp_path / "good.yaml").write_text(yaml.safe_dump(cfg))
    code, err = call(train.main, ["--config", str(tmp_path / "good.yaml")], capsys)
    assert code == 0, err
    assert (run_dir / "model.safetensors").is_file()


def test_failure_in_a_folder_with_an_earlier_run_deletes_nothing(tmp_path, files, capsys):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "run.json").write_text('{"status": "completed"}')
    (run_dir / "notes.txt").write_text("mine")
    cfg = _tiny_train(run_dir, files)
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    code, err = call(train.main, ["--config", str(tmp_path / "c.yaml")], capsys)
    assert_one_line_error(code, err, "already holds a training run")
    assert sorted(p.name for p in run_dir.iterdir()) == ["notes.txt", "run.json"]


def test_failed_native_experiment_start_leaves_nothing(tmp_path, capsys):
    from test_train_native import tiny_experiment

    (tmp_path / "empty").mkdir()
    cfg = tiny_experiment(tmp_path / "runs")
    cfg["arms"], cfg["seeds"] = cfg["arms"][:1], [0]
    cfg["base"]["data"]["image_dirs"] = [str(tmp_path / "empty")]
    (tmp_path / "e.yaml").write_text(yaml.safe_dump(cfg))
    code, err = call(train.main, ["--config", str(tmp_path / "e.yaml")], capsys)
    assert code == 2 and "Traceback" not in err, err
    assert "no images" in err.strip().splitlines()[-1]  # after the run's "=== ... ===" header
    assert not (tmp_path / "runs").exists()


class _ItemProbe(torch.nn.Module):
    """A constructor that computes with a tensor (cannot run on the meta device)."""

    def __init__(self, width: int = 4):
        super().__init__()
        self.rate = float(torch.linspace(0, 1, 3)[1].item())
        self.lin = torch.nn.Linear(width, width)

    def get_config(self) -> dict:
        return {"width": self.lin.in_features}

    @classmethod
    def from_config(cls, cfg: dict):
        return cls(**cfg)


def test_constructors_that_cannot_run_on_meta_still_load_and_are_still_bounded(tmp_path):
    from gblsr.registry import register

    register("model", "_hardening_item_probe")(_ItemProbe)
    m = _ItemProbe()
    p = gblsr.save_model(m, tmp_path / "m.safetensors")
    assert torch.equal(gblsr.load_model(p).lin.weight, m.lin.weight)
    with safe_open(str(p), "pt") as f:
        meta, sd = dict(f.metadata()), {k: f.get_tensor(k) for k in f.keys()}
    big = tmp_path / "big.safetensors"
    save_file(sd, str(big), metadata={**meta, "config": json.dumps({"width": 100000})})
    # Stopped when the 40 GB weight registers (before it is filled), or when the allocator
    # refuses it outright: either way one line, and no memory touched.
    with pytest.raises(CheckpointError, match="larger model than the weights"):
        gblsr.load_model(big)
