"""gblsr-study: config validation, the seam measure, the lead sentence, and the smoke study end
to end (interrupted mid-training, stopped after one method, resumed, reported)."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest
import torch
import yaml
from _helpers import REPO, SHARED

from gblsr.errors import UserInputError
from gblsr.study import (
    lead_summary,
    load_study_config,
    masked_psnr,
    run_study,
    seam_masks,
    study_config_from_dict,
)

SMOKE = REPO / "configs" / "study" / "smoke.yaml"
DATA = Path(os.environ.get("GBLSR_SHARED", SHARED))


def _minimal(**over) -> dict:
    d = {
        "name": "t",
        "encoder": {"name": "edsr", "args": {"num_blocks": 1}},
        "methods": ["liif"],
        "data": {"train_dirs": ["a"]},
        "eval": {"sets": ["b"]},
    }
    d.update(over)
    return d


@pytest.mark.parametrize(
    "over, msg",
    [
        ({"methodz": []}, "unknown top-level key(s): methodz"),
        ({"kind": "video"}, "kind must be 'sr' or 'native'"),
        ({"methods": []}, "'methods' must be a non-empty list"),
        ({"methods": ["liif", "liif"]}, "used twice"),
        ({"train": {"steps": 0}}, "train.steps must be >= 1"),
        ({"train": {"stepz": 3}}, "unknown key(s) in 'train': stepz"),
        ({"eval": {"sets": ["b"], "scales_out": [0.5]}}, "eval.scales_out: scales must be >= 1"),
        ({"eval": {"sets": []}}, "eval.sets must list one or more folders"),
        ({"optim": {"lr": "fast"}}, "optim.lr must be a number"),
        ({"reference": "lte"}, "reference 'lte' is not one of the methods"),
        ({"encoder": None}, "'encoder' must be a mapping with a name"),
        ({"kind": "native", "encoder": None, "methods": ["liif"]}, "native arm 'liif' unknown"),
    ],
)
def test_config_errors_are_one_line(over, msg):
    with pytest.raises(UserInputError) as e:
        study_config_from_dict(_minimal(**over))
    text = str(e.value)
    assert msg in text
    assert "\n" not in text


def test_cli_reports_a_bad_config_in_one_line(tmp_path, capsys):
    from gblsr.cli.study import main

    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(_minimal(train={"batch_size": -1})))
    assert main(["--config", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "gblsr-study: error: train.batch_size must be >= 1, got -1"


def test_shipped_configs_validate():
    from gblsr.registry import make
    from gblsr.study.trainer import _sr_config

    for name in ("smoke", "cpu_small", "gpu_paper", "native_cpu"):
        cfg = load_study_config(REPO / "configs" / "study" / f"{name}.yaml")
        assert cfg.methods and cfg.eval["sets"]
    # Every method of the SR studies builds from the study's arguments (shared encoder merged
    # under each method's own), so a wrong argument fails here, not days into a GPU run.
    built = {}
    for name in ("cpu_small", "gpu_paper"):
        cfg = load_study_config(REPO / "configs" / "study" / f"{name}.yaml")
        for m in cfg.methods:
            model_cfg = _sr_config(cfg, m)["model"]
            built[name, m.name] = make("model", model_cfg["name"], **model_cfg["args"])
    assert len(built) == 14
    assert built["cpu_small", "continuoussr"].get_config()["head_width"] == 0.25
    assert built["gpu_paper", "continuoussr"].conv1.weight.shape == (512, 256, 3, 3)


def test_report_names_the_commits_methods_ran_at():
    from gblsr.study.report import _commit_lines

    same = {"a": {"versions": {"git_commit": "abc123" * 5}}}
    assert _commit_lines("abc123" * 5, same) == []
    mixed = {
        "a": {"versions": {"git_commit": "abc123" * 5}},
        "b": {"versions": {"git_commit": "def456" * 5}},
        "c": {},
    }
    (line, _) = _commit_lines("def456" * 5, mixed)
    assert line == (
        "Methods trained and scored at commit `abc123abc123`: a; `def456def456`: b; "
        "not recorded (older records): c."
    )


def test_seam_masks_mark_pixels_beside_internal_borders():
    seam, inner = seam_masks(8, 8, patch=4, margin=0)
    rows = seam.any(dim=1)
    # Patches [0..3], [4..7]: rows 3 and 4 touch the internal border; so do columns 3 and 4.
    assert torch.equal(seam[:, 0], torch.tensor([0, 0, 0, 1, 1, 0, 0, 0], dtype=torch.bool))
    assert rows.all()  # every row has seam pixels at columns 3 and 4
    assert not (seam & inner).any() and (seam | inner).all()
    # A grid starting one pixel above the image (padding on top) puts the borders between
    # rows 2|3 and 6|7.
    seam_s, _ = seam_masks(8, 8, patch=4, top=1, left=1, margin=0)
    assert torch.equal(seam_s[:, 0], torch.tensor([0, 0, 1, 1, 0, 0, 1, 1], dtype=torch.bool))
    # The margin frame belongs to neither set.
    seam_m, inner_m = seam_masks(8, 8, patch=4, margin=2)
    assert not seam_m[:2].any() and not inner_m[:, -2:].any()


def test_masked_psnr_matches_the_mse_on_the_mask():
    target = torch.zeros(1, 3, 4, 4)
    pred = target.clone()
    pred[..., 0, :] = 0.1  # error only on the first row
    mask = torch.zeros(4, 4, dtype=torch.bool)
    mask[0] = True
    assert masked_psnr(pred, target, mask) == pytest.approx(20.0)  # mse 0.01
    mask2 = torch.zeros(4, 4, dtype=torch.bool)
    mask2[1:] = True
    assert masked_psnr(pred, target, mask2) is None  # no error there
    both = torch.ones(4, 4, dtype=torch.bool)
    assert masked_psnr(pred, target, both) == pytest.approx(10 * math.log10(1 / 0.0025))


def test_lead_summary_names_gaps_and_decode_times():
    cfg = study_config_from_dict(
        _minimal(
            methods=["gblsr_asr", "liif"], eval={"sets": ["b"], "scales_in": [2], "scales_out": [6]}
        )
    )
    rows = lambda a, b: [  # noqa: E731
        {"dataset": "Set5", "scale": 2, "psnr": a},
        {"dataset": "Set5", "scale": 6, "psnr": b},
    ]
    results = {
        "gblsr_asr": {"model": "gblsr_asr", "rows": rows(30.0, 25.5)},
        "liif": {"model": "liif", "rows": rows(30.25, 25.0)},
    }
    timing = {
        "methods": {"gblsr_asr": {"x4": {"decode_ms": 12.0}}, "liif": {"x4": {"decode_ms": 48.0}}}
    }
    (text,) = lead_summary(cfg, results, timing)
    assert "does not lead in PSNR in 1 of 2 cells" in text
    assert "Set5 x2: liif +0.25 dB" in text
    assert "gblsr_asr 12.0 ms" in text and "liif 48.0 ms" in text


# --------------------------------------------------------------------------- end to end


@pytest.fixture(scope="module")
def smoke_config(tmp_path_factory) -> Path:
    if not (DATA / "data" / "benchmark" / "Set5").is_dir():
        pytest.skip("../shared data is not present")
    d = yaml.safe_load(SMOKE.read_text())
    tmp = tmp_path_factory.mktemp("study")

    def fix(p: str) -> str:
        return str(DATA / p.split("shared/", 1)[1]) if "shared/" in p else p

    d["data"]["train_dirs"] = [fix(p) for p in d["data"]["train_dirs"]]
    d["eval"]["sets"] = [fix(p) for p in d["eval"]["sets"]]
    d["output"], d["runs"] = str(tmp / "report"), str(tmp / "runs")
    path = tmp / "smoke.yaml"
    path.write_text(yaml.safe_dump(d))
    return path


def test_smoke_study_interrupted_stopped_resumed_and_reported(smoke_config, monkeypatch, capsys):
    from gblsr.cli.study import main
    from gblsr.training import engine

    cfg = load_study_config(smoke_config)
    out = Path(cfg.output)

    # 1. Killed in the middle of the first method's training (after its step-6 checkpoint).
    original = engine.TrainLoop.save_checkpoint

    def save_then_die(self):
        path = original(self)
        if self.step == 6:
            raise KeyboardInterrupt
        return path

    monkeypatch.setattr(engine.TrainLoop, "save_checkpoint", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        run_study(cfg, progress=False)
    monkeypatch.setattr(engine.TrainLoop, "save_checkpoint", original)
    assert not (out / "methods" / "gblsr_asr.json").exists()
    assert "gblsr_asr: not run yet" in (out / "report.md").read_text()

    # 2. Continue, stopping after one method: the training resumed from step 6.
    s = run_study(load_study_config(smoke_config), stop_after=1, progress=False)
    assert s.stopped and s.status == {"gblsr_asr": "trained", "liif": "pending"}
    first = json.loads((out / "methods" / "gblsr_asr.json").read_text())
    assert first["resumed_from_step"] == 6 and first["train_steps"] == 12
    assert not (out / "timing.json").exists()
    mtime = (out / "methods" / "gblsr_asr.json").stat().st_mtime_ns

    # 3. The command finishes the study, skipping the finished method.
    capsys.readouterr()
    assert main(["--config", str(smoke_config), "--no-progress"]) == 0
    io = capsys.readouterr()
    assert "gblsr_asr: already done" in io.err and "[2/2] liif:" in io.err
    assert io.out.strip() == str(out / "report.md")
    assert (out / "methods" / "gblsr_asr.json").stat().st_mtime_ns == mtime

    res = json.loads((out / "results.json").read_text())
    assert set(res["methods"]) == {"gblsr_asr", "liif"} and not res["pending"]
    assert res["bicubic"]["rows"][0]["psnr"] > 30  # Set5 x2 bicubic, about 37 dB on 2 images
    for name in ("gblsr_asr", "liif"):
        m = res["methods"][name]
        assert [(r["dataset"], r["scale"]) for r in m["rows"]] == [
            ("Set5", 2),
            ("Set5", 4),
            ("Set5", 12),
        ]
        assert all(r["n_images"] == 2 and r["psnr"] > 0 for r in m["rows"])
        assert m["versions"] == res["versions"]  # one sitting, one commit
        t = res["timing"]["methods"][name]["x4"]
        assert t["decode_ms"] > 0 and t["hr_size"] == 64 and t["decode_tensor_peak_mb"] > 0
    assert res["versions"]["torch"] == torch.__version__
    report = (out / "report.md").read_text()
    assert "### Set5: Y-PSNR (dB)" in report and "| bicubic | " in report
    assert "12 steps x batch 4" in report and "Timing is from an earlier" not in report
    for f in ("psnr_vs_scale", "psnr_vs_decode_time", "visual_grid", "loss_curves"):
        assert (out / "figures" / f"{f}.png").read_bytes()[:4] == b"\x89PNG"
    assert (out / "crops" / "liif_x12.png").is_file()


@pytest.mark.slow
def test_native_study_scores_whole_images_with_seams(tmp_path):
    bench = DATA / "data" / "benchmark" / "Set5"
    if not bench.is_dir():
        pytest.skip("../shared data is not present")
    d = {
        "name": "native-smoke",
        "kind": "native",
        "output": str(tmp_path / "report"),
        "runs": str(tmp_path / "runs"),
        "device": "cpu",
        "threads": 1,
        "native": {
            "patch_size": 16,
            "d_feat": 8,
            "groupnorm": 4,
            "p_max": 4,
            "p_soft_hi": 4.0,
            "n_global_freq": 8,
            "decoder_hidden": 16,
            "decoder_layers": 2,
        },
        "methods": [
            {
                "name": "gb_lsr_scalar",
                "model": "local_spectral",
                "args": {"bandwidth_mode": "global_scalar"},
            },
            {"name": "gfm", "model": "global_fourier_mlp"},
        ],
        "data": {"train_dirs": [str(bench / "HR")], "image_size": 32, "val_fraction": 0.2},
        "train": {
            "steps": 3,
            "batch_size": 2,
            "loss": "mse",
            "val_every": 3,
            "val_images": 1,
            "log_every": 1,
            "progress": False,
        },
        "optim": {"name": "adamw", "lr": 1e-3},
        "schedule": {"name": "constant"},
        "eval": {"sets": [{"path": str(bench), "max_images": 2}]},
        "timing": {"image_size": 32, "warmup": 0, "runs": 1},
        "visual": {"crop": 32},
    }
    s = run_study(study_config_from_dict(d), progress=False)
    assert s.status == {"gb_lsr_scalar": "trained", "gfm": "trained"} and s.timed
    res = json.loads((tmp_path / "report" / "results.json").read_text())
    for name in ("gb_lsr_scalar", "gfm"):
        (row,) = res["methods"][name]["rows"]
        assert row["dataset"] == "Set5" and row["n_images"] == 2
        for im in row["images"]:  # whole images of any size, seams measured on each
            assert im["psnr_seam"] is not None and im["psnr_interior"] is not None
            assert im["seam_gap_db"] == pytest.approx(im["psnr_interior"] - im["psnr_seam"])
        assert set(row["psnr_region"]) == {"smooth", "edge", "texture", "mixed"}
        # val_every == steps: the periodic and the final evaluation share step 3, one point
        assert [p["step"] for p in res["methods"][name]["val_curve"]] == [3]
        assert res["timing"]["methods"][name]["image"]["decode_ms"] > 0
    assert res["methods"]["gb_lsr_scalar"]["adaptivity"]["s_e"]["mean"] > 0
    report = (tmp_path / "report" / "report.md").read_text()
    assert "seam gap dB" in report and "PSNR per region" in report
    assert (tmp_path / "report" / "figures" / "learning_curves.png").is_file()
    assert (tmp_path / "report" / "figures" / "recon_grid.png").is_file()
