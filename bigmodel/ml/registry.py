"""Model registry: names, atomic integer versions, aliases with their history, per-version metadata."""

from __future__ import annotations

import json
import uuid
from typing import Any

import redis

from bigmodel.clock import now_iso
from bigmodel.connections import text
from bigmodel.errors import InvalidRequest, NotFound, ServiceUnavailable
from bigmodel.names import check_name
from bigmodel.store import Store

RESERVED_ALIASES = frozenset({"latest"})
# What serving needs of a version, kept in Redis so that resolving a request's version is one round trip.
SERVING_FIELDS = ("version", "task", "transform", "created_at", "model_sha256")
_COMPLETE = "complete"  # field of the serving hash: every stored version is indexed in Redis
ALLOCATION_TTL = 30 * 86400  # a job's version stays reserved for it as long as a job record lives

# The version a job registers: the one it was given before, or the next free number. `floor` is
# the highest version folder in the store, so a counter lost with Redis never reuses a number.
# KEYS: counter, this job's allocation; ARGV: floor, ttl
ALLOCATE = """
local given = redis.call('GET', KEYS[2])
if given then return tonumber(given) end
local v = redis.call('INCR', KEYS[1])
if v <= tonumber(ARGV[1]) then
  v = tonumber(ARGV[1]) + 1
  redis.call('SET', KEYS[1], v)
end
redis.call('SET', KEYS[2], v, 'EX', tonumber(ARGV[2]))
return v
"""


def _replay(history: list[dict[str, Any]]) -> dict[str, int]:
    """Aliases as the history of their moves leaves them."""
    return {e["alias"]: int(e["to"]) for e in history if "alias" in e and "to" in e}


def _canonical(entry: dict[str, Any]) -> str:
    return json.dumps(entry, sort_keys=True)


class Registry:
    """One tenant's models. Files live in the store; counters and aliases in Redis (mirrored to the store)."""

    def __init__(self, client: redis.Redis, store: Store, tenant: str, prefix: str = "bm") -> None:
        self.r = client
        self.tenant = tenant
        self.store = store.tenant(tenant)
        self.prefix = f"{prefix}:t:{tenant}"

    def _key(self, name: str, what: str) -> str:
        return f"{self.prefix}:model:{name}:{what}"

    def allocate_version(self, name: str, job: str | None = None) -> int:
        """A version number for `job`: allocated once per job (every attempt gets the same), atomically,
        so two jobs finishing at once get two different numbers."""
        check_name(name)
        floor = max((int(e) for e in self.store.listdir(f"models/{name}") if e.isdigit()), default=0)
        owner = job or uuid.uuid4().hex
        keys = [self._key(name, "counter"), self._key(name, f"allocation:{owner}")]
        return int(self.r.eval(ALLOCATE, 2, *keys, floor, ALLOCATION_TTL))

    def version_dir(self, name: str, version: int) -> str:
        """The store folder of a version."""
        return f"models/{check_name(name)}/{int(version)}"

    def register(self, name: str, version: int, meta: dict[str, Any]) -> dict[str, Any]:
        """Publish a version whose files are already in the store (meta.json last, as the commit mark)."""
        record = {"version": version, "created_at": now_iso(), **meta}
        self.store.write_json(f"{self.version_dir(name, version)}/meta.json", record)
        self.r.sadd(f"{self.prefix}:models", name)
        self._index(name, [record])
        return record

    def _index(self, name: str, records: list[dict[str, Any]], complete: bool = False) -> None:
        """Remember published versions in Redis: a sorted set of numbers and a hash of serving fields."""
        pipe = self.r.pipeline(transaction=False)
        for record in records:
            number = int(record["version"])
            pipe.zadd(self._key(name, "versions"), {str(number): number})
            pipe.hset(self._key(name, "serving"), str(number),
                      json.dumps({k: record.get(k) for k in SERVING_FIELDS}))
        if complete:
            pipe.hset(self._key(name, "serving"), _COMPLETE, 1)
        pipe.execute()

    def version_numbers(self, name: str) -> list[int]:
        """Every published version number, oldest first, from Redis (rebuilt from the store once if lost)."""
        check_name(name)
        pipe = self.r.pipeline(transaction=False)
        pipe.hexists(self._key(name, "serving"), _COMPLETE)
        pipe.zrange(self._key(name, "versions"), 0, -1)
        complete, numbers = pipe.execute()
        if not complete:
            # Redis lost the index (or never saw these versions): the store is the system of record.
            records = self.versions(name)
            if records:  # an unknown name leaves no key behind
                self._index(name, records, complete=True)
            return [int(r["version"]) for r in records]
        return [int(n) for n in numbers]

    def serving_meta(self, name: str, version: int | str | None = "latest") -> dict[str, Any]:
        """What serving needs of a version (number, task, transform), resolved per call against Redis."""
        number = self.resolve_number(name, version)
        raw = self.r.hget(self._key(name, "serving"), str(number))
        if raw is not None:
            return json.loads(raw)  # type: ignore[no-any-return]
        try:
            record = self.store.read_json(f"models/{name}/{number}/meta.json")
        except FileNotFoundError:
            raise NotFound(f"model {name!r} has no version {number}") from None
        self._index(name, [record])
        return {k: record.get(k) for k in SERVING_FIELDS}

    def resolve_number(self, name: str, version: int | str | None) -> int:
        """A version number from a number, 'latest' or an alias, reading Redis (the store only on a miss)."""
        check_name(name)
        if isinstance(version, int) or (isinstance(version, str) and version.isdigit()):
            return int(version)
        alias = version or "latest"
        if alias == "latest":
            numbers = self.version_numbers(name)
            if not numbers:
                raise NotFound(f"no model {name!r}")
            return numbers[-1]
        check_name(alias, "alias")
        raw = self.r.hget(self._key(name, "aliases"), alias)
        if raw is not None:
            return int(raw)
        return self.resolve(name, alias)  # the slow path names what is missing: the model or the alias

    def names(self) -> list[str]:
        """Every model name of the tenant."""
        from_store = set(self.store.listdir("models"))
        from_redis = {text(n) for n in self.r.smembers(f"{self.prefix}:models")}
        return sorted(from_store | from_redis)

    def versions(self, name: str) -> list[dict[str, Any]]:
        """Every published version of a model, oldest first."""
        check_name(name)
        out = []
        for entry in self.store.listdir(f"models/{name}"):
            if entry.isdigit():
                try:
                    out.append(self.store.read_json(f"models/{name}/{entry}/meta.json"))
                except FileNotFoundError:
                    continue  # being written, or a failed write: not published
        return sorted(out, key=lambda v: v["version"])

    def latest(self, name: str) -> int | None:
        """The newest published version, from the Redis index (no store listing per call)."""
        numbers = self.version_numbers(name)
        return numbers[-1] if numbers else None

    def aliases(self, name: str) -> dict[str, int]:
        """Alias -> version, with `latest` computed."""
        raw = self.r.hgetall(self._key(name, "aliases"))
        if raw:
            aliases = {text(k): int(v) for k, v in raw.items()}
        else:
            aliases = self._stored_aliases(name).get("aliases", {})
        latest = self.latest(name)
        if latest is not None:
            aliases["latest"] = latest
        return aliases

    def alias_history(self, name: str) -> list[dict[str, Any]]:
        """Every alias move, oldest first."""
        raw = self.r.lrange(self._key(name, "alias_history"), 0, -1)
        if raw:
            return [json.loads(x) for x in raw]
        return list(self._stored_aliases(name).get("history", []))

    def _stored_aliases(self, name: str) -> dict[str, Any]:
        try:
            return self.store.read_json(f"models/{name}/aliases.json")  # type: ignore[no-any-return]
        except FileNotFoundError:
            return {}

    def move_alias(self, name: str, alias: str, version: int, by: str) -> dict[str, Any]:
        """Point an alias at a version and record the move (when, by whom, from which version).

        Redis and the store's aliases.json are merged first, never overwritten: a Redis that lost
        its data (or came back older) gets the stored history back before the move is added.
        """
        check_name(alias, "alias")
        if alias in RESERVED_ALIASES:
            raise InvalidRequest(f"{alias!r} is computed (the newest version) and cannot be moved")
        if not self.store.exists(f"{self.version_dir(name, version)}/meta.json"):
            raise NotFound(f"model {name!r} has no version {version}")
        try:
            with self.r.lock(self._key(name, "alias_lock"), timeout=30, blocking_timeout=15):
                history = self._merged_history(name)
                entry = {"alias": alias, "from": _replay(history).get(alias), "to": version,
                         "at": now_iso(), "by": by}
                pipe = self.r.pipeline()
                pipe.hset(self._key(name, "aliases"), alias, version)
                pipe.rpush(self._key(name, "alias_history"), json.dumps(entry))
                pipe.execute()
                history.append(entry)
                self.store.write_json(f"models/{name}/aliases.json",
                                      {"aliases": _replay(history), "history": history})
        except redis.exceptions.LockError:
            raise ServiceUnavailable(f"another move of {name!r}'s aliases is in progress; retry") from None
        return entry

    def _merged_history(self, name: str) -> list[dict[str, Any]]:
        """The alias history of Redis and the store together, in time order; Redis gets what it lacked."""
        in_redis = [json.loads(x) for x in self.r.lrange(self._key(name, "alias_history"), 0, -1)]
        known = {_canonical(e) for e in in_redis}
        missing = [e for e in self._stored_aliases(name).get("history", []) if _canonical(e) not in known]
        if not missing:
            return in_redis
        merged = sorted(in_redis + missing, key=lambda e: str(e.get("at", "")))
        pipe = self.r.pipeline()
        pipe.delete(self._key(name, "alias_history"), self._key(name, "aliases"))
        pipe.rpush(self._key(name, "alias_history"), *[json.dumps(e) for e in merged])
        if _replay(merged):
            pipe.hset(self._key(name, "aliases"), mapping=_replay(merged))  # type: ignore[arg-type]
        pipe.execute()
        return merged

    def resolve(self, name: str, version: int | str | None = "latest") -> int:
        """A version number from a number, 'latest', or an alias; NotFound when there is none."""
        check_name(name)
        if isinstance(version, int) or (isinstance(version, str) and version.isdigit()):
            number = int(version)
            if not self.store.exists(f"models/{name}/{number}/meta.json"):
                raise NotFound(f"model {name!r} has no version {number}")
            return number
        alias = version or "latest"
        aliases = self.aliases(name)
        if not aliases:
            raise NotFound(f"no model {name!r}")
        if alias not in aliases:
            raise NotFound(f"model {name!r} has no alias {alias!r}")
        return aliases[alias]

    def version_meta(self, name: str, version: int | str | None = "latest") -> dict[str, Any]:
        """The metadata of a version (resolving aliases)."""
        number = self.resolve(name, version)
        return self.store.read_json(f"models/{name}/{number}/meta.json")  # type: ignore[no-any-return]

    def describe(self, name: str) -> dict[str, Any]:
        """The model as GET /v1/models/{name} shows it, with TF Serving's model_version_status."""
        versions = self.versions(name)
        if not versions:
            raise NotFound(f"no model {name!r}")
        public = ("version", "metrics", "params", "dataset", "job", "created_at", "features", "task",
                  "keras_backend", "saved_model")
        return {
            "name": name,
            "versions": [{k: v.get(k) for k in public} for v in versions],
            "aliases": self.aliases(name),
            "alias_history": self.alias_history(name),
            "model_version_status": [
                {"version": str(v["version"]), "state": "AVAILABLE",
                 "status": {"error_code": "OK", "error_message": ""}}
                for v in reversed(versions)
            ],
        }

    def summary(self, name: str) -> dict[str, Any]:
        """One line of GET /v1/models: the latest and production versions."""
        aliases = self.aliases(name)
        return {"name": name, "latest": aliases.get("latest"), "production": aliases.get("production"),
                "aliases": aliases}
