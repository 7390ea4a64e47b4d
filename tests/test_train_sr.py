"""The arbitrary-scale training recipe end to end on tiny settings (in process)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

import gblsr
from gblsr.cli.train import main as train_main
from gblsr.training import TrainingDivergedError, load_sr_config, sr_config_from_dict, train_sr
from gblsr.training.config import expand_run_configs, load_config

REPO = Path(__file__).resolve().parents[1]
TINY_MODEL = {
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
}


@pytest.fixture(autouse=True)
def one_thread():
    # Tiny tensors: a second thread only adds synchronisation (and stalls on a busy machine).
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def tiny_sr(run_dir: Path, **sections) -> dict:
    d = {
        "kind": "sr",
        "run_dir": str(run_dir),
        "seed": 0,
        "device": "cpu",
        "model": TINY_MODEL,
        "data": {
            "image_dirs": ["builtin:samples"],
            "repeat": 2,
            "inp_size": 12,
            "sample_q": 64,
            "num_workers": 0,
            "lr_kernel": "matlab",
        },
        "val": {"datasets": [], "scales": [2]},
        "train": {"batch_size": 4, "epochs": 2},
        "optim": {"lr": 1e-3},
        "schedule": {"name": "multistep", "milestones": [1], "gamma": 0.5},
        "checkpoint": {"every_steps": 2, "keep_last": 2},
        "log": {"every_steps": 1, "progress": False, "tensorboard": False},
    }
    for k, v in sections.items():
        d[k] = {**d.get(k, {}), **v} if isinstance(v, dict) else v
    return d


def test_sr_training_writes_a_loadable_checkpoint(tmp_path, capsys):
    cfg = tiny_sr(
        tmp_path / "run",
        val={"datasets": ["builtin:samples"], "scales": [2], "max_images": 1, "every_epochs": 2},
    )
    import yaml

    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    assert train_main(["--config", str(tmp_path / "c.yaml")]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    final = Path(out[-1])
    assert final == tmp_path / "run" / "model.safetensors" and final.is_file()
    run = tmp_path / "run"
    info = json.loads((run / "run.json").read_text())
    assert info["status"] == "completed" and info["step"] == 8  # 8 images x 2 / 4 x 2 epochs
    assert "psnr_samples_x2" in info["final_val"] or any(
        k.startswith("psnr_") for k in info["final_val"]
    )
    assert "bicubic_val" in info
    log = (run / "train_log.csv").read_text().splitlines()
    assert log[0].startswith("step,epoch,lr,loss") and len(log) == 9
    lrs = [float(r.split(",")[2]) for r in log[1:]]
    assert lrs[:4] == [1e-3] * 4 and lrs[4:] == [5e-4] * 4  # halved after epoch 1
    assert (run / "val_log.csv").is_file() and (run / "train_config.yaml").is_file()
    assert (run / "model-best.safetensors").is_file()
    model = gblsr.load_model(final)
    assert model.get_config()["decoder_cfg"]["p_max"] == 3
    sr = model.predict_full(torch.rand(1, 3, 10, 10), 25, 25)
    assert sr.shape == (1, 3, 25, 25)
    # Checkpoints also load on their own.
    ckpts = sorted((run / "checkpoints").glob("step-*[0-9].safetensors"))
    assert [p.name for p in ckpts] == ["step-00000006.safetensors", "step-00000008.safetensors"]
    gblsr.load_model(ckpts[0])


def test_resume_of_a_finished_run_only_reports(tmp_path, capsys):
    cfg = sr_config_from_dict(tiny_sr(tmp_path / "run", train={"epochs": 1}))
    first = train_sr(cfg)
    mtime = Path(first["final_checkpoint"]).stat().st_mtime_ns
    from gblsr.training import run

    assert run(resume=tmp_path / "run") == [str(first["final_checkpoint"])]
    assert Path(first["final_checkpoint"]).stat().st_mtime_ns == mtime


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch, capsys):
    from gblsr.training import sr as sr_mod

    real = sr_mod.pointwise_loss
    calls = {"n": 0}

    def flaky(pred, gt, name, eps):
        calls["n"] += 1
        loss = real(pred, gt, name, eps)
        return loss * math.nan if calls["n"] == 5 else loss

    monkeypatch.setattr(sr_mod, "pointwise_loss", flaky)
    run = tmp_path / "run"
    import yaml

    (tmp_path / "c.yaml").write_text(yaml.safe_dump(tiny_sr(run)))
    assert train_main(["--config", str(tmp_path / "c.yaml")]) == 3
    err = capsys.readouterr().err
    assert "nan at step 5" in err and "step-00000004.safetensors" in err
    assert not (run / "model.safetensors").exists()
    status = json.loads((run / "run.json").read_text())
    assert status["status"] == "diverged" and status["step"] == 4
    gblsr.load_model(run / "checkpoints" / "step-00000004.safetensors")
    with pytest.raises(TrainingDivergedError):
        calls["n"] = 0
        train_sr(sr_config_from_dict(tiny_sr(tmp_path / "run2")))


def test_tensorboard_is_optional(tmp_path):
    from gblsr.training.monitor import has_tensorboard

    cfg = sr_config_from_dict(
        tiny_sr(tmp_path / "run", train={"epochs": 1}, log={"tensorboard": "auto"})
    )
    train_sr(cfg)
    events = list((tmp_path / "run").rglob("events.out.tfevents*"))
    assert bool(events) == has_tensorboard()


def test_shipped_configs_parse():
    for name in ("quickstart", "asr_rdn_div2k", "asr_edsr_baseline_div2k", "asr_small"):
        cfg = load_sr_config(REPO / "configs" / f"{name}.yaml")
        model = gblsr.create_model(cfg.model.name, **cfg.model.args)
        assert hasattr(model, "predict_full")
    rdn = load_sr_config(REPO / "configs" / "asr_rdn_div2k.yaml")
    assert (rdn.train.epochs, rdn.train.batch_size, rdn.data.sample_q, rdn.data.inp_size) == (
        1000,
        16,
        2304,
        48,
    )
    assert rdn.optim.lr == 1e-4 and rdn.schedule.milestones == [200, 400, 600, 800]
    runs = expand_run_configs(load_config(REPO / "configs" / "example.yaml"))
    assert [r.bandwidth_mode for r in runs] == ["global_scalar"]
    assert runs[0].data.image_dirs


def test_bf16_autocast_runs_on_cpu(tmp_path):
    cfg = sr_config_from_dict(
        tiny_sr(tmp_path / "run", train={"epochs": 1, "max_steps": 2, "amp": "bf16"})
    )
    out = train_sr(cfg)
    model = gblsr.load_model(out["final_checkpoint"])
    assert all(p.dtype == torch.float32 for p in model.parameters())


def test_a_fresh_start_never_mixes_with_an_earlier_run(tmp_path, capsys):
    import yaml

    cfg = tiny_sr(tmp_path / "run", train={"epochs": 1, "max_steps": 2})
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "notes.txt").write_text("mine")
    assert train_main(["--config", str(tmp_path / "c.yaml")]) == 0
    assert train_main(["--config", str(tmp_path / "c.yaml")]) == 2
    assert "--resume" in capsys.readouterr().err
    assert train_main(["--config", str(tmp_path / "c.yaml"), "--overwrite"]) == 0
    assert (tmp_path / "run" / "notes.txt").read_text() == "mine"  # only our files go
    ckpts = sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir())
    assert ckpts == ["latest.json", "step-00000002.safetensors", "step-00000002.state.safetensors"]


def test_model_init_starts_from_a_checkpoints_weights(tmp_path):
    from gblsr.runtime import set_seed
    from gblsr.training.sr import _build_model

    set_seed(3)
    donor = gblsr.create_model(TINY_MODEL["name"], **TINY_MODEL["args"])
    with torch.no_grad():
        for p in donor.parameters():
            p.add_(torch.randn_like(p))
    gblsr.save_model(donor, tmp_path / "donor.safetensors")

    cfg = sr_config_from_dict(
        tiny_sr(tmp_path / "run", model={**TINY_MODEL, "init": str(tmp_path / "donor.safetensors")})
    )
    model = _build_model(cfg)
    for (name, a), b in zip(model.state_dict().items(), donor.state_dict().values()):
        assert torch.equal(a, b), name
    # Without init the same seed gives other weights: the init is what made them equal.
    fresh = _build_model(sr_config_from_dict(tiny_sr(tmp_path / "run")))
    assert not torch.equal(next(fresh.parameters()), next(donor.parameters()))


def test_model_init_of_another_architecture_is_one_clear_error(tmp_path, capsys):
    import yaml

    other = gblsr.create_model("gblsr_asr", **{**TINY_MODEL["args"], "decoder_cfg": {"p_max": 4}})
    gblsr.save_model(other, tmp_path / "other.safetensors")
    cfg = tiny_sr(
        tmp_path / "run", model={**TINY_MODEL, "init": str(tmp_path / "other.safetensors")}
    )
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    assert train_main(["--config", str(tmp_path / "c.yaml")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "do not fit" in err[0] and "model.init" in err[0], err
    assert not (tmp_path / "run" / "model.safetensors").exists()
