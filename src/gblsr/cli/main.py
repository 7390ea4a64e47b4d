"""``gblsr``: one command whose subcommands are the ``gblsr-*`` tools.

    gblsr --help                  # lists every subcommand
    gblsr train --config configs/quickstart.yaml
    gblsr eval --model bicubic --dataset benchmark/Set5

A new command is one row of :data:`COMMANDS` (and, for its ``gblsr-NAME`` twin, one line in
pyproject.toml's ``[project.scripts]``).
"""

from __future__ import annotations

import importlib
import sys

__all__ = ["COMMANDS", "main"]

# subcommand -> (module with main(argv) -> int, one-line summary). Order = the order of --help.
COMMANDS: dict[str, tuple[str, str]] = {
    "train": ("gblsr.cli.train", "train from a YAML config, or resume a run"),
    "eval": ("gblsr.cli.eval", "PSNR / SSIM / LPIPS of a model or baseline on SR test sets"),
    "reconstruct": ("gblsr.cli.reconstruct", "run a model on one image and write the result"),
    "encode": ("gblsr.cli.encode", "run only the encoder; write a feature blob"),
    "decode": ("gblsr.cli.decode", "render a feature blob at any size"),
    "convert": ("gblsr.cli.convert", "write any checkpoint gblsr loads as gblsr safetensors"),
    "cmsr": ("gblsr.cli.cmsr", "build CMSR tables for an LM-LIIF / LM-LTE checkpoint"),
    "measure-latency": ("gblsr.cli.latency", "time a model under the latency protocol"),
    "view": ("gblsr.cli.view", "deep-zoom web viewer: render any region at any magnification"),
    "study": ("gblsr.cli.study", "train, score and time every method of a study; one report"),
}


def usage() -> str:
    width = max(len(name) for name in COMMANDS)
    lines = [
        "usage: gblsr COMMAND [ARGS ...]",
        "",
        "GB-LSR and its peers: continuous image representation and arbitrary-scale SR.",
        "",
        "commands:",
    ]
    lines += [f"  {name.ljust(width)}  {summary}" for name, (_, summary) in COMMANDS.items()]
    lines += ["", "gblsr COMMAND --help shows a command's options (each is also gblsr-COMMAND)."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from_command_line = argv is None
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage())
        return 0
    if argv[0] == "--version":
        from .._version import __version__

        print(f"gblsr {__version__}")
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(
            f"gblsr: error: unknown command {name!r}; choose from {', '.join(COMMANDS)}",
            file=sys.stderr,
        )
        return 2
    command = importlib.import_module(COMMANDS[name][0])
    if from_command_line:
        # The subcommand sees the command line it would see as gblsr-NAME (gblsr-train re-runs
        # itself from sys.argv to set the OpenMP wait policy).
        sys.argv = [f"gblsr-{name}", *rest]
        return command.main()
    return command.main(rest)


if __name__ == "__main__":
    sys.exit(main())
