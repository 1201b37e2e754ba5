"""The online path on Redis: requests on the `infer` list, each answer on a reply key its caller waits on.

An inference request is not a job: no record, no events, no Celery message. The API pushes one small
JSON request (rows as base64 float32) with a reply key and a deadline, then blocks on the reply key;
a serving process pops whatever is waiting, answers every request of the batch in one pipeline, and
drops requests whose caller has already given up. Only JSON crosses Redis; the names in a request
were checked by the API, and the serving process checks them again before they become keys or paths.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from dataclasses import dataclass
from typing import Any

import numpy as np
import redis

from bigmodel.names import check_name

# The list is named like the queue, so `/readyz` and /metrics show its depth with the Celery queues.
QUEUE_KEY = "infer"
REPLY_TTL_SECONDS = 60
MIN_BLOCK_SECONDS = 0.001  # BRPOP's 0 means "forever": never ask for less than this

# Push only while some serving process's heartbeat is live: otherwise the caller learns it now (503),
# not after its timeout. KEYS: queue, servers; ARGV: request, now.
_SUBMIT = """
if redis.call('ZCOUNT', KEYS[2], ARGV[2], '+inf') == 0 then return 0 end
redis.call('LPUSH', KEYS[1], ARGV[1])
return 1
"""


def encode_array(x: np.ndarray) -> dict[str, Any]:
    """A float32 matrix as JSON: its shape and its little-endian bytes in base64."""
    arr = np.ascontiguousarray(x, dtype="<f4")
    return {"shape": list(arr.shape), "b64": base64.b64encode(arr.tobytes()).decode()}


def decode_array(value: dict[str, Any]) -> np.ndarray:
    """The matrix `encode_array` wrote; ValueError when the two parts disagree."""
    shape = tuple(int(d) for d in value["shape"])
    return np.frombuffer(base64.b64decode(value["b64"]), dtype="<f4").reshape(shape)


@dataclass(frozen=True)
class InferRequest:
    """Rows for one model version, from one caller who waits on `reply_key` until `deadline`."""

    tenant: str
    model: str
    version: int
    x: np.ndarray
    deadline: float  # time.time() after which nobody waits for the answer
    sent: float
    id: str = ""

    @property
    def reply_key(self) -> str:
        """Where the answer goes."""
        return f"bm:infer:reply:{self.id}"

    @property
    def group(self) -> tuple[str, str, int]:
        """Requests with the same group can share a forward pass."""
        return (self.tenant, self.model, self.version)

    def to_json(self) -> str:
        """The message pushed on the queue."""
        return json.dumps({"id": self.id, "tenant": self.tenant, "model": self.model,
                           "version": self.version, "deadline": self.deadline, "sent": self.sent,
                           "x": encode_array(self.x)})

    @classmethod
    def from_json(cls, raw: bytes | str) -> InferRequest:
        """Parse a queued message; ValueError (or KeyError/TypeError) when it is not one of ours."""
        body = json.loads(raw)
        if not isinstance(body.get("id"), str) or not body["id"].isalnum():
            raise ValueError("request without a usable id")
        return cls(tenant=check_name(body["tenant"], "tenant"), model=check_name(body["model"], "model"),
                   version=int(body["version"]), x=decode_array(body["x"]),
                   deadline=float(body["deadline"]), sent=float(body["sent"]), id=body["id"])


@dataclass(frozen=True)
class InferReply:
    """The answer to one request: outputs, or an HTTP status and a message."""

    outputs: np.ndarray | None = None
    status: int = 200
    error: str = ""

    def to_json(self) -> str:
        """The message pushed on the reply key."""
        if self.outputs is not None:
            return json.dumps({"status": 200, "y": encode_array(self.outputs)})
        return json.dumps({"status": self.status, "error": self.error})

    @classmethod
    def from_json(cls, raw: bytes | str) -> InferReply:
        """Parse a reply."""
        body = json.loads(raw)
        if body["status"] == 200:
            return cls(outputs=decode_array(body["y"]))
        return cls(status=int(body["status"]), error=str(body.get("error", "")))


class InferQueue:
    """Both ends of the online path: `submit`/`wait` for the API, `take`/`answer`/`beat` for servers."""

    def __init__(self, client: redis.Redis, prefix: str = "bm") -> None:
        self.r = client
        self.servers_key = f"{prefix}:infer:servers"
        self._submit = client.register_script(_SUBMIT)

    # --- the API's end --------------------------------------------------------------------------

    def new_request(self, tenant: str, model: str, version: int, x: np.ndarray,
                    timeout: float) -> InferRequest:
        """A request with a fresh id, due `timeout` seconds from now."""
        now = time.time()
        return InferRequest(tenant, model, version, x, deadline=now + timeout, sent=now, id=uuid.uuid4().hex)

    def submit(self, request: InferRequest) -> bool:
        """Queue a request; False (nothing queued) when no serving process is online."""
        return bool(self._submit(keys=[QUEUE_KEY, self.servers_key], args=[request.to_json(), time.time()]))

    def wait(self, request: InferRequest, client: redis.Redis | None = None) -> InferReply | None:
        """The reply, or None when the deadline passes first (`client` must allow that long a read)."""
        left = max(MIN_BLOCK_SECONDS, request.deadline - time.time())
        got = (client or self.r).blpop([request.reply_key], timeout=left)
        return None if got is None else InferReply.from_json(got[1])

    def servers(self) -> int:
        """How many serving processes have a live heartbeat."""
        return int(self.r.zcount(self.servers_key, time.time(), "+inf"))

    # --- a serving process's end ----------------------------------------------------------------

    def take(self, max_items: int, max_wait: float = 0.0, block: float = 1.0) -> list[bytes]:
        """Up to `max_items` requests, oldest first: what waits now, else the next one to come (up to
        `block` s); then stragglers for up to `max_wait` s more."""
        # Under load the list is rarely empty: one RPOP takes a whole batch in one round trip.
        items: list[Any] = self.r.rpop(QUEUE_KEY, max_items) or []  # type: ignore[assignment]
        if not items:
            first = self.r.brpop([QUEUE_KEY], timeout=block)
            if first is None:
                return []
            items = [first[1]]
            self._drain(items, max_items)
        deadline = time.monotonic() + max_wait
        while len(items) < max_items and (left := deadline - time.monotonic()) >= MIN_BLOCK_SECONDS:
            more = self.r.brpop([QUEUE_KEY], timeout=left)
            if more is None:
                break
            items.append(more[1])
            self._drain(items, max_items)
        return items

    def _drain(self, items: list[Any], max_items: int) -> None:
        if len(items) < max_items:
            items.extend(self.r.rpop(QUEUE_KEY, max_items - len(items)) or [])  # type: ignore[arg-type]

    def answer(self, replies: list[tuple[InferRequest, InferReply]], pipe: Any) -> None:
        """Queue every reply in `pipe` (the caller executes it with its metrics: one round trip)."""
        for request, reply in replies:
            pipe.rpush(request.reply_key, reply.to_json())
            pipe.expire(request.reply_key, REPLY_TTL_SECONDS)

    def beat(self, name: str, ttl: float) -> None:
        """Say that serving process `name` takes requests for the next `ttl` seconds."""
        now = time.time()
        pipe = self.r.pipeline(transaction=False)
        pipe.zadd(self.servers_key, {name: now + ttl})
        pipe.zremrangebyscore(self.servers_key, "-inf", now - 3600)
        pipe.execute()

    def leave(self, name: str) -> None:
        """Stop counting `name` as a server at once (clean shutdown)."""
        self.r.zrem(self.servers_key, name)
