"""Epoch checkpoints of a training run in the store, so that a later attempt resumes where one stopped.

A checkpoint is the model's weights with the optimizer's state (`epoch-<k>.weights.h5`) and a
`state.json` written after it: the epoch reached, the history so far, and whether training ended.
`state.json` is the commit mark, so a run stopped between the two writes resumes from the previous
checkpoint, never from half of one.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import keras

from bigmodel.store import Store

History = dict[str, list[float]]


def merge_history(before: History, after: History) -> History:
    """The history of epochs run before a resume followed by those run after it."""
    return {k: list(before.get(k, [])) + list(after.get(k, [])) for k in {*before, *after}}


class Checkpoints:
    """One training run's checkpoints in a store folder (the job's, the same for every attempt)."""

    def __init__(self, store: Store, folder: str) -> None:
        self.store = store
        self.folder = folder

    def _state(self) -> dict[str, Any] | None:
        try:
            state = self.store.read_json(f"{self.folder}/state.json")
        except (FileNotFoundError, ValueError):
            return None
        return state if isinstance(state, dict) else None

    def restore(self, core: keras.Model) -> tuple[int, History, bool]:
        """Load the last checkpoint into `core`; returns (epochs done, history so far, training ended)."""
        state = self._state()
        if not state:
            return 0, {}, False
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "checkpoint.weights.h5"
            path.write_bytes(self.store.read_bytes(f"{self.folder}/{state['weights']}"))
            # Build the optimizer's variables first, or its saved state would not be loaded.
            core.optimizer.build(core.trainable_variables)
            core.load_weights(path)
        return int(state["epoch"]), dict(state.get("history", {})), bool(state.get("complete"))

    def save(self, core: keras.Model, epoch: int, history: History, complete: bool = False) -> None:
        """Write the weights of `epoch`, then the state that points at them, then drop the older weights."""
        previous = self._state()
        name = f"epoch-{epoch}{'-final' if complete else ''}.weights.h5"
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / name
            core.save_weights(path)
            self.store.put_file(f"{self.folder}/{name}", path)
        self.store.write_json(f"{self.folder}/state.json",
                              {"epoch": epoch, "weights": name, "history": history, "complete": complete})
        if previous and previous.get("weights") != name:
            self.store.delete(f"{self.folder}/{previous['weights']}")

    def callback(self, history: History, fence: Callable[[], None] | None = None) -> keras.callbacks.Callback:
        """A Keras callback that checkpoints after every epoch (calling `fence` first, if given)."""
        return _EpochCheckpoint(self, history, fence)


class _EpochCheckpoint(keras.callbacks.Callback):
    def __init__(self, checkpoints: Checkpoints, history: History, fence: Callable[[], None] | None) -> None:
        super().__init__()
        self.checkpoints = checkpoints
        self.history: History = {k: list(v) for k, v in history.items()}
        self.fence = fence

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        for key, value in (logs or {}).items():
            try:
                self.history.setdefault(key, []).append(float(value))
            except (TypeError, ValueError):
                continue
        if self.fence is not None:
            self.fence()  # an attempt that is no longer current must not overwrite the checkpoint
        # Keras counts epochs from 0 (absolute, including initial_epoch): epoch + 1 are done.
        self.checkpoints.save(self.model, epoch + 1, json.loads(json.dumps(self.history)))
