"""CLI: every command has --help; errors are one line with a non-zero exit."""

from __future__ import annotations

import subprocess
import sys

from typer.testing import CliRunner

from auralens.cli import app, main


def _all_commands(group, prefix=()):
    import typer.main

    click_cmd = typer.main.get_command(group) if not hasattr(group, "commands") else group
    yield prefix
    for name, cmd in getattr(click_cmd, "commands", {}).items():
        if hasattr(cmd, "commands"):
            yield from _all_commands(cmd, (*prefix, name))
        else:
            yield (*prefix, name)


def test_every_command_has_help():
    runner = CliRunner()
    cmds = list(_all_commands(app))
    assert ("demo",) in cmds and ("data",) in cmds
    for cmd in cmds:
        res = runner.invoke(app, [*cmd, "--help"])
        assert res.exit_code == 0, (cmd, res.output)
        assert "Usage" in res.output


def test_version():
    res = CliRunner().invoke(app, ["--version"])
    assert res.exit_code == 0 and "auralens" in res.output


def test_console_script_error_is_one_line(tmp_path, capsys):
    code = main(["data", "--help"])
    assert code == 0
    # A missing input file through a real command: one line on stderr, exit 1.
    proc = subprocess.run([sys.executable, "-m", "auralens.cli", "data", "mix",
                           str(tmp_path / "missing"), "--out", str(tmp_path / "o"), "--n", "2"],
                          capture_output=True, text=True)
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().count("\n") == 0 and "missing" in proc.stderr
