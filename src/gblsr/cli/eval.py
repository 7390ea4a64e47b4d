"""gblsr-eval: PSNR / SSIM (/ LPIPS) of a model or an interpolation baseline on SR test sets.

    gblsr-eval --model bicubic --dataset benchmark/Set5 benchmark/Set14 --scale 2 3 4
    gblsr-eval --checkpoint asr.safetensors --dataset DIV2K --protocol div2k --scale 2 3 4 6 12
    gblsr-eval --config run.yaml --checkpoint model.pt            # reference native run

Prints JSON on stdout (one row per dataset and scale, with per-image values); ``--out DIR`` also
writes results.json, results.md (a table) and psnr_vs_scale.png. The README section
"Evaluation protocol" gives the exact protocol.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import warnings
from pathlib import Path
from typing import Any

from ..data.datasets import LR_SOURCES, open_dataset
from ..data.image_io import atomic_write
from ..errors import UserInputError
from ._common import add_device_arg, add_model_args, resolve_device, run_main

PROG = "gblsr-eval"
DEFAULT_SCALES = (2.0, 3.0, 4.0)


class _ArgumentParser(argparse.ArgumentParser):
    """argparse that reports mistakes as UserInputError (one line, exit 2) instead of exiting."""

    def error(self, message: str):  # type: ignore[override]
        raise UserInputError(message)


def _scale_arg(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not math.isfinite(v) or v < 1:
        raise argparse.ArgumentTypeError(f"a scale must be a finite number >= 1, got {text}")
    return v


def _positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {text}")
    return v


def build_parser() -> argparse.ArgumentParser:
    p = _ArgumentParser(
        prog=PROG,
        description="Evaluate a checkpoint or an interpolation baseline on SR test sets with the "
        "standard protocol (MATLAB-bicubic LR, Y-channel PSNR with the scale shaved, SSIM on Y). "
        "Prints JSON on stdout.",
    )
    p.add_argument(
        "--model",
        metavar="NAME|FILE",
        help="bicubic, bilinear or nearest (MATLAB imresize of the LR), or a checkpoint file",
    )
    add_model_args(p, required=False)
    p.add_argument(
        "--dataset",
        nargs="+",
        metavar="DIR",
        help="dataset folders: EDSR benchmark layout (HR/, LR_bicubic/X<s>/), DIV2K, DTD, Kodak "
        "or any folder of images",
    )
    p.add_argument(
        "--scale",
        nargs="+",
        type=_scale_arg,
        metavar="S",
        help="scale factors >= 1, integer or not, e.g. 2 3 4 2.5 6 12 30 (default: 2 3 4; "
        "ignored for native reconstruction models)",
    )
    p.add_argument(
        "--protocol",
        choices=("benchmark", "div2k"),
        default="benchmark",
        help="benchmark: PSNR on Y, shave ceil(s) (default); div2k: PSNR on RGB, shave ceil(s)+6",
    )
    p.add_argument(
        "--lr-source",
        choices=LR_SOURCES,
        default="auto",
        help="auto: the dataset's LR files, else MATLAB bicubic (default); matlab: always "
        "MATLAB bicubic; pil: always Pillow bicubic (LMF/ContinuousSR); liif: files, else "
        "Pillow (LIIF/LTE)",
    )
    p.add_argument("--no-lpips", action="store_true", help="do not compute LPIPS")
    p.add_argument(
        "--region-thresholds",
        metavar="JSON",
        help="add per-region (smooth/edge/texture/mixed) metrics with these cached thresholds; "
        "fitted on the first dataset and written there when the file does not exist",
    )
    p.add_argument(
        "--patch-size", type=_positive_int, default=32, help="region patch size (default 32)"
    )
    p.add_argument(
        "--max-images", type=_positive_int, metavar="N", help="first N images of each dataset"
    )
    p.add_argument(
        "--out",
        metavar="DIR",
        help="also write results.json, results.md and psnr_vs_scale.png here",
    )
    p.add_argument(
        "--selection",
        choices=("gumbel", "argmax"),
        help="GaussianSR kernel selection: gumbel (official, seeded by --gumbel-seed) or argmax",
    )
    p.add_argument("--gumbel-seed", type=int, default=0, help="GaussianSR Gumbel seed (default 0)")
    add_device_arg(p)
    legacy = p.add_argument_group("options of the reference's gblsr-eval (--config --checkpoint)")
    legacy.add_argument(
        "--num-val-images", type=_positive_int, metavar="N", help="same as --max-images"
    )
    legacy.add_argument(
        "--region-threshold-samples",
        type=_positive_int,
        default=1024,
        metavar="N",
        help="patches used to fit region thresholds (default 1024); with --config and a native "
        "model, thresholds are fitted on the first dataset even without --region-thresholds",
    )
    legacy.add_argument("--output", metavar="FILE", help="also write the JSON result to FILE")
    return p


# --------------------------------------------------------------------------- model and data


def _load_checkpoint(path: str, args: argparse.Namespace, device):
    from ..checkpoint import load_model

    p = Path(path)
    if not p.exists():
        raise UserInputError(f"checkpoint not found: {p}")
    if p.is_dir():
        raise UserInputError(f"checkpoint must be a file, got a folder: {p}")
    if args.config is not None and not Path(args.config).is_file():
        raise UserInputError(f"config not found: {args.config}")
    try:
        return load_model(p, device=device, config=args.config, arm_index=args.arm_index)
    except UserInputError:
        raise
    except Exception as e:  # a damaged or foreign file: say so in one line
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise UserInputError(f"cannot load checkpoint {p}: {msg}") from None


def _resolve_model(args: argparse.Namespace, device):
    from ..evaluation import BASELINES, get_baseline

    if args.model and args.checkpoint:
        raise UserInputError("give either --model or --checkpoint, not both")
    if args.checkpoint:
        return _load_checkpoint(args.checkpoint, args, device), Path(args.checkpoint).name
    if not args.model:
        raise UserInputError(
            "nothing to evaluate: give --model bicubic|bilinear|nearest|FILE or --checkpoint FILE"
        )
    if args.model in BASELINES:
        return get_baseline(args.model), args.model
    if Path(args.model).exists():
        return _load_checkpoint(args.model, args, device), Path(args.model).name
    raise UserInputError(
        f"unknown model {args.model!r}: use bicubic, bilinear, nearest or the path of a "
        "checkpoint file"
    )


def _roots_from_config(path: str) -> list[str]:
    import yaml

    try:
        cfg = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as e:
        raise UserInputError(f"cannot read config {path}: {str(e).splitlines()[0]}") from None
    if not isinstance(cfg, dict):
        raise UserInputError(f"config {path} is not a YAML mapping")
    base = cfg.get("base") if isinstance(cfg.get("base"), dict) else cfg
    data = base.get("data") if isinstance(base.get("data"), dict) else {}
    roots = [data.get("dtd_root"), data.get("div2k_root"), *(data.get("image_dirs") or [])]
    return [str(r) for r in roots if r]


def _datasets(args: argparse.Namespace) -> list:
    dirs = list(args.dataset or [])
    if not dirs and args.config:
        dirs = _roots_from_config(args.config)
        if not dirs:
            raise UserInputError(f"no --dataset given and {args.config} names no data roots")
    if not dirs:
        raise UserInputError("give at least one --dataset DIR")
    limit = args.max_images if args.max_images is not None else args.num_val_images
    return [open_dataset(d, max_images=limit) for d in dirs]


# --------------------------------------------------------------------------- reports


def _fmt(v: Any, digits: int) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def _markdown(result: dict) -> str:
    rows = result["rows"]
    lines = [
        f"# {PROG}: {result['model']}",
        "",
        f"Protocol `{result['protocol']}`, LR source `{result['lr_source']}`. PSNR in dB (mean of "
        "per-image values), SSIM on Y; see the README, 'Evaluation protocol'.",
        "",
    ]
    scales = sorted({r["scale"] for r in rows})
    datasets = list(dict.fromkeys(r["dataset"] for r in rows))
    by = {(r["dataset"], r["scale"]): r for r in rows}
    lines.append("| dataset | " + " | ".join(f"x{s:g}" for s in scales) + " |")
    lines.append("|---|" + "---|" * len(scales))
    for d in datasets:
        cells = []
        for s in scales:
            r = by.get((d, s))
            cells.append("" if r is None else f"{_fmt(r['psnr'], 2)} / {_fmt(r['ssim'], 4)}")
        lines.append(f"| {d} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "| dataset | scale | protocol | PSNR | SSIM | LPIPS | images |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['dataset']} | {r['scale']:g} | {r['protocol']} | {_fmt(r['psnr'], 4)} | "
            f"{_fmt(r['ssim'], 4)} | {_fmt(r.get('lpips'), 4)} | {r['n_images']} |"
        )
    return "\n".join(lines) + "\n"


def _plot(rows: list[dict], path: Path, title: str) -> bool:
    """PSNR-vs-scale lines, one per dataset; False when there is nothing to plot."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    series: dict[str, list[tuple[float, float]]] = {}
    for r in rows:
        if r["psnr"] is not None:
            series.setdefault(r["dataset"], []).append((float(r["scale"]), r["psnr"]))
    if not series:
        return False
    fig = Figure(figsize=(6, 4), dpi=120)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    for name, pts in series.items():
        pts.sort()
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=name)
    ax.set_xlabel("scale")
    ax.set_ylabel("PSNR (dB)")
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png"))
    return True


def _write_reports(out: str, result: dict, text: str) -> None:
    folder = Path(out)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise UserInputError(f"--out must be a folder, got a file: {folder}") from None
    atomic_write(folder / "results.json", lambda tmp: Path(tmp).write_text(text))
    atomic_write(folder / "results.md", lambda tmp: Path(tmp).write_text(_markdown(result)))
    _plot(result["rows"], folder / "psnr_vs_scale.png", f"{result['model']} ({result['protocol']})")


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()

    def body() -> int:
        from ..data.regions import fit_region_thresholds, load_or_fit_thresholds
        from ..evaluation import evaluate
        from ..metrics.quality import lpips_status

        args = parser.parse_args(argv)
        device = resolve_device(args.device)
        datasets = _datasets(args)
        model, model_name = _resolve_model(args, device)
        extra = {}  # what a model with a kernel selection (GaussianSR) used
        if hasattr(model, "set_selection"):
            extra = model.set_selection(args.selection, args.gumbel_seed)
        elif args.selection:
            raise UserInputError(f"--selection applies to GaussianSR models, not {model_name}")
        task = getattr(model, "task", "sr")
        scales = list(args.scale) if args.scale else list(DEFAULT_SCALES)
        if task == "reconstruction" and args.scale:
            print(
                f"{PROG}: note: {model_name} is a native reconstruction model; evaluating at "
                "scale 1, --scale ignored",
                file=sys.stderr,
            )

        want_lpips = not args.no_lpips
        if want_lpips:
            reason = lpips_status()
            if reason is not None:
                print(
                    f"{PROG}: note: LPIPS not computed (values are null): {reason}", file=sys.stderr
                )
        thresholds = None
        patch = args.patch_size
        if args.region_thresholds:
            thresholds = load_or_fit_thresholds(
                args.region_thresholds, datasets[0], patch, n_samples=args.region_threshold_samples
            )
        elif args.config and task == "reconstruction":
            # The reference's eval refits the thresholds on each run, with the model's patch size.
            cfg = getattr(model, "cfg", None)
            patch = int(getattr(cfg, "patch_size", patch))
            thresholds = fit_region_thresholds(
                datasets[0], patch, n_samples=args.region_threshold_samples
            )

        total = sum(len(d) for d in datasets) * (1 if task == "reconstruction" else len(scales))
        bar = None
        if sys.stderr.isatty():
            from tqdm import tqdm

            bar = tqdm(total=total, desc=PROG, unit="img", file=sys.stderr, leave=False)
        try:
            with warnings.catch_warnings():
                # The note above already said why LPIPS is missing; nulls are reported.
                warnings.filterwarnings(
                    "ignore", message="LPIPS unavailable", category=RuntimeWarning
                )
                rows = evaluate(
                    model,
                    datasets,
                    scales,
                    protocol=args.protocol,
                    lr_source=args.lr_source,
                    device=device,
                    lpips=want_lpips,
                    region_thresholds=thresholds,
                    patch_size=patch,
                    on_image=(bar.update if bar is not None else None),
                )
        finally:
            if bar is not None:
                bar.close()
        result = {
            "model": model_name,
            "task": task,
            "protocol": "reconstruction" if task == "reconstruction" else args.protocol,
            "lr_source": "identity" if task == "reconstruction" else args.lr_source,
            "device": str(device),
            **extra,
            "rows": rows,
        }
        text = json.dumps(result, indent=2) + "\n"
        if args.out:
            _write_reports(args.out, result, text)
        if args.output:
            out_file = Path(args.output)
            if out_file.is_dir():
                raise UserInputError(f"--output must be a file, got a folder: {out_file}")
            atomic_write(out_file, lambda tmp: Path(tmp).write_text(text))
        sys.stdout.write(text)
        sys.stdout.flush()
        return 0

    return run_main(PROG, body)


if __name__ == "__main__":
    sys.exit(main())
