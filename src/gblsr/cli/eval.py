"""gblsr-eval: PSNR / SSIM (/ LPIPS) of a model or an interpolation baseline on SR test sets,
as JSON on stdout; ``--out DIR`` also writes results.json, results.md and psnr_vs_scale.png.

    gblsr-eval --checkpoint asr.safetensors --dataset benchmark/Set5 --scale 2 3 4 6 12

The work is :func:`gblsr.evaluation.run_evaluation`; docs/evaluation.md states the protocol.
"""

from __future__ import annotations

import argparse
import sys

from ..data.datasets import LR_SOURCES
from ..errors import UserInputError
from ..fileio import check_output_dir, check_output_path, write_text_atomic
from ._common import (
    ArgumentParser,
    add_device_arg,
    add_model_args,
    checkpoint_or_default,
    positive_int,
    progress_bar,
    resolve_device,
    run_main,
    scale_factor,
)

PROG = "gblsr-eval"


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(
        prog=PROG,
        description="Evaluate a checkpoint or an interpolation baseline on SR test sets (MATLAB-"
        "bicubic LR, Y-channel PSNR with the scale shaved, SSIM on Y); JSON on stdout.",
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
        type=scale_factor,
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
        "--patch-size", type=positive_int, default=32, help="region patch size (default 32)"
    )
    p.add_argument("--max-images", type=positive_int, metavar="N", help="first N of each set")
    p.add_argument("--out", metavar="DIR", help="also write results.json, .md and a plot here")
    add_device_arg(p)
    p.add_argument("--selection", choices=("gumbel", "argmax"), help="GaussianSR kernel choice")
    p.add_argument("--gumbel-seed", type=int, default=0, help="its Gumbel seed (default 0)")
    legacy = p.add_argument_group("options of the reference's gblsr-eval (--config --checkpoint)")
    legacy.add_argument(
        "--num-val-images", type=positive_int, metavar="N", help="same as --max-images"
    )
    legacy.add_argument(
        "--region-threshold-samples",
        type=positive_int,
        default=1024,
        metavar="N",
        help="patches used to fit region thresholds (default 1024); with --config and a native "
        "model, thresholds are fitted on the first dataset even without --region-thresholds",
    )
    legacy.add_argument("--output", metavar="FILE", help="also write the JSON result to FILE")
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()

    def body() -> int:
        from ..evaluation import result_json, run_evaluation, write_reports

        args = parser.parse_args(argv)
        if args.model and args.checkpoint:
            raise UserInputError("give either --model or --checkpoint, not both")
        model = args.model or checkpoint_or_default(args, PROG)
        # Unwritable outputs are refused before the (long) evaluation.
        if args.out:
            check_output_dir(args.out)
        if args.output:
            check_output_path(args.output)
        with progress_bar(PROG) as tick:
            same = ("protocol", "lr_source", "region_thresholds", "region_threshold_samples")
            same += ("patch_size", "config", "arm_index", "selection", "gumbel_seed")
            result = run_evaluation(
                model,
                args.dataset,
                args.scale,
                device=resolve_device(args.device),
                lpips=not args.no_lpips,
                max_images=args.max_images if args.max_images is not None else args.num_val_images,
                **{name: getattr(args, name) for name in same},
                on_image=tick,
                note=lambda msg: print(f"{PROG}: note: {msg}", file=sys.stderr),
            )
        text = result_json(result)
        if args.out:
            write_reports(args.out, result)
        if args.output:
            write_text_atomic(args.output, text)
        print(text, end="", flush=True)
        return 0

    return run_main(PROG, body)


if __name__ == "__main__":
    sys.exit(main())
