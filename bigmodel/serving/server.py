"""A serving process: takes requests off the `infer` list in batches, answers each on its reply key."""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
from typing import Any

import redis

from bigmodel import threads
from bigmodel.config import Settings
from bigmodel.connections import redis_client
from bigmodel.jobs.presence import Presence
from bigmodel.ml import backend
from bigmodel.serving.batcher import Batcher, BatchOutcome
from bigmodel.serving.queue import QUEUE_KEY, InferQueue, InferRequest
from bigmodel.serving.repository import ModelRepository
from bigmodel.stats import RedisMetrics
from bigmodel.store import Store

log = logging.getLogger(__name__)
POOL = "infer"


class Server:
    """One serving process: a model cache, a batcher and a heartbeat; single-threaded on the model."""

    def __init__(self, settings: Settings, name: str, processes: int = 1) -> None:
        self.settings = settings
        self.name = name
        # Long enough for BRPOP's block (1 s) and a model's first load from a slow store.
        self.r = redis_client(settings, timeout=30)
        self.queue = InferQueue(self.r)
        self.presence = Presence(self.r)
        self.metrics = RedisMetrics(self.r)
        self.repository = ModelRepository(self.r, Store(settings.store_url), settings)
        self.batcher = Batcher(self.repository.get_version, settings.infer_max_batch)
        self.threads = threads.plan(processes, override=settings.threads)
        self._stop = threading.Event()
        self._last_batch = 0

    def info(self) -> dict[str, Any]:
        """What the heartbeat publishes (and /readyz shows)."""
        stats = self.repository.cache.stats()
        return {"pool": POOL, "queues": [QUEUE_KEY], "concurrency": 1, "host": socket.gethostname(),
                "pid": os.getpid(), "gpus": [], "threads": {"intra": self.threads.intra,
                                                            "inter": self.threads.inter},
                "backend": backend.name(),
                "models": ["/".join(map(str, k)) for k in self.repository.cache.keys()],
                "cache_bytes": stats.nbytes, "max_batch": self.settings.infer_max_batch,
                "max_wait_ms": self.settings.infer_max_wait_ms}

    def beat(self) -> None:
        """Tell the API (503 check) and /readyz (presence) that this process serves."""
        ttl = self.settings.worker_heartbeat_seconds * 3
        self.presence.beat(self.name, self.info(), ttl=ttl)
        self.queue.beat(self.name, ttl=ttl)

    def _heartbeat(self) -> None:
        while not self._stop.wait(self.settings.worker_heartbeat_seconds):
            try:
                self.beat()
            except redis.exceptions.RedisError:
                log.warning("heartbeat to Redis failed; trying again")

    def stop(self, *_: Any) -> None:
        """Finish the current batch, then leave."""
        self._stop.set()

    def run(self) -> None:
        """Warm up, announce, then serve until stopped."""
        backend.configure_threads(self.threads)  # the runtime Keras loaded
        loaded = self.repository.warm(self.settings.infer_warm)
        if loaded:
            log.info("warm: %s", ", ".join(loaded))
        self.beat()
        beats = threading.Thread(target=self._heartbeat, name="bigmodel-heartbeat", daemon=True)
        beats.start()
        log.info("serving process %s ready (threads %s)", self.name, self.threads)
        try:
            while not self._stop.is_set():
                try:
                    self.round()
                except redis.exceptions.RedisError:
                    log.warning("Redis unreachable; serving resumes when it is back")
                    self._stop.wait(1.0)
        finally:
            self._stop.set()
            try:
                self.presence.leave(self.name)
                self.queue.leave(self.name)
            except redis.exceptions.RedisError:
                log.warning("could not deregister %s", self.name)

    def round(self) -> int:
        """Take one batch of requests, answer them; returns how many were taken."""
        # Wait for stragglers only under load: a lone request (light traffic) goes at once.
        wait = self.settings.infer_max_wait_ms / 1000 if self._last_batch > 1 else 0.0
        raw = self.queue.take(self.settings.infer_max_batch, max_wait=wait)
        if not raw:
            self._last_batch = 0
            return 0
        requests = []
        malformed = 0
        for item in raw:
            try:
                requests.append(InferRequest.from_json(item))
            except (ValueError, KeyError, TypeError):
                malformed += 1  # not ours (no reply key to answer on): count it and go on
        self._last_batch = len(raw)
        outcome = self.batcher.run(requests, time.time())
        if malformed:
            outcome.outcomes["malformed"] += malformed
        self._publish(outcome)
        return len(raw)

    def _publish(self, outcome: BatchOutcome) -> None:
        """Every reply and every metric of the round in one round trip."""
        now = time.time()
        pipe = self.r.pipeline(transaction=False)
        self.queue.answer(outcome.replies, pipe)
        self.metrics.observe_many("bigmodel_infer_batch_size", [float(n) for n in outcome.passes], pipe=pipe)
        self.metrics.observe_many("bigmodel_infer_latency_seconds",
                                  [now - request.sent for request, _ in outcome.replies], pipe=pipe)
        for label, count in outcome.outcomes.items():
            self.metrics.inc("bigmodel_infer_requests_total", {"outcome": label}, count, pipe=pipe)
        pipe.execute()


def serve(settings: Settings, name: str, processes: int = 1) -> None:
    """Run a serving process in the foreground until SIGTERM or SIGINT."""
    server = Server(settings, name, processes)
    signal.signal(signal.SIGTERM, server.stop)
    signal.signal(signal.SIGINT, server.stop)
    server.run()
