"""Package a trained GB-LSR-ASR checkpoint as gblsr's built-in default model.

    python scripts/package_default_model.py \
        --checkpoint runs/default_model/checkpoints/step-00002500.safetensors \
        --run-dir runs/default_model --data ../shared/data/benchmark \
        --sets Set5 Set14 B100 Kodak24 --scales 2 3 4 6 8 12

Scores the checkpoint and bicubic with gblsr's evaluation protocol (Y-PSNR, shave = scale,
MATLAB-bicubic LR) and writes ``src/gblsr/assets/default_model.safetensors`` with the training
config, data, budget and every score in its metadata (``extra``), so the file describes itself.
docs/default-model.md is the model card made from the same numbers.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", required=True, help="a gblsr checkpoint of the default recipe")
    p.add_argument("--run-dir", required=True, help="its training run (train_config.yaml)")
    p.add_argument("--data", required=True, help="folder holding the benchmark sets")
    p.add_argument("--sets", nargs="+", default=["Set5", "Set14", "B100", "Kodak24"])
    p.add_argument("--scales", nargs="+", type=float, default=[2, 3, 4, 6, 8, 12])
    p.add_argument("--status", default="interim", help="interim | final (said in the metadata)")
    p.add_argument("--out", default=str(REPO / "src/gblsr/assets/default_model.safetensors"))
    args = p.parse_args(argv)

    import torch
    import yaml

    import gblsr
    from gblsr.evaluation import run_evaluation

    torch.set_num_threads(2)
    step = int("".join(c for c in Path(args.checkpoint).stem if c.isdigit()) or 0)
    model = gblsr.load_model(args.checkpoint, device="cpu")
    train_cfg = yaml.safe_load((Path(args.run_dir) / "train_config.yaml").read_text())
    datasets = [str(Path(args.data) / s) for s in args.sets]
    scores: dict[str, dict[str, dict[str, float]]] = {}
    for name, which in (("model", model), ("bicubic", "bicubic")):
        result = run_evaluation(which, datasets, args.scales, lpips=False, device="cpu")
        for row in result["rows"]:
            cell = scores.setdefault(row["dataset"], {}).setdefault(f"x{row['scale']:g}", {})
            cell[name] = round(float(row["psnr"]), 3)
            if name == "model":
                cell["ssim"] = round(float(row["ssim"]), 4)
    for cells in scores.values():
        for cell in cells.values():
            cell["gain"] = round(cell["model"] - cell["bicubic"], 3)
    extra = {
        "name": "gblsr default model",
        "status": args.status,
        "training": {
            "recipe": "configs/default_model.yaml",
            "config": train_cfg,
            "steps": step,
            "data": "Wiki49 + BSDS400 (449 photos), MATLAB-bicubic LR, s ~ U(1, 4)",
            "budget": f"{step} steps x batch 16 of 32x32 LR crops, CPU",
        },
        "scores": {
            "protocol": "Y-PSNR (dB), shave = scale, MATLAB-bicubic LR (benchmark LR files where "
            "present), per-image mean; gblsr-eval's benchmark protocol",
            "sets": scores,
        },
        "licence": "BSD-3-Clause (gblsr); trained on BSDS (non-commercial research) and "
        "Wikimedia Commons photos (see shared data README)",
    }
    gblsr.save_model(model, args.out, extra=extra)
    print(json.dumps(scores, indent=1))
    print(args.out, f"{Path(args.out).stat().st_size / 2**20:.2f} MiB", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
