"""The baselines' Celery app for bench/inference.py: a no-op task and the naive load-and-predict task.

Run by `celery -A bench.inference_tasks worker`; the broker and backend are BIGMODEL_REDIS_URL and the
model files come from BIGMODEL_STORE_URL, as for bigmodel's own workers.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from celery import Celery

from bigmodel.config import Settings
from bigmodel.store import Store

QUEUE = "bench_baseline"
settings = Settings.from_env()
app = Celery("bench_baseline", broker=settings.redis_url, backend=settings.redis_url)
app.conf.update(task_serializer="json", result_serializer="json", accept_content=["json"],
                task_default_queue=QUEUE, worker_hijack_root_logger=False, result_expires=600)


@app.task(name="bench.noop")
def noop() -> int:
    """Nothing: the queue's own round trip."""
    return 0


@app.task(name="bench.naive_predict")
def naive_predict(tenant: str, folder: str, row: list[float]) -> list[float]:
    """What a naive queue predict does: load the model for this request, then model.predict."""
    import keras
    import numpy as np

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.keras"
        path.write_bytes(Store(settings.store_url).tenant(tenant).read_bytes(f"{folder}/model.keras"))
        model = keras.saving.load_model(path)
    return [float(v) for v in model.predict(np.asarray([row], np.float32), verbose=0)[0]]
