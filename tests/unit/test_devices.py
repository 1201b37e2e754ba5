"""Training placement: strategy and precision from the visible GPUs; mirrored float16 training really runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from bigmodel.ml.devices import choose


def test_placement_follows_the_visible_gpus() -> None:
    assert choose([]) == choose([], "off")
    cpu = choose([])
    assert (cpu.strategy, cpu.devices, cpu.precision) == ("default", (), "float32")
    one = choose([("/GPU:0", (8, 0))])
    assert (one.strategy, one.precision) == ("default", "mixed_float16")
    two = choose([("/GPU:0", (9, 0)), ("/GPU:1", (9, 0))])
    assert (two.strategy, two.devices, two.precision) == ("mirrored", ("/GPU:0", "/GPU:1"), "mixed_float16")
    # Mixed precision only where every GPU has tensor cores (compute capability >= 7.0), and not when off
    assert choose([("/GPU:0", (6, 1))]).precision == "float32"
    assert choose([("/GPU:0", (8, 0)), ("/GPU:1", (6, 0))]).precision == "float32"
    assert choose([("/GPU:0", None)]).precision == "float32"
    assert choose([("/GPU:0", (8, 0))], "off").precision == "float32"
    assert "the CPU" in cpu.describe() and "/GPU:1" in two.describe()


TRAIN_MIRRORED = """
import json, numpy as np, tensorflow as tf, keras
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from bigmodel.ml import devices, models, training
placement = devices.Placement("mirrored", ("/cpu:0", "/cpu:1"), "mixed_float16")
with devices.training_scope(placement=placement):
    core = models.build_model({"task": "binary", "hidden": [8]}, 2, None, "adam", 0.01, 0)
rng = np.random.default_rng(0)
y = rng.integers(0, 2, 256).astype("float32")
x = np.stack([rng.normal(size=256) + 6 * y, rng.normal(size=256)], axis=1).astype("float32")
result = training.fit(core, (x, y), None, epochs=12, batch_size=32)
print(json.dumps({
    "strategy": type(core.distribute_strategy).__name__,
    "replicas": core.distribute_strategy.num_replicas_in_sync,
    "hidden": core.get_layer("dense_0").dtype_policy.name,
    "output": core.get_layer("output").dtype_policy.name,
    "policy_after": keras.config.dtype_policy().name,
    "accuracy": result.history["accuracy"][-1],
}))
"""


def test_a_model_built_in_the_scope_trains_mirrored_in_mixed_precision() -> None:
    # Two logical CPU devices stand in for two GPUs: the same MirroredStrategy code path trains on them
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
    out = subprocess.run([sys.executable, "-c", TRAIN_MIRRORED], capture_output=True, text=True, env=env,
                         timeout=240)
    assert out.returncode == 0, out.stderr[-3000:]
    seen = json.loads(out.stdout.strip().splitlines()[-1])
    assert seen["strategy"] == "MirroredStrategy" and seen["replicas"] == 2
    assert seen["hidden"] == "mixed_float16" and seen["output"] == "float32"
    assert seen["policy_after"] == "float32"  # the global policy is back for whatever runs next
    assert seen["accuracy"] > 0.85  # classes 6 sd apart: it learned
