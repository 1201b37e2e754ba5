"""A predictions table: model outputs as Arrow columns, with a null prediction and a reason for unusable rows.

Every block of one model version gets the same schema (a label column keeps its type even in a block
whose every row is null), so the blocks and shards of one job write, and merge into, one Parquet file.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pa_compute

REASON = "reason"  # why a row has no prediction (null where it has one)


def _classes(task: str, classes: list[Any] | None, n_outputs: int) -> pa.Array:
    """The label values by class index (the indices themselves when the transform does not name them)."""
    if classes is not None:
        return pa.array(classes)
    return pa.array(range(2 if task == "binary" else n_outputs), type=pa.int64())


def schema(task: str, classes: list[Any] | None, n_outputs: int) -> pa.Schema:
    """probability+label (binary), prob_<class>...+label (multiclass) or prediction (regression); reason."""
    label = pa.field("label", _classes(task, classes, n_outputs).type)
    if task == "binary":
        fields = [pa.field("probability", pa.float64()), label]
    elif task == "multiclass":
        names = [str(c) for c in classes] if classes is not None else [str(i) for i in range(n_outputs)]
        fields = [pa.field(f"prob_{name}", pa.float64()) for name in names] + [label]
    else:
        fields = [pa.field("prediction", pa.float64())]
    return pa.schema([*fields, pa.field(REASON, pa.string())])


def table(task: str, classes: list[Any] | None, outputs: np.ndarray,
          reasons: np.ndarray | None = None) -> pa.Table:
    """One block of predictions; rows with a reason get nulls in every prediction column."""
    out = np.asarray(outputs, dtype=np.float64).reshape(len(outputs), -1)
    n_outputs = out.shape[1]
    target = schema(task, classes, n_outputs)
    mask = None if reasons is None else pd.notna(reasons)
    columns: list[pa.Array] = []
    if task == "regression":
        columns.append(pa.array(out.reshape(-1), mask=mask))
    else:
        if task == "binary":
            scores = [out[:, -1]]  # (n, 1), or (n, 2) whose last column is P(class 1)
            index = (scores[0] >= 0.5).astype(np.int64)
        else:
            scores = [out[:, i] for i in range(n_outputs)]
            index = np.argmax(out, axis=1).astype(np.int64)
        columns += [pa.array(s, mask=mask) for s in scores]
        columns.append(pa_compute.take(_classes(task, classes, n_outputs), pa.array(index, mask=mask)))
    columns.append(pa.nulls(len(out), pa.string()) if reasons is None else pa.array(reasons, pa.string()))
    return pa.Table.from_arrays(columns, schema=target)


def with_reasons(entries: list[dict[str, Any]], reasons: np.ndarray | None) -> list[dict[str, Any]]:
    """Inline predictions (Predictor.format) with an unusable row's values null and its reason added."""
    if reasons is None:
        return entries
    for i in np.flatnonzero(pd.notna(reasons)):
        entries[i] = {**dict.fromkeys(entries[i]), REASON: reasons[i]}
    return entries
