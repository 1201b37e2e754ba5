"""Settings: read once from the environment (BIGMODEL_*) into a frozen dataclass."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from bigmodel.errors import ConfigError
from bigmodel.limits import Limits
from bigmodel.names import is_name

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
DEFAULT_API_URL = "http://127.0.0.1:8000"
# Keras 3 backends a worker may run (KERAS_BACKEND); TensorFlow's fast paths are used only on the first.
KERAS_BACKENDS = ("tensorflow", "jax", "torch")


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
        if not is_name(tenant.strip()):
            # Tenants become Redis keys and store folders: the same rule as every other name.
            raise ConfigError(f"invalid tenant name {tenant.strip()!r} in the tokens: use 1-64 letters, "
                              "digits, '.', '_' or '-', starting with a letter or digit")
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
    api_url: str = DEFAULT_API_URL
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
    # TLS for rediss:// URLs: the CA that signed the server's certificate, and a client certificate
    # and key where the server asks for one (tls-auth-clients).
    redis_tls_ca: str | None = None
    redis_tls_cert: str | None = None
    redis_tls_key: str | None = None
    request_timeout: float = 30.0
    # S3-compatible stores (MinIO...): the endpoint from AWS_ENDPOINT_URL(_S3); keys stay in botocore's chain.
    s3_endpoint_url: str | None = None
    cache_dir: str = "./var/cache"  # this machine's cache of models and datasets
    cache_bytes: int = 10 * 2**30  # 0 turns the cache off
    gpus_per_process: int = 1
    mixed_precision: str = "auto"  # "auto": float16 compute on GPUs of compute capability >= 7.0; "off"
    keras_backend: str = "tensorflow"  # what a worker runs Keras on (bigmodel worker --backend)
    # Online inference (docs/inference.md): the wait for an answer, micro-batching, the model cache.
    infer_timeout: float = 30.0
    infer_max_batch: int = 64
    infer_max_wait_ms: float = 2.0
    infer_warm: tuple[str, ...] = ()  # "tenant/model" or "model" (default tenant) to load at start
    model_cache_items: int = 8
    model_cache_mb: int = 1024
    threads: int | None = None  # math threads per process; None: cores / processes of the pool
    predict_shard_rows: int = 250_000  # a predict job on more rows fans out into shards of at most this
    # Bounds on costly parameters and per-tenant request rates (bigmodel/limits.py, docs/security.md).
    limits: Limits = field(default_factory=Limits)
    public_details: bool = False  # /readyz shows worker names to callers without a token
    handover_seconds: int = 20  # a stopping worker's wait for running jobs to reach a checkpoint
    sse_max_seconds: int = 600  # an event stream ends after this; clients reconnect with Last-Event-ID
    sse_heartbeat_seconds: int = 15
    job_index_limit: int = 100_000  # newest jobs listed per tenant (records stay in the store)

    @property
    def store_is_remote(self) -> bool:
        """Whether the store is reached over the network (s3://, gs://...) rather than a local folder."""
        scheme = self.store_url.split("://", 1)[0].lower() if "://" in self.store_url else "file"
        return scheme not in ("file", "local")

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

    @property
    def store_options(self) -> dict[str, Any]:
        """fsspec options for the store URL: the S3 endpoint when one is set (credentials never pass here)."""
        if self.s3_endpoint_url and self.store_url.startswith(("s3://", "s3a://")):
            return {"endpoint_url": self.s3_endpoint_url}
        return {}

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
        per_process = _int(env, "BIGMODEL_GPUS_PER_PROCESS", 1)
        if per_process < 1:
            raise ConfigError("BIGMODEL_GPUS_PER_PROCESS must be at least 1")
        mixed = env.get("BIGMODEL_MIXED_PRECISION") or "auto"
        if mixed not in ("auto", "off"):
            raise ConfigError("BIGMODEL_MIXED_PRECISION must be 'auto' or 'off'")
        keras_backend = env.get("BIGMODEL_KERAS_BACKEND") or "tensorflow"
        if keras_backend not in KERAS_BACKENDS:
            raise ConfigError(f"BIGMODEL_KERAS_BACKEND must be one of {', '.join(KERAS_BACKENDS)}")
        return cls(
            redis_url=env.get("BIGMODEL_REDIS_URL") or DEFAULT_REDIS_URL,
            store_url=env.get("BIGMODEL_STORE_URL") or "./var/store",
            api_url=env.get("BIGMODEL_API_URL") or DEFAULT_API_URL,
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
            redis_tls_ca=env.get("BIGMODEL_REDIS_TLS_CA") or None,
            redis_tls_cert=env.get("BIGMODEL_REDIS_TLS_CERT") or None,
            redis_tls_key=env.get("BIGMODEL_REDIS_TLS_KEY") or None,
            s3_endpoint_url=env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL") or None,
            cache_dir=env.get("BIGMODEL_CACHE_DIR") or "./var/cache",
            cache_bytes=_int(env, "BIGMODEL_CACHE_BYTES", 10 * 2**30),
            gpus_per_process=per_process,
            mixed_precision=mixed,
            limits=Limits.from_env(env),
            public_details=env.get("BIGMODEL_PUBLIC_DETAILS", "").lower() in ("1", "true", "yes"),
            keras_backend=keras_backend,
            handover_seconds=_int(env, "BIGMODEL_HANDOVER_SECONDS", 20),
            sse_max_seconds=_int(env, "BIGMODEL_SSE_MAX_SECONDS", 600),
            job_index_limit=_int(env, "BIGMODEL_JOB_INDEX_LIMIT", 100_000),
            **_serving_settings(env),
        )


def _serving_settings(env: Mapping[str, str]) -> dict[str, Any]:
    """The online-inference, thread and batch-prediction knobs, checked."""
    shard_rows = _int(env, "BIGMODEL_PREDICT_SHARD_ROWS", 250_000)
    if shard_rows < 1:
        raise ConfigError("BIGMODEL_PREDICT_SHARD_ROWS must be at least 1")
    out: dict[str, Any] = {
        "infer_timeout": _float(env, "BIGMODEL_INFER_TIMEOUT", 30.0),
        "infer_max_batch": _int(env, "BIGMODEL_INFER_MAX_BATCH", 64),
        "infer_max_wait_ms": _float(env, "BIGMODEL_INFER_MAX_WAIT_MS", 2.0),
        "infer_warm": tuple(w.strip() for w in env.get("BIGMODEL_INFER_WARM", "").split(",") if w.strip()),
        "model_cache_items": _int(env, "BIGMODEL_MODEL_CACHE_ITEMS", 8),
        "model_cache_mb": _int(env, "BIGMODEL_MODEL_CACHE_MB", 1024),
        "threads": _int(env, "BIGMODEL_THREADS", 0) or None,
        "predict_shard_rows": shard_rows,
    }
    if out["infer_timeout"] <= 0 or out["infer_max_batch"] < 1 or out["infer_max_wait_ms"] < 0:
        raise ConfigError("BIGMODEL_INFER_TIMEOUT must be > 0, BIGMODEL_INFER_MAX_BATCH >= 1 and "
                          "BIGMODEL_INFER_MAX_WAIT_MS >= 0")
    if out["model_cache_items"] < 1 or out["model_cache_mb"] < 1:
        raise ConfigError("BIGMODEL_MODEL_CACHE_ITEMS and BIGMODEL_MODEL_CACHE_MB must be at least 1")
    return out
