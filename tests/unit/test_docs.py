"""The docs stand alone: the README links only files that exist, and docs/api.md's routes table is the
one the code describes."""

from __future__ import annotations

import re
from pathlib import Path

from api.openapi import routes_table

ROOT = Path(__file__).resolve().parents[2]


def test_readme_links_only_files_in_the_repository() -> None:
    text = (ROOT / "README.md").read_text()
    links = re.findall(r"\]\(([^)#]+)\)", text)
    assert "docs/api.md" in links and "docs/design.md" in links and "docs/dashboard.png" in links
    for link in links:
        if not link.startswith(("http://", "https://")):
            assert (ROOT / link).is_file(), link
            assert (ROOT / link).resolve().is_relative_to(ROOT), link  # nothing outside the repository
    assert "../shared" not in text


def test_the_routes_table_of_docs_api_is_current() -> None:
    text = (ROOT / "docs" / "api.md").read_text()
    table = re.search(r"<!-- routes:.*?-->\n(.*?)\n<!-- end routes -->", text, re.S)
    assert table is not None
    assert table.group(1) == routes_table(), "regenerate it: .venv/bin/python -m api.openapi"
