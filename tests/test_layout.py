"""Size limits that keep the package readable: a CLI module only parses arguments and calls the
library (at most 150 lines), and no source file grows past 500 lines."""

from __future__ import annotations

from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"


def _lengths(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(SRC)): len(p.read_text().splitlines()) for p in folder.rglob("*.py")}


def test_cli_modules_are_thin():
    too_long = {k: n for k, n in _lengths(SRC / "gblsr" / "cli").items() if n > 150}
    assert not too_long, f"CLI modules over 150 lines: {too_long}"


def test_no_source_file_over_500_lines():
    too_long = {k: n for k, n in _lengths(SRC).items() if n > 500}
    assert not too_long, f"source files over 500 lines: {too_long}"
