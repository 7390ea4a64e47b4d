"""gblsr-view: a deep-zoom web viewer that renders an image's continuous representation on
demand, beyond the input's size, side by side with bicubic or other models.

Encodes IMAGE once per model, serves a page on 127.0.0.1 (a free port unless --port) and prints
its URL. Zoom and pan with the mouse; all views move together.
"""

from __future__ import annotations

import argparse
import sys

from ._common import add_device_arg, parse_bytes, positive_float, resolve_device, run_main
from ._types import ArgumentParser

PROG = "gblsr-view"


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(
        prog=PROG,
        usage="%(prog)s IMAGE [--checkpoint FILE] [--compare bicubic|FILE ...] "
        "[--max-scale 16] [--port N] [--open]",
        description=__doc__.split("\n\n")[0].replace("\n", " "),
    )
    p.add_argument("image", metavar="IMAGE", help="the image to view (any format Pillow reads)")
    p.add_argument("--checkpoint", help="arbitrary-scale model file (required for now)")
    p.add_argument(
        "--compare",
        nargs="+",
        default=[],
        metavar="bicubic|FILE",
        help="more views beside it: 'bicubic' and/or other model files",
    )
    p.add_argument(
        "--max-scale",
        type=positive_float,
        default=16.0,
        help="deepest magnification rendered, relative to the input (1 to 64; default 16)",
    )
    p.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default: a free one)")
    p.add_argument("--open", action="store_true", help="open the page in the default browser")
    add_device_arg(p)
    p.add_argument("--workers", type=int, default=2, help="tiles rendered at once (default 2)")
    p.add_argument(
        "--cache", default="256M", metavar="SIZE", help="memory for rendered tiles (default 256M)"
    )
    p.add_argument("--verbose", action="store_true", help="log every request")
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()

    def body() -> int:
        args = parser.parse_args(argv)
        from ..errors import UserInputError
        from ..viewer import run_viewer

        if args.workers < 1:
            raise UserInputError("--workers must be at least 1")
        return run_viewer(
            args.image,
            checkpoint=args.checkpoint,
            compare=args.compare,
            max_scale=args.max_scale,
            port=args.port,
            open_browser=args.open,
            device=resolve_device(args.device),
            cache_bytes=parse_bytes(args.cache),
            workers=args.workers,
            verbose=args.verbose,
        )

    return run_main(PROG, body)


if __name__ == "__main__":
    sys.exit(main())
