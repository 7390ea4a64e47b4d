"""The umbrella ``gblsr`` command: lists and runs every gblsr-* tool."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import tomllib

from gblsr.cli.main import COMMANDS, main

ROOT = Path(__file__).resolve().parents[1]


def _scripts() -> dict[str, str]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]


def test_help_lists_every_subcommand(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for name, (_, summary) in COMMANDS.items():
        assert f"  {name} " in out and summary in out


def test_every_gblsr_script_is_a_subcommand_and_vice_versa():
    from gblsr_entry import MODULES

    # Each script goes through gblsr_entry (signal handlers before the heavy imports).
    scripts = {k: MODULES[v.removeprefix("gblsr_entry:")] for k, v in _scripts().items()}
    assert all(prog == script for script, (prog, _) in scripts.items())
    assert scripts.pop("gblsr")[1] == "gblsr.cli.main"
    as_commands = {k.removeprefix("gblsr-"): v[1] for k, v in scripts.items()}
    assert as_commands == {name: module for name, (module, _) in COMMANDS.items()}


def test_subcommand_runs_the_tool(capsys):
    with pytest.raises(SystemExit) as e:
        main(["eval", "--help"])
    assert e.value.code == 0
    assert "usage: gblsr-eval" in capsys.readouterr().out
    # The tool's own error handling applies: one line, exit 2.
    assert main(["eval", "--model", "bicubic"]) == 2
    assert "gblsr-eval: error:" in capsys.readouterr().err


def test_unknown_command_is_one_line_exit_2(capsys):
    assert main(["frobnicate"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unknown command 'frobnicate'" in err[0] and "train" in err[0]


def test_python_dash_m_gblsr():
    res = subprocess.run(
        [sys.executable, "-m", "gblsr", "--help"], capture_output=True, text=True, check=True
    )
    assert all(name in res.stdout for name in COMMANDS)
