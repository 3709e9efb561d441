"""Every scope a service requires is one identity can grant."""

from __future__ import annotations

import re
from pathlib import Path

from contracts.permissions import ALL_SCOPES

ROOT = Path(__file__).resolve().parents[2]
REQUIRED = re.compile(r"""require\(\s*["']([a-z_]+:[a-z_]+)["']\s*\)""")
ANY_OF = re.compile(r"""require_any\(([^)]*)\)""")
SCOPE = re.compile(r"""["']([a-z_]+:[a-z_]+)["']""")


def test_required_scopes_are_known() -> None:
    found: dict[str, list[str]] = {}
    for source in (ROOT / "services").glob("*/src/**/*.py"):
        text = source.read_text()
        scopes = REQUIRED.findall(text)
        for listed in ANY_OF.findall(text):
            scopes.extend(SCOPE.findall(listed))
        for scope in scopes:
            found.setdefault(scope, []).append(str(source.relative_to(ROOT)))
    assert found, "no require(...) found: the pattern is out of date"
    unknown = {scope: files for scope, files in found.items() if scope not in ALL_SCOPES}
    assert not unknown, f"scopes required but never granted: {unknown}"
