"""The project's own documents say what the code does: quirk pages, README references.

Every quirk of the registry names a page and anchor under docs/quirks/ (``cometbench quirks`` prints
it), so each such page must exist and have a heading with the quirk's exact name.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import emulator.stack  # noqa: F401  (services register their quirks on import)
from emulator.profiles import QUIRKS
from emulator.wire.cometql import SWITCHES

ROOT = Path(__file__).resolve().parents[2]


def headings(page: Path) -> set[str]:
    return set(re.findall(r"(?m)^#+ (\S+)\s*$", page.read_text(encoding="utf-8")))


def test_every_quirk_points_at_a_heading_of_its_page():
    assert QUIRKS
    for name, quirk in QUIRKS.items():
        page, _, anchor = quirk.spec.partition("#")
        assert page.startswith("docs/quirks/") and anchor == name, quirk
        assert (ROOT / page).is_file(), quirk.spec
        assert name in headings(ROOT / page), f"{quirk.spec}: no heading '{name}'"


def test_every_documented_quirk_exists():
    """No page describes a quirk that the registry does not know (a renamed or removed one)."""
    documented = set()
    for page in (ROOT / "docs" / "quirks").glob("*.md"):
        documented |= {h for h in headings(page) if re.fullmatch(r"[a-z0-9_]+", h)}
    assert documented == set(QUIRKS)


def test_parser_switches_point_at_the_cometql_page():
    page = ROOT / "docs" / "quirks" / "cometql.md"
    for name, switch in SWITCHES.items():
        path, _, anchor = switch.spec.partition("#")
        assert path == "docs/quirks/cometql.md" and anchor in headings(page), (name, switch.spec)


def test_no_document_or_code_points_outside_the_repository():
    """Nothing tracked refers to the folder beside the clone (../shared) or to spec files there."""
    offenders = []
    for path in ROOT.rglob("*"):
        rel = path.relative_to(ROOT)
        if not path.is_file() or rel.parts[0] in (".git", ".venv", "node_modules", "build", "dist", "reports") \
                or "__pycache__" in rel.parts or ".egg-info" in str(rel) or path.suffix in (".sqlite", ".pyc"):
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        if re.search(r"\.\./shared\b|shared/(spec|seed|parity)/|COMETBENCH_SHARED", text) and rel != Path(
                "tests/unit/test_docs.py"):
            offenders.append(str(rel))
    assert offenders == []


# --- README.md ---------------------------------------------------------------------------------------

README = (ROOT / "README.md").read_text(encoding="utf-8")


def recorded_kinds() -> set[tuple[str, str]]:
    """(service, kind) of every ``.record(service, kind, ...)`` call in emulator/ and bench/."""
    import ast

    kinds: set[tuple[str, str]] = set()
    for path in [*ROOT.joinpath("emulator").rglob("*.py"), *ROOT.joinpath("bench").rglob("*.py")]:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        constants = {node.targets[0].id: node.value.value for node in ast.walk(tree)
                     if isinstance(node, ast.Assign) and len(node.targets) == 1
                     and isinstance(node.targets[0], ast.Name) and isinstance(node.value, ast.Constant)}
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "record" \
                    and len(node.args) >= 2:
                values: list[Any] = []
                for arg in node.args[:2]:
                    if isinstance(arg, ast.Constant):
                        values.append(arg.value)
                    elif isinstance(arg, ast.Name) and arg.id in constants:
                        values.append(constants[arg.id])
                    else:
                        raise AssertionError(f"{path}:{node.lineno}: journal kind not a literal: {ast.unparse(arg)}")
                kinds.add((values[0], values[1]))
    return kinds


def documented_kinds() -> set[tuple[str, str]]:
    section = README[README.index("### The journal"):README.index("## Using it from Python")]
    kinds = set()
    for service, cell in re.findall(r"(?m)^\| (\w+) \| ((?:`\w+`(?:, )?)+) \|", section):
        kinds |= {(service, kind) for kind in re.findall(r"`(\w+)`", cell)}
    return kinds


def test_readme_lists_exactly_the_journal_kinds_the_code_records():
    recorded, documented = recorded_kinds(), documented_kinds()
    assert len(recorded) > 40
    assert recorded - documented == set(), "recorded but not in README's journal table"
    assert documented - recorded == set(), "in README's journal table but never recorded"


def test_readme_lists_every_config_key():
    from dataclasses import fields

    from emulator.config import Config

    section = README[README.index("### Configuration: every key"):README.index("### Pointing an application")]
    documented = set(re.findall(r"(?m)^\| `\[*(\w+)\]*` \|", section))
    assert documented == {f.name for f in fields(Config)}


def test_readme_python_example_runs(tmp_path):
    import subprocess
    import sys

    (code,) = re.findall(r"```python\n(.*?)```", README, re.S)
    script = tmp_path / "example.py"
    script.write_text(code)
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["message {'text': 'hi'}", "5 auth=hash authorized=True"]


def test_readme_names_every_system_package_that_ci_installs():
    ci = (ROOT / ".ci" / "run").read_text()
    packages = set(re.findall(r"need\+=\(([\w-]+)\)", ci))
    assert {"php-cli", "php-mysql", "mariadb-client", "sip-tester", "chromium", "nodejs"} <= packages
    section = README[README.index("## What a machine needs"):README.index("## The two commands")]
    for package in packages:
        assert f"`{package}`" in section, package


def test_every_make_target_that_runs_something_passes_args():
    makefile = (ROOT / "Makefile").read_text()
    targets = dict(re.findall(r"(?m)^([\w-]+):[^\n]*\n((?:\t[^\n]*\n)+)", makefile))
    runners = {name: recipe for name, recipe in targets.items() if "$(BIN)/" in recipe and name != "$(VENV)/.installed"}
    expected = {"serve", "test", "quirks", "journal", "bench-ws", "bench-cometql", "bench-sip", "bench-journal"}
    assert expected <= set(runners)
    for name, recipe in runners.items():
        assert "$(ARGS)" in recipe, name
    for name in runners:
        if name.startswith("bench-"):
            assert f"`make {name}`" in README, f"README does not say how long {name} runs"
