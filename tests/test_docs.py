"""The docs cannot drift from the code: exit codes, commands, options, format constants, --help."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import click
import pytest

from albackup import archive, compress
from albackup.cli import cli
from albackup.errors import exit_code_table

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCS = ROOT / "docs"
FORMAT = DOCS / "FORMAT.md"
USAGE = DOCS / "usage.md"
START, END = "<!-- exit-codes:start -->", "<!-- exit-codes:end -->"


def readme() -> str:
    return README.read_text(encoding="utf-8")


def guide(page: str) -> str:
    return (DOCS / page).read_text(encoding="utf-8")


def all_docs() -> str:
    """The README and every page of the user guide."""
    return "\n".join([readme(), *(p.read_text(encoding="utf-8") for p in sorted(DOCS.glob("*.md")))])


def code_blocks(text: str) -> list[str]:
    """The bodies of the fenced code blocks of a Markdown text."""
    return re.findall(r"^```[^\n]*\n(.*?)^```", text, flags=re.M | re.S)


def albackup_lines(text: str) -> list[str]:
    """Lines of code blocks that run albackup (`albackup …` or `python -m albackup …`)."""
    return [line for block in code_blocks(text) for line in block.splitlines()
            if re.search(r"(^|[\s(/])albackup\s", line)]


def visible_commands() -> dict[str, click.Command]:
    return {name: cmd for name, cmd in cli.commands.items() if not cmd.hidden}


def known_options() -> set[str]:
    opts = {"--help"}
    for cmd in [cli, *cli.commands.values()]:
        for p in cmd.params:
            if isinstance(p, click.Option):
                opts.update(o for o in p.opts + p.secondary_opts if o.startswith("--"))
    return opts


@pytest.mark.parametrize("doc", [README, USAGE], ids=lambda p: p.name)
def test_exit_code_blocks_are_the_generated_table(doc: Path) -> None:
    text = doc.read_text(encoding="utf-8")
    assert text.count(START) == 1 and text.count(END) == 1, f"{doc.name} needs one exit-codes block"
    block = text.split(START, 1)[1].split(END, 1)[0]
    assert block.strip() == exit_code_table(), (
        f"{doc.name} exit-code table differs from albackup.errors.exit_code_table(); "
        "paste the output of `python -m albackup exit-codes` between the markers")


def test_exit_codes_command_prints_the_table() -> None:
    out = subprocess.run([sys.executable, "-m", "albackup", "exit-codes"], cwd=ROOT,
                         capture_output=True, text=True, check=True).stdout
    assert out.strip() == exit_code_table()


@pytest.mark.parametrize("name", sorted(visible_commands()))
def test_every_command_is_shown_in_the_guide(name: str) -> None:
    text = guide("usage.md")
    used = [line for line in albackup_lines(text) if re.search(rf"\s{re.escape(name)}(\s|$)", line)]
    assert used, f"command {name!r} has no usage example in a code block of docs/usage.md"
    assert f"### {name}" in text, f"command {name!r} has no section in docs/usage.md"


@pytest.mark.parametrize("main", ["dump", "restore", "verify", "test_all", "run"])
def test_readme_shows_the_main_commands(main: str) -> None:
    assert any(re.search(rf"\s{main}(\s|$)", line) for line in albackup_lines(readme())), main


def test_readme_is_short() -> None:
    assert len(readme().splitlines()) <= 250, "README.md is over 250 lines: move the detail to docs/"


def test_code_blocks_use_only_existing_options() -> None:
    lines = albackup_lines(all_docs())
    assert lines, "the docs show no albackup command line"
    mentioned = {m for line in lines for m in re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", line)}
    unknown = sorted(mentioned - known_options())
    assert not unknown, f"code blocks in README.md or docs/ use options no command has: {unknown}"


@pytest.mark.parametrize("doc", [README, DOCS / "engines.md"], ids=lambda p: p.name)
def test_sql_server_status_is_stated(doc: Path) -> None:
    text = doc.read_text(encoding="utf-8")
    assert "NOT" in text and "live SQL Server" in text


def test_format_doc_matches_constants() -> None:
    text = FORMAT.read_text(encoding="utf-8")
    assert f"# The albackup archive format, version {archive.FORMAT_VERSION}" in text
    assert f'"format_version": {archive.FORMAT_VERSION}' in text
    assert archive.CHUNK_MAGIC.decode("ascii") in text
    for st in (archive.HEADER, archive.FRAME, archive.TRAILER):
        assert f'"{st.format}"' in text, f"struct {st.format} is not in docs/FORMAT.md"
    for name, cid in compress.IDS.items():
        assert re.search(rf"^\| {cid} \| {name} \|", text, flags=re.M), f"compression id {cid} ({name})"


def test_help_runs() -> None:
    res = subprocess.run([sys.executable, "-m", "albackup", "--help"], cwd=ROOT,
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    for name in visible_commands():
        assert name in res.stdout


def _yaml_blocks(text: str) -> list[str]:
    return re.findall(r"^```yaml\n(.*?)^```", text, flags=re.M | re.S)


def test_notification_and_hook_examples_load() -> None:
    """Every YAML block of docs/notifications.md with a top-level notifications: or hooks: loads as the run config
    would load it (secret sources are not read at load time, so no variable needs to be set)."""
    import yaml

    from albackup.hooks import hooks_from_mapping
    from albackup.notify import notifiers_from_mapping

    seen = 0
    for block in _yaml_blocks(guide("notifications.md")):
        data = yaml.safe_load(block)
        if not isinstance(data, dict):
            continue
        if "notifications" in data:
            assert notifiers_from_mapping(data["notifications"], "README notifications", ROOT)
            seen += 1
        if "hooks" in data:
            assert hooks_from_mapping(data["hooks"], "README hooks")
            seen += 1
    assert seen >= 2, "docs/notifications.md shows no notifications:/hooks: example"


def test_guide_names_every_stage_notifier_variable_and_metric() -> None:
    from albackup import hooks, notify

    text = guide("notifications.md")
    names = [*hooks.STAGES, *notify.TYPE_KEYS, *notify.PROM_METRICS, *notify.KINDS]
    names += re.findall(r"``(ALBACKUP_[A-Z_]+)``", hooks.__doc__ or "")
    missing = [n for n in names if f"`{n}`" not in text]
    assert not missing, f"docs/notifications.md does not mention: {missing}"


# ---------------------------------------------------------------------------- the user guide
def _cli_reference():  # type: ignore[no-untyped-def]
    import importlib.util

    spec = importlib.util.spec_from_file_location("cli_reference", ROOT / "scripts" / "cli_reference.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_command_reference_is_generated_from_the_commands() -> None:
    ref = _cli_reference()
    assert (ROOT / "docs" / "commands.md").read_text(encoding="utf-8") == ref.render(), \
        "docs/commands.md differs from the commands; run: python scripts/cli_reference.py"


@pytest.mark.parametrize("path", [(), *[(n,) for n in sorted(visible_commands())]],
                         ids=lambda p: " ".join(p) or "albackup")
def test_command_reference_is_what_help_prints(path: tuple[str, ...]) -> None:
    import os

    ref = _cli_reference()
    out = subprocess.run([sys.executable, "-m", "albackup", *path, "--help"], cwd=ROOT, capture_output=True,
                         text=True, check=True, env={**os.environ, "COLUMNS": "80"}).stdout
    assert out.strip() == ref.help_text(*path).strip()
    assert f"```text\n{ref.help_text(*path)}\n```" in (ROOT / "docs" / "commands.md").read_text(encoding="utf-8")


def test_user_guide_builds_with_no_warning(tmp_path: Path) -> None:
    """MkDocs in strict mode: a broken link or anchor, or a page left out of the nav, fails."""
    from .conftest import require_component

    require_component("mkdocs", "MkDocs (pip install -r requirements-dev.txt)", installed_by_scripts=True)
    p = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
                       cwd=ROOT, capture_output=True, text=True)
    assert p.returncode == 0, p.stderr[-3000:]
    assert (tmp_path / "site" / "commands.html").exists()
