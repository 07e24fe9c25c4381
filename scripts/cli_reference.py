#!/usr/bin/env python3
"""Write docs/commands.md, the command reference, from the click commands' own --help.

    .venv/bin/python scripts/cli_reference.py          # rewrite docs/commands.md
    .venv/bin/python scripts/cli_reference.py --check  # exit 1 when it differs (tests/test_docs.py does this)

The help is rendered 80 columns wide, as `COLUMNS=80 albackup COMMAND --help` prints it.
"""
from __future__ import annotations

import sys
from pathlib import Path

import click

ROOT = Path(__file__).resolve().parents[1]
TARGET = ROOT / "docs" / "commands.md"
WIDTH = 78  # what click lays out for an 80-column terminal


def help_text(*path: str) -> str:
    """What `albackup PATH... --help` prints at WIDTH columns."""
    from albackup.cli import cli

    cmd: click.Command = cli
    ctx = click.Context(cli, info_name="albackup", **{**cli.context_settings, "terminal_width": WIDTH})
    for name in path:
        assert isinstance(cmd, click.Group)
        cmd = cmd.commands[name]
        ctx = click.Context(cmd, info_name=name, parent=ctx, **cmd.context_settings)
    return cmd.get_help(ctx)


def render() -> str:
    from albackup.cli import cli

    parts = ["# Command reference", "",
             "Every command's `--help`, generated from the commands themselves by `scripts/cli_reference.py`;",
             "the tests fail when this page and `--help` differ. Options that every command takes (`--cfg`,",
             "`--url`, `--backup-dir`, `--json`, `-q`, `-v`, `-d`) may come before or after the command.", "",
             "## albackup", "", "```text", help_text(), "```", ""]
    for name in sorted(n for n, c in cli.commands.items() if not c.hidden):
        parts += [f"## {name}", "", "```text", help_text(name), "```", ""]
    return "\n".join(parts)


def main(argv: list[str]) -> int:
    text = render()
    if "--check" in argv:
        if not TARGET.exists() or TARGET.read_text(encoding="utf-8") != text:
            print(f"{TARGET.relative_to(ROOT)} differs from the commands' --help; "
                  "run: python scripts/cli_reference.py", file=sys.stderr)
            return 1
        return 0
    TARGET.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    raise SystemExit(main(sys.argv[1:]))
