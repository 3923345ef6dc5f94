"""The README stays true: every setting and every route is documented."""

from __future__ import annotations

from pathlib import Path

import pytest
from starlette.routing import Mount, Route

from sdrest.app import create_app
from sdrest.settings import load_settings, setting_fields

ROOT = Path(__file__).parents[2]
README = (ROOT / "README.md").read_text()
# The README shows each family with examples; docs/ holds each family's full endpoint reference.
DOCS = README + "".join(p.read_text() for p in sorted((ROOT / "docs").glob("*.md")))


@pytest.mark.parametrize("name", sorted(setting_fields()))
def test_every_setting_is_documented(name: str) -> None:
    assert "--" + name.replace("_", "-") in README


def _paths() -> list[str]:
    app = create_app(load_settings({}, env={}))
    paths = []
    for route in app.routes:
        if isinstance(route, Mount):
            paths += [route.path + sub.path for sub in route.routes if isinstance(sub, Route)]
        elif isinstance(route, Route):
            paths.append(route.path)
    return paths


def test_every_route_is_documented() -> None:
    missing = [p for p in _paths() if p.replace("{job_id}", "job_...") not in DOCS]
    assert not missing, f"undocumented routes: {missing}"
