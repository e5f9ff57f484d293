"""CLI: every command has --help; errors are one line with a non-zero exit."""

from __future__ import annotations

import re
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
    from auralens import __version__

    res = CliRunner().invoke(app, ["--version"])
    assert res.exit_code == 0 and res.output == f"auralens {__version__}\n"


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


def _help(args: list[str]) -> str:
    res = CliRunner().invoke(app, [*args, "--help"], env={"COLUMNS": "250"})
    assert res.exit_code == 0, (args, res.output)
    return res.output


def test_help_shows_a_value_placeholder_only_where_the_parser_takes_a_value():
    """Flags were shown as `--quick <bool>`, `--help <bool>`, `--verbose -v <int>`, but
    `demo --quick true` and `auralens --verbose 2` are refused: none of them takes a value."""
    import typer.main

    root = typer.main.get_command(app)
    checked = 0
    for cmd in _all_commands(app):
        command = root
        for name in cmd:
            command = command.commands[name]
        lines = _help(list(cmd)).splitlines()
        for param in command.params:
            if param.param_type_name != "option" or param.hidden:
                continue
            name = next(o for o in param.opts if o.startswith("--"))
            row = next(x for x in lines if re.match(rf"^│\s+(\*\s+)?{re.escape(name)}(\s|$)", x))
            takes_no_value = param.is_flag or param.count
            assert ("<" in row) != takes_no_value, (cmd, row)
            checked += 1
        help_row = next(x for x in lines if re.match(r"^│\s+--help\s", x))
        assert "<" not in help_row, (cmd, help_row)
    assert checked > 100
    top = _help([])
    verbose = next(x for x in top.splitlines() if "--verbose" in x)
    assert "<int>" not in verbose and "-v" in verbose and "Repeat for more" in verbose
    assert "<bool>" not in _help(["demo"])


def test_usage_names_arguments_in_capitals():
    """The usage line said `{data}` / `{src}` where the README writes DATA / SRC."""
    for cmd, name in [(["sonify", "prepare"], "DATA"), (["data", "mix"], "SRC"),
                      (["imagine", "run"], "INPUT"), (["data", "merge"], "PARTS")]:
        out = _help(cmd)
        usage = next(x for x in out.splitlines() if "Usage:" in x)
        assert name in usage and name.lower() not in usage, usage
        assert re.search(rf"^│\s+\*\s+{name}\s", out, re.M), out


def test_help_shows_the_default_layer_of_sonify_prepare():
    """`--layer` showed no default, though prepare uses the extractor's last block (4 here)."""
    from auralens.sonify.prepare import build_extractor

    row = next(x for x in _help(["sonify", "prepare"]).splitlines() if "--layer" in x)
    assert "[default: (the last block, 4 for the offline classifier)]" in row
    assert build_extractor("classifier").layer == 4
