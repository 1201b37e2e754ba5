"""Settings: read once from the environment (BIGMODEL_*) into a frozen dataclass."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from bigmodel.errors import ConfigError

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"


def redact_url(url: str) -> str:
    """The URL with any password replaced by '***', safe for logs and error messages."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable url>"
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    netloc = f"{user}:***@{host}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def parse_tokens(text: str) -> dict[str, str]:
    """Parse 'tenant:token' pairs (comma or newline separated) into {token: tenant}."""
    tokens: dict[str, str] = {}
    for raw in text.replace("\n", ",").split(","):
        item = raw.strip()
        if not item or item.startswith("#"):
            continue
        tenant, sep, token = item.partition(":")
        if not sep or not tenant.strip() or not token.strip():
            raise ConfigError("each token entry must look like 'tenant:token'")
        tokens[token.strip()] = tenant.strip()
    return tokens


def _int(env: Mapping[str, str], key: str, default: int) -> int:
    value = env.get(key)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise ConfigError(f"{key} must be an integer, got {value!r}") from None


def _float(env: Mapping[str, str], key: str, default: float) -> float:
    value = env.get(key)
    if value is None or value == "":
        return default
    try:
        return float(value)
    except ValueError:
        raise ConfigError(f"{key} must be a number, got {value!r}") from None


@dataclass(frozen=True)
class Settings:
    """Every knob bigmodel has; nothing else reads os.environ."""

    redis_url: str = DEFAULT_REDIS_URL
    store_url: str = "./var/store"
    api_url: str = "http://127.0.0.1:8000"
    token: str | None = None
    tokens: Mapping[str, str] = field(default_factory=dict)  # token -> tenant
    lease_seconds: int = 30
    max_attempts: int = 3
    gpus: tuple[str, ...] | None = None  # None: detect
    gpu_fallback: str | None = None  # "cpu" routes GPU jobs to the CPU pool
    max_upload_bytes: int = 512 * 1024 * 1024
    task_soft_time_limit: int = 6 * 3600
    task_time_limit: int = 6 * 3600 + 300
    idempotency_ttl: int = 24 * 3600
    job_ttl_seconds: int = 30 * 24 * 3600
    event_limit: int = 10_000
    worker_heartbeat_seconds: int = 5
    redis_timeout: float = 2.0
    request_timeout: float = 30.0
    handover_seconds: int = 20  # a stopping worker's wait for running jobs to reach a checkpoint
    max_json_bytes: int = 1024 * 1024  # JSON bodies; uploads have their own limit
    sse_max_seconds: int = 600  # an event stream ends after this; clients reconnect with Last-Event-ID
    sse_heartbeat_seconds: int = 15
    job_index_limit: int = 100_000  # newest jobs listed per tenant (records stay in the store)

    @property
    def visibility_timeout(self) -> int:
        """Longer than the hard time limit so that Redis never redelivers a running job (celery#5935)."""
        return self.task_time_limit + 3600

    @property
    def redis_url_redacted(self) -> str:
        """The Redis URL without its password."""
        return redact_url(self.redis_url)

    @property
    def auth_enabled(self) -> bool:
        """True when tokens are configured; otherwise everything is the 'default' tenant."""
        return bool(self.tokens)

    def with_overrides(self, **changes: Any) -> Settings:
        """A copy with some fields changed (tests, CLI flags)."""
        return replace(self, **changes)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Build settings from BIGMODEL_* variables, with defaults for the rest."""
        env = os.environ if env is None else env
        tokens: dict[str, str] = {}
        if env.get("BIGMODEL_TOKENS"):
            tokens.update(parse_tokens(env["BIGMODEL_TOKENS"]))
        if env.get("BIGMODEL_TOKENS_FILE"):
            path = Path(env["BIGMODEL_TOKENS_FILE"])
            try:
                tokens.update(parse_tokens(path.read_text()))
            except OSError as exc:
                raise ConfigError(f"cannot read BIGMODEL_TOKENS_FILE: {exc.strerror}") from None
        gpus_raw = env.get("BIGMODEL_GPUS")
        gpus = None
        if gpus_raw is not None:
            gpus = tuple(g.strip() for g in gpus_raw.split(",") if g.strip())
        fallback = env.get("BIGMODEL_GPU_FALLBACK") or None
        if fallback not in (None, "cpu"):
            raise ConfigError("BIGMODEL_GPU_FALLBACK must be 'cpu' or unset")
        lease = _int(env, "BIGMODEL_LEASE_SECONDS", 30)
        if lease < 2:
            raise ConfigError("BIGMODEL_LEASE_SECONDS must be at least 2")
        soft = _int(env, "BIGMODEL_TASK_SOFT_TIME_LIMIT", 6 * 3600)
        hard = _int(env, "BIGMODEL_TASK_TIME_LIMIT", soft + 300)
        if hard <= soft:
            raise ConfigError("BIGMODEL_TASK_TIME_LIMIT must be longer than the soft limit")
        return cls(
            redis_url=env.get("BIGMODEL_REDIS_URL") or DEFAULT_REDIS_URL,
            store_url=env.get("BIGMODEL_STORE_URL") or "./var/store",
            api_url=env.get("BIGMODEL_API_URL") or "http://127.0.0.1:8000",
            token=env.get("BIGMODEL_TOKEN") or None,
            tokens=tokens,
            lease_seconds=lease,
            max_attempts=_int(env, "BIGMODEL_MAX_ATTEMPTS", 3),
            gpus=gpus,
            gpu_fallback=fallback,
            max_upload_bytes=_int(env, "BIGMODEL_MAX_UPLOAD_BYTES", 512 * 1024 * 1024),
            task_soft_time_limit=soft,
            task_time_limit=hard,
            request_timeout=_float(env, "BIGMODEL_REQUEST_TIMEOUT", 30.0),
            handover_seconds=_int(env, "BIGMODEL_HANDOVER_SECONDS", 20),
            max_json_bytes=_int(env, "BIGMODEL_MAX_JSON_BYTES", 1024 * 1024),
            sse_max_seconds=_int(env, "BIGMODEL_SSE_MAX_SECONDS", 600),
            job_index_limit=_int(env, "BIGMODEL_JOB_INDEX_LIMIT", 100_000),
        )
