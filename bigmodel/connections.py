"""Making Redis clients from the settings, in one place (so auth and TLS options apply everywhere)."""

from __future__ import annotations

from typing import Any

import redis

from bigmodel.config import Settings


def redis_client(settings: Settings, *, timeout: float | None = None, **options: Any) -> redis.Redis:
    """A Redis client for the settings' URL; `timeout` bounds connects and replies (None: the setting)."""
    limit = settings.redis_timeout if timeout is None else timeout
    return redis.Redis.from_url(settings.redis_url, socket_timeout=limit, socket_connect_timeout=limit,
                                health_check_interval=10, **options)
