"""gblsr-cmsr: build CMSR scale-to-modulation tables for an LM-LIIF / LM-LTE checkpoint.

    gblsr-cmsr --checkpoint lm-liif.pth --data DIV2K/DIV2K_train_HR --scale 6 12 18 \
        --out lm-liif_mse2e-5.yaml

Re-implements LMF's init_cmsr.py (see :func:`gblsr.peers.cmsr.build_table`): for each target
scale S, every HR image (sorted by file name) is cropped to a multiple of S and shrunk with
Pillow's bicubic filter; the table {decode scale: intensity threshold} is lowered wherever
rendering at a coarser scale and upsampling stays within ``--mse-threshold`` of the full render.
An existing ``--out`` file is updated (its other tables are kept), as init_cmsr.py does. Use the
result with ``predict_full(lr, H, W, cmsr="table.yaml")``.
"""

from __future__ import annotations

import argparse
import sys

from ..errors import UserInputError
from ._common import (
    ArgumentParser,
    add_device_arg,
    positive_float,
    positive_int,
    resolve_device,
    run_main,
)

PROG = "gblsr-cmsr"


def build_parser() -> argparse.ArgumentParser:
    from ..peers.cmsr import DEFAULT_MSE_THRESHOLD

    p = ArgumentParser(  # mistakes become one line (UserInputError), not usage + error
        prog=PROG,
        description="Build CMSR scale-to-modulation tables (LMF's init_cmsr.py) for an LM-LIIF "
        "or LM-LTE checkpoint.",
    )
    p.add_argument("--checkpoint", required=True, help="LM-LIIF / LM-LTE checkpoint (any format)")
    p.add_argument(
        "--data", required=True, nargs="+", help="folders of HR images (official: DIV2K train)"
    )
    p.add_argument(
        "--scale",
        required=True,
        nargs="+",
        type=positive_int,
        help="integer target scales, e.g. 6 12 18 (the LMF README: 2 3 4 6 12 18)",
    )
    p.add_argument("--out", required=True, help="YAML file to write (updated if it exists)")
    p.add_argument(
        "--mse-threshold",
        type=positive_float,
        default=DEFAULT_MSE_THRESHOLD,
        help=f"MSE bound in the [-1, 1] range (default {DEFAULT_MSE_THRESHOLD:g})",
    )
    p.add_argument(
        "--trained-scale", type=positive_float, default=4, help="largest training scale (4)"
    )
    p.add_argument("--max-images", type=positive_int, help="use the first N images of each folder")
    add_device_arg(p)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()

    def body() -> int:
        args = parser.parse_args(argv)
        from ..checkpoint import load_model
        from ..fileio import check_output_path
        from ..peers.cmsr import build_table_file

        if not args.mse_threshold > 0:
            raise UserInputError("--mse-threshold must be positive")
        model = load_model(args.checkpoint, device=resolve_device(args.device))
        build_table_file(
            model,
            args.data,
            args.scale,
            check_output_path(args.out),
            mse_threshold=args.mse_threshold,
            trained_scale=args.trained_scale,
            max_images=args.max_images,
            on_scale=lambda scale, table: print(f"x{scale}: {table}", file=sys.stderr),
        )
        print(args.out)
        return 0

    return run_main(PROG, body)


if __name__ == "__main__":
    sys.exit(main())
