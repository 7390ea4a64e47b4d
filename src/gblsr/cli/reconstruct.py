"""gblsr-reconstruct: run a model on one image and write the result.

Native GB-LSR models reconstruct the image at its own size. Arbitrary-scale models take
``--scale S`` (any real S > 0; the output is round(S*H) x round(S*W)) or ``--size HxW``.
"""

from __future__ import annotations

import argparse
import sys

from ..data.image_io import read_image
from ..inference import encode_image, parse_size, write_decoded
from ._common import (
    add_device_arg,
    add_encoder_tiling_args,
    add_model_args,
    add_output_size_args,
    add_render_args,
    load_model_from_args,
    parse_bytes,
    resolve_device,
    run_main,
    stderr_line,
)
from ._types import ArgumentParser

PROG = "gblsr-reconstruct"


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(
        prog=PROG,
        usage="%(prog)s --checkpoint FILE --input IMAGE --output IMAGE "
        "[--scale S | --size HxW] [options]",
        description="Reconstruct (native models) or super-resolve (arbitrary-scale models) one "
        "image. Any image Pillow reads works: greyscale, palette, RGBA (alpha is resized on its "
        "own and kept), 16-bit PNG; EXIF orientation is applied.",
    )
    add_model_args(p)
    p.add_argument("--input", required=True, help="input image")
    p.add_argument("--output", required=True, help="output image; format from the extension")
    add_output_size_args(p)
    add_device_arg(p)
    add_encoder_tiling_args(p)
    add_render_args(p)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()

    def body() -> int:
        args = parser.parse_args(argv)
        device = resolve_device(args.device)
        size = parse_size(args.size) if args.size else None
        max_memory = parse_bytes(args.max_memory)
        image = read_image(args.input)
        model = load_model_from_args(args, device, PROG)
        enc = encode_image(
            model,
            image,
            encoder_tile=args.encoder_tile,
            encoder_overlap=args.encoder_overlap,
            max_memory=max_memory,
            log=stderr_line,
        )
        H, W = write_decoded(
            model,
            enc,
            args.output,
            scale=args.scale,
            size=size,
            max_memory=max_memory,
            tile=args.tile,
        )
        h, w = image.size
        print(f"{args.output}: {H}x{W} from {h}x{w} ({model.registry_name})")
        return 0

    return run_main(PROG, body)


if __name__ == "__main__":
    sys.exit(main())
