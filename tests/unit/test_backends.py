"""Keras backends: a model trained on JAX or PyTorch serves on TensorFlow; each backend's compiled paths.

Training on another backend runs in a child process (Keras reads KERAS_BACKEND once, when it is first
imported), and with TensorFlow hidden from it, as on a GPU machine that carries only JAX or PyTorch:
what it needs must not lean on TensorFlow.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from bigmodel.cli import cli
from bigmodel.config import Settings
from bigmodel.errors import ConfigError
from bigmodel.ml.backend import IndexBatches, bucket
from bigmodel.ml.devices import choose
from bigmodel.serving.predictor import Predictor
from workers.pools import use_backend

ROOT = Path(__file__).resolve().parents[2]

HIDE_TENSORFLOW = """
import importlib.abc, importlib.machinery, sys
class NoTensorFlow(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    # Found (so find_spec probes do not break) but never loads: every import of TensorFlow fails.
    def find_spec(self, name, path, target=None):
        return importlib.machinery.ModuleSpec(name, self) if name.split(".")[0] == "tensorflow" else None
    def exec_module(self, module):
        raise ModuleNotFoundError(f"No module named {module.__name__!r}", name=module.__name__)
sys.meta_path.insert(0, NoTensorFlow())
"""

TRAIN = HIDE_TENSORFLOW + """
import json, numpy as np, keras
from bigmodel.ml import devices, models, training
from bigmodel.serving.predictor import Predictor
out, transform = sys.argv[1], json.loads(sys.argv[2])
data = np.load(f"{out}/data.npz")
x, y = data["x"], data["y"]
with devices.training_scope() as placement:
    core = models.build_model({"task": "multiclass", "hidden": [8]}, 4, 3, "adam", 0.02, 0)
norm = (x - np.asarray(transform["offset"], np.float32)) / np.asarray(transform["scale"], np.float32)
result = training.fit(core, (norm, y), (norm[:60], y[:60]), epochs=8, batch_size=32, seed=1)
saved = models.save_model(models.serving_model(core, transform), out)
served = Predictor.load(out, transform).predict_encoded(x)  # this backend's own compiled path
np.save(f"{out}/served.npy", served)
print(json.dumps({"backend": keras.backend.backend(), "placement": placement.describe(), "meta": saved.meta,
                  "accuracy": result.history["val_accuracy"][-1], "tensorflow": "tensorflow" in sys.modules}))
"""


def child(code: str, env: dict[str, str], *args: str) -> dict:
    """Run Python code in a child process with `env` added; its last stdout line, parsed as JSON."""
    out = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, cwd=ROOT,
                         env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **env}, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def three_classes(n: int = 300) -> tuple[np.ndarray, np.ndarray, dict]:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, n)
    x = (rng.normal(size=(n, 4)) + y[:, None] * [3.0, -2.0, 0, 0] + [40, 0, 0, 5]).astype(np.float32)
    transform = {"task": "multiclass", "features": list("abcd"), "normalize": "standard",
                 "offset": x.mean(0).tolist(), "scale": x.std(0).tolist(), "label_classes": ["p", "q", "r"]}
    return x, y, transform


@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_a_model_trained_on_another_backend_serves_on_tensorflow(backend: str, tmp_path: Path) -> None:
    if importlib.util.find_spec(backend) is None:
        pytest.skip(f"{backend} is not installed here (make install adds jax, and torch where its CPU "
                    "wheel lies on this disk)")
    x, y, transform = three_classes()
    np.savez(tmp_path / "data.npz", x=x, y=y)
    # Given a model trained, saved and served on `backend`, in a process that cannot load TensorFlow
    seen = child(TRAIN, {"KERAS_BACKEND": backend}, str(tmp_path), json.dumps(transform))
    assert seen["backend"] == backend and f"Keras on {backend}" in seen["placement"]
    assert seen["tensorflow"] is False and seen["accuracy"] > 0.85
    # Then its version meta names the backend and says why there is no SavedModel
    assert seen["meta"]["keras_backend"] == backend
    assert seen["meta"]["saved_model"]["exported"] is False
    assert "tensorflow" in seen["meta"]["saved_model"]["reason"]
    assert not (tmp_path / "saved_model").exists()
    # When this process (TensorFlow) serves the same .keras file, it gives the same outputs
    served_here = Predictor.load(tmp_path, transform).predict_encoded(x)
    np.testing.assert_allclose(served_here, np.load(tmp_path / "served.npy"), rtol=1e-5, atol=1e-6)


COMPILES = HIDE_TENSORFLOW + """
import json, keras, numpy as np
from bigmodel.ml import backend, devices, models, training
# Two virtual CPU devices stand in for two GPUs: the same DataParallel code path trains on them
placement = devices.choose([("cpu:0", (8, 0)), ("cpu:1", (8, 0))], backend="jax")
with devices.training_scope(placement=placement):
    core = models.build_model({"task": "binary", "hidden": [8]}, 2, None, "adam", 0.01, 0)
rng = np.random.default_rng(0)
y = rng.integers(0, 2, 256).astype("float32")
x = np.stack([rng.normal(size=256) + 6 * y, rng.normal(size=256)], axis=1).astype("float32")
result = training.fit(core, (x, y), None, epochs=6, batch_size=32)
traces = []
call = core.stateless_call
# Python runs only while jax traces: each call here is one program compiled
core.stateless_call = lambda *a, **k: traces.append(a[2].shape[0]) or call(*a, **k)
forward = backend.forward(core, 2)
sizes = [1, 5, 16, 17, 30, 32, 33, 64, 3, 7]
gaps = [float(np.abs(forward(x[:n]) - np.asarray(core(x[:n]))).max()) for n in sizes]
hidden = core.get_layer("dense_0")
print(json.dumps({"strategy": placement.strategy, "devices": len(hidden.kernel.value.sharding.device_set),
                  "precision": hidden.dtype_policy.name, "accuracy": result.history["accuracy"][-1],
                  "traces": traces, "gap": max(gaps), "sizes": sizes}))
"""


def test_jax_trains_data_parallel_and_serves_from_one_program_per_bucket() -> None:
    if importlib.util.find_spec("jax") is None:
        pytest.skip("jax is not installed here")
    env = {"KERAS_BACKEND": "jax", "XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
    seen = child(COMPILES, env)
    # The model trains replicated over both devices, in mixed precision (compute capability 8.0)
    assert seen["strategy"] == "data-parallel" and seen["devices"] == 2
    assert seen["precision"] == "mixed_float16" and seen["accuracy"] > 0.85
    # And ten batch sizes compiled one program per padded bucket, each once, none per request
    assert sorted(seen["traces"]) == sorted({bucket(n) for n in seen["sizes"]}) == [16, 32, 64]
    assert seen["gap"] < 1e-3  # float16 compute: the jitted and eager calls agree to its precision


def test_buckets_are_powers_of_two_with_a_floor() -> None:
    assert [bucket(n) for n in (1, 15, 16, 17, 64, 65, 4096)] == [16, 16, 16, 32, 64, 128, 4096]


def test_index_batches_cover_every_row_once_reshuffled_each_epoch_and_seeded() -> None:
    x = np.arange(100, dtype=np.float32).reshape(50, 2)
    y = np.arange(50, dtype=np.float32)

    def epochs(batches: IndexBatches, n: int = 2) -> list[list[float]]:
        orders = []
        for _ in range(n):
            orders.append([v for i in range(len(batches)) for v in batches[i][1].tolist()])
            batches.on_epoch_end()
        return orders

    first, second = epochs(IndexBatches(x, y, 8, seed=3))
    assert len(IndexBatches(x, y, 8, seed=3)) == 7
    assert sorted(first) == sorted(second) == list(range(50)) and first != second
    assert epochs(IndexBatches(x, y, 8, seed=3)) == [first, second]  # the same orders for the same seed
    assert epochs(IndexBatches(x, y, 8, seed=None))[0] == list(range(50))  # validation: in order
    for i in range(7):
        features, labels = IndexBatches(x, y, 8, seed=3)[i]
        np.testing.assert_array_equal(features[:, 0], labels * 2)  # rows stay whole


def test_multi_gpu_placement_per_backend() -> None:
    two = [("gpu:0", (8, 0)), ("gpu:1", (8, 0))]
    assert choose(two).strategy == "mirrored"
    jax = choose(two, backend="jax")
    assert (jax.strategy, jax.devices) == ("data-parallel", ("gpu:0", "gpu:1"))
    assert jax.precision == "mixed_float16"
    # Keras has no data-parallel training on torch: the first GPU trains and the log says the rest idle
    torch = choose([("cuda:0", (8, 0)), ("cuda:1", (8, 0))], backend="torch")
    assert (torch.strategy, torch.devices) == ("default", ("cuda:0",))
    assert "cuda:1 idle" in torch.describe() and "Keras on torch" in torch.describe()


def test_backend_setting_and_the_worker_option(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings.from_env({}).keras_backend == "tensorflow"
    assert Settings.from_env({"BIGMODEL_KERAS_BACKEND": "jax"}).keras_backend == "jax"
    with pytest.raises(ConfigError, match="BIGMODEL_KERAS_BACKEND"):
        Settings.from_env({"BIGMODEL_KERAS_BACKEND": "theano"})
    bad = CliRunner().invoke(cli, ["worker", "--backend", "theano"])
    assert bad.exit_code == 2 and "theano" in bad.output
    # Keras is loaded here on TensorFlow: switching now would be silently ignored, so it is refused
    import keras

    assert keras.backend.backend() == "tensorflow"
    monkeypatch.setenv("KERAS_BACKEND", "tensorflow")
    monkeypatch.setenv("BIGMODEL_KERAS_BACKEND", "tensorflow")
    with pytest.raises(ConfigError, match="already loaded on tensorflow"):
        use_backend("jax")
    use_backend("tensorflow")
    assert os.environ["BIGMODEL_KERAS_BACKEND"] == "tensorflow"
