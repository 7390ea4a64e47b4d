"""Training data, batch order, state files and schedules (fast unit tests)."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch

from gblsr.data.resize import imresize
from gblsr.data.training_data import (
    BUILTIN_SAMPLES,
    DataConfig,
    ImageSource,
    PatchCropDataset,
    ResumableBatchSampler,
    SRImplicitDownsampled,
    build_datasets,
    builtin_samples_dir,
    resolve_image_dir,
)
from gblsr.errors import UserInputError
from gblsr.training.monitor import CSVLog
from gblsr.training.sr import ScheduleSpec, apply_overrides, lr_multiplier, sr_config_from_dict
from gblsr.training.state import (
    CheckpointManager,
    capture_rng_state,
    decode_state,
    encode_state,
    load_state_file,
    restore_rng_state,
    save_state_file,
)


@pytest.fixture(scope="module")
def samples() -> ImageSource:
    return ImageSource.from_dirs([BUILTIN_SAMPLES], cache="memory")


def test_builtin_samples_are_shipped():
    d = builtin_samples_dir()
    pngs = sorted(d.glob("*.png"))
    assert 5 <= len(pngs) <= 8
    assert sum(p.stat().st_size for p in pngs) < 1.5e6
    assert (d / "README.md").is_file()
    assert resolve_image_dir(BUILTIN_SAMPLES) == d
    with pytest.raises(UserInputError):
        resolve_image_dir("builtin:nothing")


def test_sr_sample_shapes_cells_and_determinism(samples):
    ds = SRImplicitDownsampled(
        samples, inp_size=16, scale_min=1.0, scale_max=4.0, sample_q=128, repeat=3, seed=5
    )
    assert len(ds) == 3 * len(samples)
    a, b = ds[(2, 7)], ds[(2, 7)]
    assert a["inp"].shape == (3, 16, 16)
    for k in ("coord", "cell", "gt"):
        assert a[k].shape[0] == 128
        assert torch.equal(a[k], b[k])
    assert a["coord"].abs().max() < 1
    assert 0 <= float(a["gt"].min()) and float(a["gt"].max()) <= 1
    # The cell is 2 / (HR crop size), the same for every query of a sample.
    h_cells = 2.0 / a["cell"][:, 0]
    assert torch.allclose(h_cells, h_cells[0].expand_as(h_cells))
    assert 16 <= round(float(h_cells[0])) <= 64
    # Other epochs and other seeds give other samples.
    assert not torch.equal(ds[(3, 7)]["gt"], a["gt"])
    other = SRImplicitDownsampled(samples, inp_size=16, sample_q=128, repeat=3, seed=6)
    assert not torch.equal(other[(2, 7)]["gt"], a["gt"])


@pytest.mark.parametrize("kernel", ["matlab", "pil"])
def test_sr_sample_lr_is_the_bicubic_of_the_hr_crop(samples, kernel):
    from gblsr.data.resize import pil_bicubic

    ds = SRImplicitDownsampled(
        samples,
        inp_size=12,
        scale_min=2.5,
        scale_max=2.5,
        sample_q=None,
        augment=True,
        lr_kernel=kernel,
        seed=1,
    )
    s = ds[(0, 3)]
    n = 30  # round(12 * 2.5)
    assert s["gt"].shape == (n * n, 3)
    hr = (s["gt"].t().reshape(3, n, n) * 255).round().to(torch.uint8)
    # All pixels in raster order, on LIIF's cell-centre grid.
    axis = -1 + 1 / n + 2 / n * torch.arange(n)
    assert torch.allclose(s["coord"][:n, 1], axis, atol=1e-6)
    lr = imresize(hr, size=(12, 12)) if kernel == "matlab" else pil_bicubic(hr, size=(12, 12))
    assert torch.equal((s["inp"] * 255).round().to(torch.uint8), lr)


def test_sr_sample_validation(samples):
    with pytest.raises(UserInputError):
        SRImplicitDownsampled(samples, inp_size=8, sample_q=100)  # > 8 * 8 pixels at x1
    with pytest.raises(UserInputError):
        SRImplicitDownsampled(samples, scale_min=3, scale_max=2)
    with pytest.raises(UserInputError):
        SRImplicitDownsampled(samples, lr_kernel="lanczos")


def test_batch_sampler_resumes_and_splits_global_batches():
    full = ResumableBatchSampler(50, 8, seed=3, total_steps=20)
    seq = list(full)
    assert len(seq) == 20 and all(len(b) == 8 for b in seq)
    assert full.steps_per_epoch == 6  # 50 // 8, the tail is dropped
    # Each epoch is a permutation without repeats; epochs differ.
    e0 = [i for b in seq[:6] for _, i in b]
    e1 = [i for b in seq[6:12] for _, i in b]
    assert len(set(e0)) == 48 and e0 != e1
    assert all(e == 1 for b in seq[6:12] for e, _ in b)
    # Starting at step 9 continues the same sequence.
    assert list(ResumableBatchSampler(50, 8, seed=3, start_step=9, total_steps=20)) == seq[9:]
    # Two ranks together see exactly the global batch.
    r0 = list(ResumableBatchSampler(50, 8, seed=3, rank=0, world_size=2, total_steps=20))
    r1 = list(ResumableBatchSampler(50, 8, seed=3, rank=1, world_size=2, total_steps=20))
    assert [a + b for a, b in zip(r0, r1)] == seq
    assert list(ResumableBatchSampler(50, 8, seed=4, total_steps=20)) != seq
    with pytest.raises(UserInputError):
        ResumableBatchSampler(50, 8, world_size=3)
    with pytest.raises(UserInputError):
        ResumableBatchSampler(5, 8)


def test_patch_crops_differ_across_epochs_and_seeds():
    cfg = DataConfig(image_dirs=(BUILTIN_SAMPLES,), image_size=64, val_fraction=0.25)
    train, val = build_datasets(cfg, run_seed=0)
    assert len(train) == 6 and len(val) == 2
    x0 = train[(0, 1)][0]
    assert x0.shape == (3, 64, 64)
    assert torch.equal(x0, train[(0, 1)][0])
    assert not torch.equal(x0, train[(1, 1)][0])
    train_s1, _ = build_datasets(cfg, run_seed=1)
    assert not torch.equal(x0, train_s1[(0, 1)][0])
    # Validation crops are centre crops, the same every time.
    assert torch.equal(val[(0, 0)][0], val[(5, 0)][0])
    # The split depends on data.seed only (every run of an experiment shares it).
    assert [p for _, p in val.items] == [p for _, p in build_datasets(cfg, run_seed=1)[1].items]


def test_small_images_are_upscaled_and_varres_keeps_size(tmp_path):
    from _helpers import write_png

    write_png(tmp_path / "a.png", 40, 70)
    write_png(tmp_path / "b.png", 90, 60, seed=1)
    ds = PatchCropDataset([("x", sorted(tmp_path.glob("*.png")))], 64, train=True)
    assert ds[0][0].shape == (3, 64, 64)
    assert ds[(0, 1)][3]["original_h"] == 90
    whole = PatchCropDataset([("x", sorted(tmp_path.glob("*.png")))], None, train=False)
    assert whole[0][0].shape == (3, 40, 70)


def test_data_config_errors():
    with pytest.raises(UserInputError):
        DataConfig(resize_policy="stretch")
    with pytest.raises(UserInputError):
        build_datasets(DataConfig())  # no folder at all
    with pytest.raises(UserInputError):
        build_datasets(DataConfig(image_dirs=("/nonexistent/folder",)))


# --------------------------------------------------------------------------- state files


def test_optimizer_state_roundtrip(tmp_path):
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 2))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, betas=(0.8, 0.99))
    for _ in range(3):
        opt.zero_grad()
        model(torch.randn(5, 3)).square().mean().backward()
        opt.step()
    state = {
        "optimizer": opt.state_dict(),
        "nested": {"t": (1, 2.5, None), 3: "x"},
        "inf": float("inf"),
    }
    save_state_file(tmp_path / "s.safetensors", state)
    back = load_state_file(tmp_path / "s.safetensors")
    assert back["nested"] == {"t": (1, 2.5, None), 3: "x"} and back["inf"] == float("inf")
    opt2 = torch.optim.Adam(model.parameters(), lr=1.0)
    opt2.load_state_dict(back["optimizer"])
    a, b = opt.state_dict(), opt2.state_dict()
    assert a["param_groups"][0]["betas"] == tuple(b["param_groups"][0]["betas"])
    for k, v in a["state"].items():
        for name, t in v.items():
            assert torch.equal(t, b["state"][k][name])
    tensors: dict = {}
    assert (
        decode_state(encode_state([np.arange(3, dtype=np.uint32)], tensors), tensors)[0].dtype
        == np.uint32
    )


def test_rng_state_roundtrip(tmp_path):
    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    st = capture_rng_state()
    save_state_file(tmp_path / "rng.safetensors", {"rng": st})
    expect = (random.random(), float(np.random.rand()), float(torch.rand(1)))
    restore_rng_state(load_state_file(tmp_path / "rng.safetensors")["rng"])
    assert (random.random(), float(np.random.rand()), float(torch.rand(1))) == expect


def test_checkpoint_pointer_survives_a_crash_mid_write(tmp_path, monkeypatch):
    import gblsr
    from gblsr.training import state as state_mod

    model = gblsr.create_model(
        "gblsr_asr",
        encoder_cfg=dict(num_features=4, growth_rate=4, num_rdbs=1, num_layers_per_rdb=1),
    )
    mgr = CheckpointManager(tmp_path, keep_last=2)
    for step in (1, 2, 3):
        mgr.save(step, model, {"x": torch.tensor([step])})
    assert mgr.latest()[0] == 3
    assert sorted(p.name for p in mgr.dir.glob("step-*.safetensors")) == [
        "step-00000002.safetensors",
        "step-00000002.state.safetensors",
        "step-00000003.safetensors",
        "step-00000003.state.safetensors",
    ]

    def boom(*a, **k):
        raise KeyboardInterrupt("killed while writing")

    monkeypatch.setattr(state_mod, "save_state_file", boom)
    with pytest.raises(KeyboardInterrupt):
        mgr.save(4, model, {"x": torch.tensor([4])})
    step, sd, st = mgr.load_latest()
    assert step == 3 and int(st["x"]) == 3
    assert json.loads((mgr.dir / "latest.json").read_text())["step"] == 3
    assert not list(mgr.dir.glob(".*.tmp"))


def test_csv_log_drops_rows_after_the_resumed_step(tmp_path):
    log = CSVLog(tmp_path / "l.csv", ["step", "loss"], None)
    for s in range(1, 6):
        log.write({"step": s, "loss": 1.0 / s})
    log.close()
    log = CSVLog(tmp_path / "l.csv", ["step", "loss"], 3)
    log.write({"step": 4, "loss": 9.0})
    log.close()
    rows = (tmp_path / "l.csv").read_text().split()
    assert rows[0] == "step,loss" and [r.split(",")[0] for r in rows[1:]] == ["1", "2", "3", "4"]
    assert rows[-1] == "4,9.0"


# --------------------------------------------------------------------------- config


def test_multistep_schedule_follows_liif():
    s = ScheduleSpec(name="multistep", milestones=[2, 4], gamma=0.5)
    spe = 10
    # LIIF steps MultiStepLR after each epoch: epochs 0-1 full, 2-3 half, 4+ quarter.
    assert [lr_multiplier(s, e * spe, spe, 100) for e in range(6)] == [1, 1, 0.5, 0.5, 0.25, 0.25]
    assert lr_multiplier(s, 19, spe, 100) == 1 and lr_multiplier(s, 20, spe, 100) == 0.5
    c = ScheduleSpec(name="cosine", min_factor=0.1, warmup_steps=4)
    assert lr_multiplier(c, 0, spe, 100) == pytest.approx(0.25)
    assert lr_multiplier(c, 100, spe, 100) == pytest.approx(0.1)


def test_sr_config_validation_and_overrides():
    base = {"kind": "sr", "data": {"image_dirs": [BUILTIN_SAMPLES]}}
    cfg = sr_config_from_dict(base)
    assert cfg.train.batch_size == 16 and cfg.data.sample_q == 2304 and cfg.optim.lr == 1e-4
    assert cfg.schedule.milestones == [200, 400, 600, 800] and cfg.train.loss == "l1"
    with pytest.raises(UserInputError, match="unknown key"):
        sr_config_from_dict({**base, "train": {"batchsize": 4}})
    with pytest.raises(UserInputError):
        sr_config_from_dict({**base, "train": {"loss": "huber"}})
    d = apply_overrides(base, ["train.epochs=3", "optim.lr=2e-4", "val.scales=[2, 3]"])
    cfg = sr_config_from_dict(d)
    assert cfg.train.epochs == 3 and cfg.optim.lr == 2e-4 and cfg.val.scales == [2, 3]
