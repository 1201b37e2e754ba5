"""Given tokens for two tenants, each sees only its own jobs; a missing or wrong token is 401."""

from __future__ import annotations

import redis

from api import create_app
from bigmodel.config import Settings


def test_tokens_map_to_tenants_and_isolate_them(redis_server, tmp_path) -> None:
    redis.Redis.from_url(redis_server.url).flushdb()
    settings = Settings(redis_url=redis_server.url, store_url=str(tmp_path),
                        tokens={"tok-a": "acme", "tok-b": "beta"})
    client = create_app(settings).test_client()
    a, b = {"Authorization": "Bearer tok-a"}, {"Authorization": "Bearer tok-b"}
    assert client.get("/v1/jobs").status_code == 401
    assert client.get("/v1/jobs", headers={"Authorization": "Bearer nope"}).status_code == 401
    assert client.get("/healthz").status_code == 200
    job = client.post("/v1/jobs", json={"type": "ping", "params": {}}, headers=a).get_json()
    assert client.get(f"/v1/jobs/{job['id']}", headers=a).status_code == 200
    assert client.get(f"/v1/jobs/{job['id']}", headers=b).status_code == 404
    assert client.post(f"/v1/jobs/{job['id']}/cancel", headers=b).status_code == 404
    assert client.get("/v1/jobs", headers=b).get_json()["items"] == []
    assert [j["id"] for j in client.get("/v1/jobs", headers=a).get_json()["items"]] == [job["id"]]
