"""Schemathesis reads /openapi.json and fuzzes every route: no 5xx, and every answer as documented.

Valid requests (as the document describes them) and invalid ones (which must get a 4xx) alike; routes
that take an id are fuzzed with random ids and with the id of a job (or dataset) that exists, so the
generated query strings and headers reach the code behind the lookup.
`make test` runs a few examples per route; `make fuzz` runs many (BIGMODEL_FUZZ_EXAMPLES).
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from api import create_app
from api.errors import speaks_inference_protocol
from api.openapi import ROUTES
from api.openapi_shapes import PARAMETERS, path_parameter
from bigmodel.config import Settings

pytestmark = pytest.mark.integration

EXAMPLES = int(os.environ.get("BIGMODEL_FUZZ_EXAMPLES", "8"))


def no_server_error(ctx: Any, response: Any, case: Any) -> None:
    """No 5xx, except the inference routes' 503 + Retry-After: no serving process runs in this test,
    and saying so is what the protocols ask (any other 5xx, there or anywhere, is a bug)."""
    headers = {k.lower(): v for k, v in response.headers.items()}  # name -> list of values
    if response.status_code == 503 and speaks_inference_protocol(case.formatted_path) \
            and headers.get("retry-after"):
        return
    not_a_server_error(ctx, response, case)


CHECKS = [no_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
KNOWN = {"/v1/jobs/{id}": "job", "/v1/datasets/{id}": "dataset"}  # path prefixes whose id we can give


@dataclass
class Target:
    schema: schemathesis.BaseSchema
    ids: dict[str, str]


@pytest.fixture(scope="module")
def target(redis_server, tmp_path_factory: pytest.TempPathFactory) -> Target:
    config = Settings(redis_url=redis_server.url, store_url=str(tmp_path_factory.mktemp("fuzz-store")),
                      sse_max_seconds=1, max_upload_bytes=1024 * 1024)
    app = create_app(config)
    client = app.test_client()
    job = client.post("/v1/jobs", json={"type": "ping", "params": {}}).get_json()["id"]
    dataset = client.post("/v1/datasets", data={"file": (io.BytesIO(b"a,b\n1,2\n"), "d.csv")},
                          content_type="multipart/form-data").get_json()["id"]
    return Target(schemathesis.openapi.from_wsgi("/openapi.json", _from_loopback(app.wsgi_app)),
                  {"job": job, "dataset": dataset})


def _from_loopback(wsgi_app: Any) -> Any:
    # Schemathesis' WSGI client names no client address; this app (no tokens) serves loopback only.
    def app(environ: dict[str, Any], start_response: Any) -> Any:
        environ["REMOTE_ADDR"] = "127.0.0.1"
        return wsgi_app(environ, start_response)

    return app


def variants() -> list[tuple[str, str, bool, GenerationMode]]:
    """(method, path, with a known id, mode) for every route; invalid requests only where there is input."""
    out = []
    for method, path, _, body, _ in ROUTES:
        for known_id in (False, True) if any(path.startswith(p) for p in KNOWN) else (False,):
            # Path parameters free to be wrong: those with a shape (any string is a valid `{name}`).
            free = [seg for seg in path.split("/") if seg.startswith("{") and not (known_id and seg == "{id}")
                    and "pattern" in path_parameter(path, seg.strip("{}"))["schema"]]
            has_input = free or body or PARAMETERS.get((method, path))
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE) if has_input else \
                    (GenerationMode.POSITIVE,):
                out.append((method, path, known_id, mode))
    return out


@pytest.mark.parametrize(("method", "path", "known_id", "mode"), variants(),
                         ids=lambda v: {True: "known-id", False: "any-id"}.get(v, getattr(v, "value", v)))
def test_no_5xx_and_answers_match_the_document(target: Target, method: str, path: str, known_id: bool,
                                               mode: GenerationMode) -> None:
    operation = target.schema[path][method.upper()]
    fixed = {}
    if known_id:
        fixed = {"id": next(target.ids[kind] for prefix, kind in KNOWN.items() if path.startswith(prefix))}
    strategy = operation.as_strategy(generation_mode=mode, path_parameters=fixed or None)

    @given(case=strategy)
    @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
    def fuzz(case) -> None:
        case.call_and_validate(checks=CHECKS)

    fuzz()
