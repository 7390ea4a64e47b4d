"""``data.scale_per_batch``: one scale per global batch, deterministic, resumable, DDP-consistent;
the default (one scale per sample) is unchanged."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from gblsr.data.training_data import (
    BUILTIN_SAMPLES,
    ImageSource,
    ResumableBatchSampler,
    SRImplicitDownsampled,
)
from gblsr.errors import UserInputError
from gblsr.training import load_sr_config, sr_config_from_dict, train_sr

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def samples() -> ImageSource:
    return ImageSource.from_dirs([BUILTIN_SAMPLES], cache="memory")


def _hr_side(item: dict) -> float:
    # cell = 2 / HR side, the same on both axes of a square crop
    return 2.0 / float(item["cell"][0, 0])


def test_a_batch_shares_one_scale_and_batches_differ(samples):
    kw = dict(inp_size=12, scale_min=1.0, scale_max=4.0, sample_q=None, repeat=4, seed=7)
    ds = SRImplicitDownsampled(samples, scale_per_batch=True, **kw)
    sampler = ResumableBatchSampler(len(ds), 4, seed=7, total_steps=6, step_in_key=True)
    sides = []
    for step, keys in enumerate(sampler):
        assert all(len(k) == 3 and k[2] == step for k in keys)
        items = [ds[k] for k in keys]
        per_batch = {round(_hr_side(it)) for it in items}
        assert len(per_batch) == 1, f"step {step}: HR sides {per_batch}"
        # whole crops of one size collate
        batch = torch.utils.data.default_collate(items)
        assert batch["gt"].shape[0] == 4 and batch["inp"].shape == (4, 3, 12, 12)
        sides.append(per_batch.pop())
    assert len(set(sides)) >= 3, sides  # different batches draw different scales
    # Per sample (the default), the same batch mixes crop sizes.
    plain = SRImplicitDownsampled(samples, **{**kw, "sample_q": 16})
    mixed = {round(_hr_side(plain[k[:2]])) for k in sampler.global_batch(0)}
    assert len(mixed) > 1


def test_ranks_share_the_global_batch_scale(samples):
    ds = SRImplicitDownsampled(
        samples, inp_size=12, scale_min=1.0, scale_max=4.0, sample_q=8, repeat=4, seed=1,
        scale_per_batch=True,
    )  # fmt: skip
    one = ResumableBatchSampler(len(ds), 4, seed=1, total_steps=5, step_in_key=True)
    ranks = [
        ResumableBatchSampler(
            len(ds), 4, seed=1, total_steps=5, rank=r, world_size=2, step_in_key=True
        )
        for r in range(2)
    ]
    for step, (a, b) in enumerate(zip(*ranks)):
        assert a + b == one.global_batch(step)
        assert len({round(_hr_side(ds[k])) for k in a + b}) == 1
    # A resumed sampler yields the same keys from its start step.
    assert list(ResumableBatchSampler(len(ds), 4, seed=1, start_step=3, total_steps=5,
                                      step_in_key=True)) == [one.global_batch(3),
                                                             one.global_batch(4)]  # fmt: skip


def test_fixed_scale_gives_the_per_sample_items_exactly(samples):
    kw = dict(inp_size=10, scale_min=3.0, scale_max=3.0, sample_q=None, repeat=2, seed=2)
    a = SRImplicitDownsampled(samples, **kw)
    b = SRImplicitDownsampled(samples, scale_per_batch=True, **kw)
    for key in [(0, 0), (1, 5), (4, 3)]:
        x, y = a[key], b[(*key, 11)]
        assert all(torch.equal(x[n], y[n]) for n in ("inp", "coord", "cell", "gt"))
    with pytest.raises(UserInputError, match="step_in_key"):
        b[(0, 1)]


def test_default_samples_are_unchanged():
    """Golden: the items of three default batches, hashed exactly so by the code before the
    option existed (commit 6e90858), which gave the same digest."""
    src = ImageSource.from_dirs([BUILTIN_SAMPLES], cache="memory")
    ds = SRImplicitDownsampled(
        src, inp_size=12, scale_min=1.0, scale_max=4.0, sample_q=64, repeat=2, seed=3
    )
    h = hashlib.sha256()
    for keys in ResumableBatchSampler(len(ds), 4, seed=3, total_steps=3):
        assert all(len(k) == 2 for k in keys)
        for k in keys:
            item = ds[k]
            for n in ("inp", "coord", "cell", "gt"):
                h.update(item[n].numpy().tobytes())
    assert h.hexdigest() == GOLDEN_DEFAULT


GOLDEN_DEFAULT = "9d23e785b4c481169958c99256b11a178e02ccdfc39e4ac3a585ee0891bce4d7"


def test_whole_crops_with_a_range_need_the_option():
    d = {
        "kind": "sr",
        "data": {"image_dirs": ["x"], "sample_q": None, "scale_min": 1, "scale_max": 4},
        "train": {"batch_size": 2},
    }
    with pytest.raises(UserInputError, match="scale_per_batch"):
        sr_config_from_dict(d)
    d["data"]["scale_per_batch"] = True
    assert sr_config_from_dict(d).data.scale_per_batch is True
    assert (
        sr_config_from_dict({"kind": "sr", "data": {"image_dirs": ["x"]}}).data.scale_per_batch
        is False
    )


def _tiny(run_dir: Path) -> dict:
    return {
        "kind": "sr",
        "run_dir": str(run_dir),
        "seed": 4,
        "device": "cpu",
        "model": {
            "name": "gblsr_asr",
            "args": {
                "encoder": "rdn",
                "encoder_cfg": {
                    "num_features": 8,
                    "growth_rate": 8,
                    "num_rdbs": 1,
                    "num_layers_per_rdb": 2,
                },
                "decoder_cfg": {"p_max": 3},
            },
        },
        "data": {
            "image_dirs": ["builtin:samples"],
            "repeat": 2,
            "inp_size": 8,
            "scale_min": 1.0,
            "scale_max": 3.0,
            "sample_q": None,  # whole crops: they only collate under the option
            "scale_per_batch": True,
            "num_workers": 0,
        },
        "val": {"datasets": []},
        "train": {"batch_size": 4, "epochs": 2},
        "optim": {"lr": 1e-3},
        "schedule": {"name": "multistep", "milestones": [1], "gamma": 0.5},
        "checkpoint": {"every_steps": 2, "keep_last": 2},
        "log": {"every_steps": 1, "progress": False, "tensorboard": False},
    }


def test_a_crashed_run_resumes_to_the_uninterrupted_weights(tmp_path, monkeypatch):
    ref = train_sr(sr_config_from_dict(_tiny(tmp_path / "ref")))
    assert ref["step"] == 8

    from gblsr.training import sr as sr_mod

    real, calls = sr_mod.pointwise_loss, {"n": 0}

    def crash_at_step_6(*a):
        calls["n"] += 1
        if calls["n"] == 6:
            raise RuntimeError("simulated crash")
        return real(*a)

    monkeypatch.setattr(sr_mod, "pointwise_loss", crash_at_step_6)
    cfg = sr_config_from_dict(_tiny(tmp_path / "cut"))
    with pytest.raises(RuntimeError, match="simulated crash"):
        train_sr(cfg)
    assert not (tmp_path / "cut" / "model.safetensors").exists()
    monkeypatch.setattr(sr_mod, "pointwise_loss", real)
    out = train_sr(cfg, resume=True)
    assert out["resumed_from_step"] == 4 and out["step"] == 8
    a = load_file(tmp_path / "ref" / "model.safetensors")
    b = load_file(tmp_path / "cut" / "model.safetensors")
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize(
    "name, sets",
    [
        (
            "peers/gaussiansr_small_cpu.yaml",
            ["model.args.encoder_cfg={num_blocks: 1, num_features: 16}", "model.args.hidden=[16]",
             "model.args.hidden_dim=16", "data.inp_size=12", "data.sample_q=32"],
        ),
        (
            "continuoussr/continuoussr_cnn_cpu.yaml",
            ["model.args.encoder_cfg={base: edsr, base_cfg: {num_blocks: 1, num_features: 8}, "
             "num_feat: 64}", "data.inp_size=6", "data.scale_max=8.0"],
        ),
    ],
)  # fmt: skip
def test_shipped_configs_train_two_steps_with_one_scale_per_batch(
    tmp_path, monkeypatch, name, sets
):
    monkeypatch.chdir(REPO)
    common = [
        "train.batch_size=2",
        "train.max_steps=2",
        "val.datasets=[]",
        "data.image_dirs=[builtin:samples]",
        "log.progress=false",
        "log.tensorboard=false",
        "log.every_steps=1",
        "device=cpu",
        f"run_dir={tmp_path / 'run'}",
    ]
    cfg = load_sr_config(REPO / "configs" / name, [*sets, *common])
    assert cfg.data.scale_per_batch is True
    out = train_sr(cfg)
    assert out["status"] == "completed" and out["step"] == 2
    import csv

    with open(tmp_path / "run" / "train_log.csv") as f:
        losses = [float(r["loss"]) for r in csv.DictReader(f)]
    assert len(losses) == 2 and all(0 < v < 1 for v in losses)


def test_recipes_that_share_a_scale_say_so():
    for name in ("gaussiansr_edsr_baseline_div2k", "gaussiansr_small_cpu"):
        cfg = load_sr_config(REPO / "configs" / "peers" / f"{name}.yaml")
        assert cfg.data.scale_per_batch and cfg.model.args["per_sample_scale"] is False
    for name in ("continuoussr_hat_div2k", "continuoussr_swinir_div2k", "continuoussr_cnn_cpu"):
        cfg = load_sr_config(REPO / "configs" / "continuoussr" / f"{name}.yaml")
        assert cfg.data.scale_per_batch and cfg.data.sample_q is None
    hat = load_sr_config(REPO / "configs" / "continuoussr" / "continuoussr_hat_div2k.yaml")
    assert (hat.data.scale_min, hat.data.scale_max) == (4.0, 8.0)


DDP_CONFIG = """
kind: sr
seed: 5
device: cpu
model:
  name: gblsr_asr
  args:
    encoder_cfg: {num_features: 8, growth_rate: 8, num_rdbs: 1, num_layers_per_rdb: 2}
    decoder_cfg: {p_max: 3}
data:
  image_dirs: [builtin:samples]
  repeat: 4
  inp_size: 8
  scale_min: 1.0
  scale_max: 3.0
  sample_q: null
  scale_per_batch: true
  num_workers: 0
val: {datasets: []}
train: {batch_size: 4, epochs: 2, max_steps: 6}
optim: {lr: 1.0e-3}
checkpoint: {every_steps: 0}
log: {every_steps: 1, progress: false, tensorboard: false}
"""


@pytest.mark.slow
def test_two_gloo_processes_share_the_batch_scale(tmp_path):
    """Each process collates its half of the batch; only if both halves use the batch's scale
    do the losses equal one process's."""
    import csv
    import os
    import subprocess
    import sys

    import torch.distributed as dist

    if not dist.is_available() or not dist.is_gloo_available():
        pytest.skip("torch.distributed with gloo is not available")
    cfg = tmp_path / "ddp.yaml"
    cfg.write_text(DDP_CONFIG)
    env = dict(os.environ, OMP_NUM_THREADS="1", OMP_WAIT_POLICY="PASSIVE")
    env["PYTHONPATH"] = str(REPO / "src") + os.pathsep + env.get("PYTHONPATH", "")
    train = ["-m", "gblsr.cli.train", "--config", str(cfg), "--run-dir"]
    launch = ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    for cmd in ([*train, str(tmp_path / "one")], [*launch, *train, str(tmp_path / "two")]):
        done = subprocess.run(
            [sys.executable, *cmd], cwd=tmp_path, env=env, capture_output=True, text=True,
            timeout=300,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr[-3000:]
    losses = []
    for run in ("one", "two"):
        with open(tmp_path / run / "train_log.csv") as f:
            losses.append([float(r["loss"]) for r in csv.DictReader(f)])
    a, b = losses
    assert len(a) == len(b) == 6
    worst = max(abs(x - y) / abs(x) for x, y in zip(a, b))
    assert worst <= 1e-4, f"losses differ by {worst:.2e} (relative)"
