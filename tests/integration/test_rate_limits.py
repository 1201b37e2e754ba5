"""Given two API processes on one Redis, a tenant's submission and inference rates are counted across both:
past the limit it gets 429 with Retry-After and a body naming the limit; another tenant is not limited."""

from __future__ import annotations

import io

import pytest
import requests

from tests.integration.conftest import INFER_RATE, SUBMIT_RATE, Secure

pytestmark = pytest.mark.integration


def flood(secure: Secure, tenant: str, path: str, count: int, **kw) -> list[tuple[int, requests.Response]]:  # type: ignore[no-untyped-def]
    """`count` requests alternating between the two API processes: (which process, response)."""
    out = []
    for i in range(count):
        url = secure.urls[i % 2]
        out.append((i % 2, requests.post(url + path, headers=secure.auth(tenant), timeout=60, **kw)))
    return out


def test_submissions_past_the_rate_are_429_counted_across_both_api_processes(secure: Secure) -> None:
    answers = flood(secure, "flood", "/v1/jobs", SUBMIT_RATE + 6, json={"type": "ping", "params": {}})
    accepted = [r for _, r in answers if r.status_code == 202]
    refused = [(api, r) for api, r in answers if r.status_code == 429]
    # Each process saw only about half the requests, so only a count shared in Redis refuses any.
    assert len(accepted) == SUBMIT_RATE and len(refused) == 6, [r.status_code for _, r in answers]
    assert {api for api, _ in refused} == {0, 1}
    for _, r in refused:
        assert r.headers["Content-Type"] == "application/problem+json"
        assert int(r.headers["Retry-After"]) >= 1
        body = r.json()
        assert body["status"] == 429 and body["limit"] == "submissions"
        assert body["setting"] == "BIGMODEL_RATE_SUBMIT" and body["rate"] == f"{SUBMIT_RATE} per 1 hour"
        assert "BIGMODEL_RATE_SUBMIT" in body["detail"] and "'flood'" in body["detail"]
    # Uploads share the submission budget: spent too.
    upload = requests.post(secure.urls[1] + "/v1/datasets", headers=secure.auth("flood"), timeout=60,
                           files={"file": ("x.csv", io.BytesIO(b"a,b\n1,2\n"))})
    assert upload.status_code == 429 and upload.json()["limit"] == "submissions"
    # Another tenant is not limited, on either process.
    for url in secure.urls:
        calm = requests.post(url + "/v1/jobs", headers=secure.auth("calm"), timeout=60,
                             json={"type": "ping", "params": {}})
        assert calm.status_code == 202, calm.text


def test_inference_past_the_rate_is_429_in_the_inference_protocols_error_shape(secure: Secure) -> None:
    v2 = {"inputs": [{"name": "features", "datatype": "FP32", "shape": [1, 1], "data": [0.0]}]}
    answers = flood(secure, "flood", "/v2/models/none/infer", INFER_RATE, json=v2)
    # Counted before the model is looked up: these are 404s (flood has no model), and they count.
    assert [r.status_code for _, r in answers] == [404] * INFER_RATE
    # :predict shares the inference budget; the refusal is {"error": ...} as TF Serving and KServe answer.
    for url, path, body in ((secure.urls[0], "/v1/models/none:predict", {"instances": [[0.0]]}),
                            (secure.urls[1], "/v2/models/none/infer", v2)):
        r = requests.post(url + path, headers=secure.auth("flood"), json=body, timeout=60)
        assert r.status_code == 429 and int(r.headers["Retry-After"]) >= 1, r.text
        assert r.headers["Content-Type"] == "application/json"
        assert set(r.json()) == {"error"} and "BIGMODEL_RATE_INFER" in r.json()["error"]
    calm = requests.post(secure.urls[1] + "/v2/models/none/infer", headers=secure.auth("calm"), json=v2,
                         timeout=60)
    assert calm.status_code == 404
