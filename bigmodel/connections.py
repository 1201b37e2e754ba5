"""Making Redis clients from the settings, in one place (so auth and TLS options apply everywhere)."""

from __future__ import annotations

import ssl
from typing import Any

import redis

from bigmodel.config import Settings


def uses_tls(settings: Settings) -> bool:
    """Whether the Redis URL asks for TLS (rediss://)."""
    return settings.redis_url.lower().startswith("rediss://")


def tls_options(settings: Settings) -> dict[str, Any]:
    """redis-py's TLS keyword arguments for the settings (empty for plain redis://)."""
    if not uses_tls(settings):
        return {}
    options: dict[str, Any] = {"ssl_cert_reqs": "required"}
    for key, value in (("ssl_ca_certs", settings.redis_tls_ca), ("ssl_certfile", settings.redis_tls_cert),
                       ("ssl_keyfile", settings.redis_tls_key)):
        if value:
            options[key] = value
    return options


def celery_tls_options(settings: Settings) -> dict[str, Any] | None:
    """Celery's broker_use_ssl / redis_backend_use_ssl for the settings (None for plain redis://)."""
    options = tls_options(settings)
    if not options:
        return None
    return {**options, "ssl_cert_reqs": ssl.CERT_REQUIRED}


def text(value: Any) -> str:
    """A Redis reply (bytes, or str for a decoding client) as a string."""
    return value.decode() if isinstance(value, bytes) else str(value)


def redis_client(settings: Settings, *, timeout: float | None = None, **options: Any) -> redis.Redis:
    """A Redis client for the settings' URL; `timeout` bounds connects and replies (None: the setting)."""
    limit = settings.redis_timeout if timeout is None else timeout
    return redis.Redis.from_url(settings.redis_url, socket_timeout=limit, socket_connect_timeout=limit,
                                health_check_interval=10, **tls_options(settings), **options)
