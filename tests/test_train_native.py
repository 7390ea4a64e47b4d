"""Native experiments (reference RunConfig schema): every artifact, resume, the example config."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from _helpers import SHARED

import gblsr
from gblsr.cli.train import main as train_main

REPO = Path(__file__).resolve().parents[1]

ARTIFACTS = [
    "experiment.json",
    "rows.json",
    "aggregate.json",
    "report.md",
    "region_thresholds.json",
    "figures/recon_error.png",
    "figures/region_mask.png",
    "model.safetensors",
    "train_log.csv",
    "checkpoints/latest.json",
]


@pytest.fixture(autouse=True)
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def tiny_experiment(root: Path, **base) -> dict:
    return {
        "experiment_id": "tiny",
        "run_root": str(root),
        "base": {
            "total_steps": 4,
            "batch_size": 2,
            "lr": "1e-3",
            "log_every": 1,
            "val_every": 2,
            "num_val_images": 2,
            "num_val_curve_images": 1,
            "checkpoint_every": 2,
            "image_size": 32,
            "patch_size": 8,
            "d_feat": 8,
            "p_max": 4,
            "p_soft_hi": 4.0,
            "progress": False,
            "tensorboard": False,
            "device": "cpu",
            "data": {
                "image_dirs": ["builtin:samples"],
                "image_size": 32,
                "val_fraction": 0.25,
                "num_workers": 0,
                "augment": True,
            },
            **base,
        },
        "arms": [
            {
                "arm": "local_spectral",
                "slug": "scalar",
                "bandwidth_mode": "global_scalar",
                "loss_name": "charbonnier",
            },
            {
                "arm": "global_fourier_mlp",
                "slug": "gfm",
                "image_size": 32,
                "n_global_freq": 4,
                "decoder_hidden": 8,
                "decoder_layers": 1,
                "loss_name": "l1",
            },
        ],
        "seeds": [0, 1],
    }


def test_native_experiment_writes_every_artifact_and_resumes(tmp_path, capsys):
    cfg = tmp_path / "exp.yaml"
    cfg.write_text(yaml.safe_dump(tiny_experiment(tmp_path / "runs")))
    assert (
        train_main(["--config", str(cfg), "--only-seed", "0", "--set", "base.dump_locality=true"])
        == 0
    )
    printed = capsys.readouterr().out.strip().splitlines()
    root = tmp_path / "runs"
    assert printed == [
        str(root / "scalar__seed0" / "model.safetensors"),
        str(root / "gfm__seed0" / "model.safetensors"),
    ]
    for slug in ("scalar", "gfm"):
        run = root / f"{slug}__seed0"
        for name in ARTIFACTS + ["locality.npz"]:
            assert (run / name).is_file(), f"{slug}: {name} missing"
        exp = json.loads((run / "experiment.json").read_text())
        for key in (
            "experiment_id",
            "arm",
            "seed",
            "git_commit",
            "timestamp_utc",
            "n_params_trainable",
            "inference_ms_per_image",
            "config",
            "region_thresholds",
            "train_log",
            "train_curve",
            "aggregate",
            "adaptivity_final",
            "num_val_images",
            "locality_dump",
        ):
            assert key in exp
        assert [p["step"] for p in exp["train_curve"]] == [2, 4, 4]
        assert len(exp["train_log"]) == 4
        agg = json.loads((run / "aggregate.json").read_text())
        # No LPIPS weights offline: null, never a crash.
        assert agg["lpips"]["mean"] is None or isinstance(agg["lpips"]["mean"], float)
        assert agg["psnr"]["n"] == 2
        rows = json.loads((run / "rows.json").read_text())
        assert len(rows) == 2 and {"name", "path", "psnr", "psnr_edge"} <= set(rows[0])
        model = gblsr.load_model(run / "model.safetensors")
        assert model(torch.rand(1, 3, 32, 32))["recon"].shape == (1, 3, 32, 32)
    assert (root / "scalar__seed0" / "figures" / "bandwidth_order.png").is_file()
    assert not (root / "gfm__seed0" / "figures" / "bandwidth_order.png").exists()
    exp = json.loads((root / "scalar__seed0" / "experiment.json").read_text())
    assert exp["adaptivity_final"]["s_e"]["std"] == pytest.approx(0.0, abs=1e-6)  # one scalar
    assert (root / "summary.json").is_file() and (root / "experiment.yaml").is_file()

    # Resuming the experiment trains the runs not done yet (seed 1) and skips finished ones.
    before = (root / "scalar__seed0" / "experiment.json").stat().st_mtime_ns
    from gblsr.training import run

    finals = run(resume=root, only_arm="scalar")
    assert [Path(f).parent.name for f in finals] == ["scalar__seed0", "scalar__seed1"]
    assert (root / "scalar__seed0" / "experiment.json").stat().st_mtime_ns == before
    assert (root / "scalar__seed1" / "experiment.json").is_file()
    assert not (root / "gfm__seed1").exists()


def test_native_single_run_resumes_from_its_checkpoint(tmp_path):
    from gblsr.training import expand_run_configs, train_one

    d = tiny_experiment(tmp_path / "runs", total_steps=6, val_every=0)
    d["arms"], d["seeds"] = d["arms"][:1], [0]
    (rc,) = expand_run_configs(d)
    ref = train_one(rc)
    run = Path(rc.run_dir)
    # Pretend the run stopped after step 4: drop the final files and the step-6 checkpoint.
    for p in [
        run / "experiment.json",
        run / "model.safetensors",
        *run.glob("checkpoints/step-00000006*"),
    ]:
        p.unlink()
    (run / "checkpoints" / "latest.json").unlink()
    out = train_one(rc, resume=True)
    assert out["resumed_from_step"] == 4
    assert [r["L_total"] for r in out["train_log"]] == pytest.approx(
        [r["L_total"] for r in ref["train_log"]], rel=1e-6
    )


@pytest.mark.slow
def test_example_config_runs_on_sunhays80(tmp_path, capsys):
    data = SHARED / "data" / "train" / "SunHays80"
    if not data.is_dir():
        pytest.skip("../shared/data/train/SunHays80 is not present")
    # The shipped example, shortened: same schema and model family, fewer and smaller steps.
    args = [
        "--config",
        str(REPO / "configs" / "example.yaml"),
        "--run-dir",
        str(tmp_path / "ex"),
        "--set",
        f"base.data.image_dirs=[{data}]",
        "--set",
        "base.total_steps=2",
        "--set",
        "base.batch_size=2",
        "--set",
        "base.image_size=64",
        "--set",
        "base.data.image_size=64",
        "--set",
        "base.d_feat=16",
        "--set",
        "base.num_val_images=2",
        "--set",
        "base.data.num_workers=0",
        "--set",
        "base.progress=false",
        "--set",
        "base.device=cpu",
    ]
    assert train_main(args) == 0
    run = tmp_path / "ex" / "gb_lsr_scalar__seed0"
    assert capsys.readouterr().out.strip().splitlines()[-1] == str(run / "model.safetensors")
    for name in ARTIFACTS + ["figures/bandwidth_order.png"]:
        assert (run / name).is_file(), name
    rows = json.loads((run / "rows.json").read_text())
    assert {r["source"] for r in rows} == {"SunHays80"}
