"""The project's own documents say what the code does: quirk pages, README references.

Every quirk of the registry names a page and anchor under docs/quirks/ (``cometbench quirks`` prints
it), so each such page must exist and have a heading with the quirk's exact name.
"""

from __future__ import annotations

import re
from pathlib import Path

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
