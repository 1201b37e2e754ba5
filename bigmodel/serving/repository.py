"""The model repository of a process: versions resolved against Redis, predictors from the process cache."""

from __future__ import annotations

import logging
from typing import Any

import redis

from bigmodel.cache import machine_cache
from bigmodel.config import Settings
from bigmodel.errors import BigModelError
from bigmodel.ml.registry import Registry
from bigmodel.serving.cache import ModelCache, process_cache
from bigmodel.store import Store

log = logging.getLogger(__name__)


class ModelRepository:
    """Predictors by (tenant, name, version or alias); the predict/evaluate jobs and serving share it."""

    def __init__(self, client: redis.Redis, store: Store, settings: Settings,
                 cache: ModelCache | None = None) -> None:
        self.r = client
        self.store = store
        self.settings = settings
        self.cache = cache or process_cache(settings.model_cache_items, settings.model_cache_mb)

    def registry(self, tenant: str) -> Registry:
        """A tenant's registry."""
        return Registry(self.r, self.store, tenant)

    def get(self, tenant: str, name: str, version: int | str | None = "latest") -> tuple[Any, dict[str, Any]]:
        """(Predictor, serving meta) of a version; an alias is resolved now, the model loaded at most once."""
        registry = self.registry(tenant)
        meta = registry.serving_meta(name, version)
        number = int(meta["version"])
        predictor = self.cache.get((tenant, name, number), lambda: self._load(registry, name, meta))
        return predictor, meta

    def get_version(self, tenant: str, name: str, version: int) -> Any:
        """The Predictor of a version number: no Redis round trip once it is cached."""
        def load() -> Any:
            registry = self.registry(tenant)
            return self._load(registry, name, registry.serving_meta(name, int(version)))

        return self.cache.get((tenant, name, int(version)), load)

    def _load(self, registry: Registry, name: str, meta: dict[str, Any]) -> Any:
        from bigmodel.ml.models import MODEL_FILE
        from bigmodel.serving.predictor import Predictor

        folder = registry.version_dir(name, int(meta["version"]))
        machine = machine_cache(self.settings)
        try:
            if machine is not None and meta.get("model_sha256"):
                # Downloaded once per machine; versions registered before the hash was kept are read directly.
                with machine.hold(registry.store, f"{folder}/{MODEL_FILE}", meta["model_sha256"]) as path:
                    predictor = Predictor.load(path, meta["transform"])
            else:
                predictor = Predictor.from_store(registry.store, folder, meta["transform"])
        except FileNotFoundError as exc:
            raise BigModelError(f"model {name!r} version {meta['version']} has no model file") from exc
        log.info("loaded model %s/%s v%s (%d bytes of weights)", registry.tenant, name, meta["version"],
                 predictor.nbytes)
        return predictor

    def warm(self, specs: tuple[str, ...]) -> list[str]:
        """Load the `production` version (else the latest) of each "tenant/model" or "model"; say which."""
        loaded = []
        for spec in specs:
            tenant, _, name = spec.rpartition("/")
            tenant = tenant or "default"
            for ref in ("production", "latest"):
                try:
                    _, meta = self.get(tenant, name, ref)
                except BigModelError as exc:
                    log.warning("warm-up of %s (%s): %s", spec, ref, exc.message)
                    continue
                loaded.append(f"{tenant}/{name}/{meta['version']}")
                break
        return loaded
