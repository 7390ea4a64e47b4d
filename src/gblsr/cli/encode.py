"""gblsr-encode: run only the encoder and write a feature blob that gblsr-decode renders.

The blob (safetensors) records which model made it (a fingerprint of its weights and config), so
only that model decodes it.
"""

from __future__ import annotations

import argparse
import sys

from ..data.image_io import read_image
from ..features import save_features
from ..inference import encode_image
from ._common import (
    add_device_arg,
    add_encoder_tiling_args,
    add_model_args,
    load_model_from_args,
    parse_bytes,
    resolve_device,
    run_main,
    stderr_line,
)
from ._types import ArgumentParser

PROG = "gblsr-encode"


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(
        prog=PROG,
        usage="%(prog)s --checkpoint FILE --input IMAGE --output BLOB [options]",
        description=__doc__.splitlines()[0],
    )
    add_model_args(p)
    p.add_argument("--input", required=True, help="input image")
    p.add_argument("--output", required=True, help="feature blob to write (.safetensors)")
    add_device_arg(p)
    add_encoder_tiling_args(p, max_memory=True)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()

    def body() -> int:
        args = parser.parse_args(argv)
        device = resolve_device(args.device)
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
        save_features(model, enc, args.output)
        h, w = image.size
        n_bytes = sum(t.numel() * t.element_size() for t in enc.state.values())
        shapes = ", ".join(f"{k} {tuple(t.shape)}" for k, t in enc.state.items())
        print(
            f"{args.output}: {shapes} ({n_bytes} bytes) from {h}x{w} "
            f"({3 * h * w} bytes as 8-bit RGB)"
        )
        return 0

    return run_main(PROG, body)


if __name__ == "__main__":
    sys.exit(main())
