"""Serving pieces without services: thread plans, the model cache, the batcher, the protocol codecs."""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np
import pytest

from bigmodel.errors import InvalidRequest, NotFound
from bigmodel.serving import codecs
from bigmodel.serving.batcher import Batcher, passes
from bigmodel.serving.cache import ModelCache, process_cache
from bigmodel.serving.queue import InferReply, InferRequest
from bigmodel.threads import plan
from workers.pools import cpu_plan, gpu_plan, infer_plan

# --- threads ------------------------------------------------------------------------------------


def test_thread_plan_splits_cores_over_processes() -> None:
    assert plan(4, 8).intra == 2 and plan(3, 2).intra == 1 and plan(1, 16).intra == 16
    assert plan(1, 16).inter == 2 and plan(2, 2).inter == 1
    assert plan(4, 8, override=3).intra == 3
    env = plan(2, 8).env()
    assert env["TF_NUM_INTRAOP_THREADS"] == env["OMP_NUM_THREADS"] == env["OPENBLAS_NUM_THREADS"] == "4"


def test_every_pool_starts_its_processes_with_their_share_of_the_cores() -> None:
    cores = len(os.sched_getaffinity(0))
    assert cpu_plan(2, None, None).env["TF_NUM_INTRAOP_THREADS"] == str(max(1, cores // 2))
    assert cpu_plan(None, None, None, "8,1").env["OMP_NUM_THREADS"] == str(max(1, cores // 8))
    assert gpu_plan(("0", "1"), None, None, threads=3)[1].env["MKL_NUM_THREADS"] == "3"
    plans = infer_plan(2, None)
    assert [p.name.split("@")[0] for p in plans] == ["infer0", "infer1"]
    assert all(p.queues == ("infer",) and p.env["BIGMODEL_THREADS"] == str(max(1, cores // 2))
               for p in plans)
    assert infer_plan(None, None)[0].name.split("@")[0] == "infer"


# --- the model cache ----------------------------------------------------------------------------


class Sized:
    def __init__(self, nbytes: int) -> None:
        self.nbytes = nbytes


def test_cache_is_lru_and_bounded_by_count_and_bytes() -> None:
    cache = ModelCache(max_items=2, max_bytes=100)
    loads: list[tuple] = []

    def get(key: tuple, size: int = 10) -> Any:
        return cache.get(key, lambda: loads.append(key) or Sized(size))

    get(("t", "m", 1))
    get(("t", "m", 2))
    get(("t", "m", 1))  # hit: version 1 becomes the most recently used
    get(("t", "m", 3))  # over the count: version 2 (least recently used) goes
    assert cache.keys() == [("t", "m", 1), ("t", "m", 3)]
    assert loads == [("t", "m", 1), ("t", "m", 2), ("t", "m", 3)]
    get(("t", "big", 1), size=95)  # over the bytes: everything older goes, the new one stays
    assert cache.keys() == [("t", "big", 1)]
    get(("t", "huge", 1), size=500)  # alone over the bytes: kept, or it would reload every time
    assert cache.keys() == [("t", "huge", 1)]
    stats = cache.stats()
    assert (stats.hits, stats.misses, stats.evictions, stats.nbytes) == (1, 5, 4, 500)


def test_a_forked_child_never_uses_its_parents_cached_models() -> None:
    parent = process_cache(4, 10)
    parent.get(("t", "m", 1), lambda: Sized(1))
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: a cache of its own, empty
        child = process_cache(4, 10)
        os.write(write, json.dumps([child is parent, len(child.keys())]).encode())
        os._exit(0)
    os.waitpid(pid, 0)
    assert json.loads(os.read(read, 100)) == [False, 0]
    assert process_cache(4, 10) is parent


# --- the batcher --------------------------------------------------------------------------------


class Doubler:
    """A stand-in predictor: checks the width like Predictor.check, outputs 2 * row sum."""

    width = 3

    def __init__(self) -> None:
        self.calls: list[int] = []

    def check(self, x: np.ndarray) -> np.ndarray:
        if x.shape[1] != self.width or not np.all(np.isfinite(x)):
            raise InvalidRequest(f"expected {self.width} features")
        return x

    def forward(self, x: np.ndarray) -> np.ndarray:
        self.calls.append(len(x))
        return 2 * x.sum(axis=1, keepdims=True)


def request(version: int, rows: int, width: int = 3, deadline: float = 1e12, fill: float = 1.0,
            model: str = "m") -> InferRequest:
    return InferRequest("t", model, version, np.full((rows, width), fill, np.float32), deadline, 0.0,
                        id=os.urandom(8).hex())


def test_batcher_groups_per_version_and_gives_each_caller_its_rows() -> None:
    models = {1: Doubler(), 2: Doubler()}

    def get(tenant: str, model: str, version: int) -> Doubler:
        if model == "gone":
            raise NotFound("no such version")
        return models[version]

    batch = [request(1, 2, fill=1), request(2, 1, fill=5), request(1, 3, fill=2), request(1, 1, width=4),
             request(1, 1, deadline=0.5), request(2, 2, model="gone"), request(1, 1, fill=np.nan)]
    outcome = Batcher(get, max_rows=64).run(batch, now=1.0)
    replies = {r.id: reply for r, reply in outcome.replies}
    assert batch[4].id not in replies  # past its deadline: dropped, not computed
    np.testing.assert_array_equal(replies[batch[0].id].outputs, [[6], [6]])
    np.testing.assert_array_equal(replies[batch[2].id].outputs, [[12], [12], [12]])
    np.testing.assert_array_equal(replies[batch[1].id].outputs, [[30]])
    assert replies[batch[3].id].status == 400 and replies[batch[6].id].status == 400
    assert replies[batch[5].id].status == 404
    assert models[1].calls == [5] and models[2].calls == [1]  # one forward pass per version
    assert outcome.passes == [2, 1]
    assert outcome.outcomes == {"ok": 3, "client_error": 3, "expired": 1}


def test_passes_hold_at_most_max_rows_and_a_big_request_runs_alone() -> None:
    sizes = [[len(r.x) for r in p] for p in passes([request(1, n) for n in (3, 3, 5, 20, 1, 1)], 8)]
    assert sizes == [[3, 3], [5], [20], [1, 1]]


def test_a_failing_forward_pass_fails_only_its_requests() -> None:
    class Broken(Doubler):
        def forward(self, x: np.ndarray) -> np.ndarray:
            raise RuntimeError("kernel fault")

    models = {1: Broken(), 2: Doubler()}
    outcome = Batcher(lambda t, m, v: models[v], 64).run([request(1, 1), request(2, 1)], now=0.0)
    assert [reply.status for _, reply in outcome.replies] == [500, 200]
    assert "logged" in outcome.replies[0][1].error and "kernel" not in outcome.replies[0][1].error


def test_requests_and_replies_cross_redis_as_json() -> None:
    sent = request(3, 2, fill=0.25)
    got = InferRequest.from_json(sent.to_json())
    assert (got.tenant, got.model, got.version, got.id) == ("t", "m", 3, sent.id)
    np.testing.assert_array_equal(got.x, sent.x)
    with pytest.raises(InvalidRequest):
        InferRequest.from_json(sent.to_json().replace('"m"', '"../etc"'))
    reply = InferReply.from_json(InferReply(outputs=np.ones((2, 1), np.float32)).to_json())
    assert reply.status == 200 and reply.outputs.shape == (2, 1)
    gone = InferReply(status=404, error="gone")
    assert InferReply.from_json(gone.to_json()) == gone


# --- codecs -------------------------------------------------------------------------------------


def binary_body(x: np.ndarray, declared: int | None = None, extra: bytes = b"") -> tuple[bytes, str]:
    raw = x.astype("<f4").tobytes()
    header = json.dumps({"inputs": [{"name": "features", "datatype": "FP32", "shape": list(x.shape),
                                     "parameters": {"binary_data_size": declared or len(raw)}}],
                         "parameters": {"binary_data_output": True, "timeout": 250000}}).encode()
    return header + raw + extra, str(len(header))


def test_v2_binary_and_json_tensors_decode_to_the_same_rows() -> None:
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    decoded = codecs.decode_v2(*binary_body(x))
    np.testing.assert_array_equal(codecs.v2_features(decoded), x)
    assert decoded.binary_output and decoded.timeout == 0.25
    as_json = json.dumps({"inputs": [{"name": "features", "datatype": "INT64", "shape": [2, 3],
                                      "data": [[0, 1, 2], [3, 4, 5]]}], "id": "7"}).encode()
    decoded = codecs.decode_v2(as_json, None)
    np.testing.assert_array_equal(codecs.v2_features(decoded), x)
    assert not decoded.binary_output and decoded.id == "7"


@pytest.mark.parametrize("body,header,reason", [
    (*binary_body(np.ones((1, 3)), declared=8), "binary_data_size"),
    (*binary_body(np.ones((1, 3)), extra=b"\0\0\0\0"), "belong to no input"),
    (b'{"inputs": []}', None, "non-empty"),
    (b'{"inputs": [{"name": "f", "datatype": "BYTES", "shape": [1], "data": ["a"]}]}', None, "numeric"),
    (b'{"inputs": [{"name": "f", "datatype": "FP32", "shape": [2, 3], "data": [1, 2]}]}', None, "needs 6"),
    (b'{"inputs": [{"name": "f", "datatype": "FP32", "shape": [1, -3], "data": [1]}]}', None, "shape"),
    (b"\xff\xfe", None, "not valid JSON"),
    (b'{"inputs": [1]}', "999", "outside the body"),
])
def test_v2_bodies_that_cannot_be_read_are_400_with_the_reason(body: bytes, header: str | None,
                                                               reason: str) -> None:
    with pytest.raises(InvalidRequest, match=reason):
        codecs.decode_v2(body, header)


def test_v2_responses_in_binary_carry_the_header_length() -> None:
    y = np.array([[0.5], [0.25]], np.float32)
    body, headers = codecs.encode_v2("m", 3, codecs.decode_v2(*binary_body(np.ones((2, 3)))), y)
    split = int(headers[codecs.HEADER_LENGTH])
    header = json.loads(body[:split])
    assert header["model_version"] == "3" and header["outputs"][0]["parameters"]["binary_data_size"] == 8
    np.testing.assert_array_equal(np.frombuffer(body[split:], "<f4"), [0.5, 0.25])
    with pytest.raises(InvalidRequest, match="one output"):
        codecs.v2_features(codecs.V2Request(None, {"features": y}, outputs=["probabilities"]))


def test_tfserving_bodies() -> None:
    assert codecs.decode_tfserving({"instances": [[1, 2]]}).rows == [[1, 2]]
    columnar = codecs.decode_tfserving({"inputs": {"a": [1, 2]}})
    assert columnar.columns == {"a": [1, 2]} and columnar.columnar
    assert set(codecs.encode_tfserving(columnar, np.ones((2, 1)))) == {"predictions", "outputs"}
    for bad in ({}, {"instances": []}, {"instances": [[1]], "inputs": [[1]]}, {"inputs": 3},
                {"signature_name": "other", "instances": [[1]]}):
        with pytest.raises(InvalidRequest):
            codecs.decode_tfserving(bad)


def test_every_inference_route_is_in_the_openapi_document(tmp_path) -> None:
    import re

    from api import create_app
    from api.errors import speaks_inference_protocol
    from api.openapi import document
    from bigmodel.config import Settings

    app = create_app(Settings(redis_url="redis://127.0.0.1:1/0", store_url=str(tmp_path)), celery=object())
    paths = document()["paths"]
    routes = [(method.lower(), re.sub(r"<(?:[^:>]+:)?([^>]+)>", r"{\1}", rule.rule))
              for rule in app.url_map.iter_rules() for method in rule.methods - {"HEAD", "OPTIONS"}
              if speaks_inference_protocol(rule.rule)]
    assert len(routes) == 12
    for method, path in routes:
        assert method in paths.get(path, {}), f"{method} {path} is not documented"
        assert "InferenceError" in json.dumps(paths[path][method]["responses"]["4XX"])


def test_inference_bodies_are_bounded_before_they_are_read(tmp_path) -> None:
    import redis

    from bigmodel.config import Settings
    from bigmodel.errors import PayloadTooLarge
    from bigmodel.serving.dataplane import DataPlane
    from bigmodel.store import Store

    plane = DataPlane(redis.Redis(), Store(str(tmp_path)), Settings())
    MAX_BODY_BYTES = Settings().limits.body_bytes
    plane.check_body(MAX_BODY_BYTES)
    plane.check_body(None)
    with pytest.raises(PayloadTooLarge, match="BIGMODEL_MAX_BODY_BYTES.*predict job"):
        plane.check_body(MAX_BODY_BYTES + 1)
