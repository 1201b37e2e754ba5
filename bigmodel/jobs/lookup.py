"""Finding a tenant's jobs by the first characters of their id (what a person types)."""

from __future__ import annotations

import re

from bigmodel.errors import InvalidRequest
from bigmodel.jobs.records import Jobs

_PREFIX = re.compile(r"^[0-9a-f]{1,32}$")


def by_prefix(jobs: Jobs, tenant: str, prefix: str, limit: int = 10) -> list[str]:
    """Ids of the tenant's jobs that start with `prefix` (at most `limit`), from its own index only."""
    if not _PREFIX.match(prefix):
        raise InvalidRequest("an id prefix is 1-32 lowercase hexadecimal digits")
    found: list[str] = []
    # ZSCAN walks this tenant's index, never the keyspace; MATCH keeps the answer small.
    for member, _ in jobs.r.zscan_iter(jobs.index_key(tenant), match=f"{prefix}*", count=1000):
        found.append(member.decode())
        if len(found) >= limit:
            break
    return found
