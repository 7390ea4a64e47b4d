"""Package a trained GB-LSR-ASR checkpoint as gblsr's built-in default model.

    python scripts/package_default_model.py \
        --checkpoint runs/default_model_decay/checkpoints/step-00003000.safetensors \
        --recipe configs/default_model.yaml configs/default_model_decay.yaml \
        --run-dir runs/default_model runs/default_model_decay --steps 4500 3000 \
        --data ../shared/data/benchmark --status final

One phase per --recipe / --run-dir / --steps (phase 2 starts from phase 1's weights).

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
    p.add_argument("--recipe", nargs="+", default=["configs/default_model.yaml"])
    p.add_argument(
        "--run-dir", nargs="+", required=True, help="each phase's run (train_config.yaml)"
    )
    p.add_argument("--steps", nargs="+", type=int, help="each phase's steps (default: the file's)")
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
    if not len(args.recipe) == len(args.run_dir) == len(args.steps or args.recipe):
        p.error("give one --recipe, --run-dir (and --steps) per training phase")
    steps = args.steps or [int("".join(c for c in Path(args.checkpoint).stem if c.isdigit()) or 0)]
    model = gblsr.load_model(args.checkpoint, device="cpu")
    phases = [
        {
            "recipe": r,
            "steps": n,
            "config": yaml.safe_load((Path(d) / "train_config.yaml").read_text()),
        }
        for r, d, n in zip(args.recipe, args.run_dir, steps)
    ]
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
            "recipe": args.recipe[0] if len(args.recipe) == 1 else args.recipe,
            "phases": phases,
            "steps": sum(steps),
            "data": "Wiki49 + BSDS400 (449 photos), MATLAB-bicubic LR, s ~ U(1, 4)",
            "budget": f"{sum(steps)} steps x batch 16 of 32x32 LR crops, CPU",
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
