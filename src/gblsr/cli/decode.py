"""gblsr-decode: render a feature blob written by gblsr-encode with the same checkpoint.

The result equals gblsr-reconstruct's on the original image. Arbitrary-scale models take
``--scale S`` (output round(S*H) x round(S*W)) or ``--size HxW``.
"""

from __future__ import annotations

import argparse
import sys

from ..features import load_features
from ..inference import parse_size, write_decoded
from ._common import (
    add_device_arg,
    add_model_args,
    add_output_size_args,
    add_render_args,
    load_model_from_args,
    parse_bytes,
    resolve_device,
    run_main,
)
from ._types import ArgumentParser

PROG = "gblsr-decode"


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(
        prog=PROG,
        usage="%(prog)s --checkpoint FILE --input BLOB --output IMAGE "
        "[--scale S | --size HxW] [options]",
        description=__doc__.splitlines()[0],
    )
    add_model_args(p)
    p.add_argument("--input", required=True, help="feature blob from gblsr-encode")
    p.add_argument("--output", required=True, help="output image; format from the extension")
    add_output_size_args(p)
    add_device_arg(p)
    add_render_args(p)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()

    def body() -> int:
        args = parser.parse_args(argv)
        device = resolve_device(args.device)
        size = parse_size(args.size) if args.size else None
        model = load_model_from_args(args, device, PROG)
        max_memory = parse_bytes(args.max_memory)
        enc = load_features(args.input, model)
        H, W = write_decoded(
            model,
            enc,
            args.output,
            scale=args.scale,
            size=size,
            max_memory=max_memory,
            tile=args.tile,
        )
        print(f"{args.output}: {H}x{W} ({model.registry_name})")
        return 0

    return run_main(PROG, body)


if __name__ == "__main__":
    sys.exit(main())
