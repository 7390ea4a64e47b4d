"""gblsr-convert: write any checkpoint gblsr can load (official LIIF / LTE / LTE+ / LMF ``.pth``
files included) as a self-describing gblsr safetensors file.

    gblsr-convert edsr-baseline-liif.pth liif.safetensors

Official files are read with ``torch.load(weights_only=True)``; a file that holds pickled Python
objects beyond tensors and containers is refused unless ``--trust-pickle`` is given (only for
files from a source you trust: unpickling can run code).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..errors import CheckpointError, UserInputError
from ._common import run_main
from ._types import ArgumentParser

PROG = "gblsr-convert"


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(
        prog=PROG,
        description="Convert a checkpoint (e.g. an official LIIF, LTE, LTE+, LM-LIIF or LM-LTE "
        ".pth file) into gblsr's safetensors format.",
    )
    p.add_argument("input", help="checkpoint to convert")
    p.add_argument("output", help="gblsr .safetensors file to write")
    p.add_argument(
        "--config",
        help="RunConfig YAML or model YAML, for files that do not describe their architecture",
    )
    p.add_argument(
        "--trust-pickle",
        action="store_true",
        help="load an official .pth with full unpickling (weights_only=False); only for files "
        "you trust",
    )
    return p


def _load_trusted(path: Path):
    import torch

    from ..checkpoint import build_from_state_dict
    from ..peers.convert import convert_official, is_official_spec

    obj = torch.load(str(path), map_location="cpu", weights_only=False)
    spec = obj.get("model") if isinstance(obj, dict) else None
    if not is_official_spec(spec):
        raise CheckpointError(f"{path.name} is not an official LIIF/LTE/LMF checkpoint")
    arch, cfg, sd = convert_official(spec)
    return build_from_state_dict(arch, cfg, sd, path.name).eval()


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()

    def body() -> int:
        args = parser.parse_args(argv)
        from ..checkpoint import load_model, save_model

        src, dst = Path(args.input), Path(args.output)
        if dst.suffix.lower() != ".safetensors":
            raise UserInputError(f"the output must be a .safetensors file, got {dst}")
        if src.resolve() == dst.resolve():
            raise UserInputError("the output would overwrite the input")
        model = _load_trusted(src) if args.trust_pickle else load_model(src, config=args.config)
        licence = getattr(model, "weights_licence", None)
        extra = {"converted_from": src.name}
        if licence:
            extra["weights_licence"] = licence
        save_model(model, dst, extra=extra)
        n = sum(p.numel() for p in model.parameters())
        print(f"{dst}: {model.registry_name} ({n:,} parameters) from {src.name}")
        if licence:
            print(f"licence: these weights are {licence} (gblsr's code is BSD-3); so is {dst.name}")
        return 0

    return run_main(PROG, body)


if __name__ == "__main__":
    sys.exit(main())
