"""The security docs say what the code does: every limit's setting and default as the code has them,
and every test they name as a proof exists."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from bigmodel.config import Settings
from bigmodel.limits import BOUNDS, QUOTAS, RATES, Limits

ROOT = Path(__file__).resolve().parents[2]
DOCS = {"README.md": ROOT / "README.md", "docs/security.md": ROOT / "docs" / "security.md"}


def shown(value: object) -> str:
    return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)


@pytest.mark.parametrize("doc", DOCS)
def test_every_limit_is_listed_with_its_setting_and_its_default(doc: str) -> None:
    text = DOCS[doc].read_text()
    defaults = {b.setting: getattr(Limits(), name) for name, b in {**BOUNDS, **QUOTAS}.items()}
    defaults |= {setting: getattr(Limits(), name) for name, setting in RATES.items()}
    defaults["BIGMODEL_MAX_UPLOAD_BYTES"] = Settings().max_upload_bytes
    for setting, default in defaults.items():
        assert re.search(rf"^\| `{setting}` \| {re.escape(shown(default))}\b", text, re.M), (doc, setting)


def test_every_test_named_as_a_proof_exists() -> None:
    text = DOCS["docs/security.md"].read_text()
    table = text[text.index("## Promises and their proofs"):]
    named = 0
    for row in re.findall(r"^\|.*\|$", table, re.M):
        module = None
        for ref in re.findall(r"`(tests/[\w/]+\.py)?(?:::(\w+))?`", row):
            path, func = ref
            module = path or module
            assert module and (ROOT / module).is_file(), row
            if func:
                tree = ast.parse((ROOT / module).read_text())
                defined = {n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)}
                assert func in defined, (module, func)
                named += 1
    assert named >= 15
