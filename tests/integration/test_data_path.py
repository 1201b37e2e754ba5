"""Given the stack, uploads stream into Parquet and preprocessing matches the plain pandas computation."""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pa_parquet
import pytest
import requests

from tests.integration.test_jobs_http import submit, wait_for
from tests.services import RedisServer, Stack

pytestmark = pytest.mark.integration

LIMIT = 1 << 20  # the small API's upload limit


@pytest.fixture(scope="module")
def small_api(redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """An API alone (uploads need no worker) whose upload limit is 1 MiB."""
    root = tmp_path_factory.mktemp("small-api")
    api = Stack(redis_server, root / "store", env={"BIGMODEL_MAX_UPLOAD_BYTES": str(LIMIT)})
    try:
        api.spawn("api", "--port", str(api.port), "--workers", "1", log="api.log")
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if requests.get(api.url + "/healthz", timeout=5).status_code == 200:
                    break
            except requests.RequestException:
                time.sleep(0.3)
        yield api
    finally:
        api.stop()


def stored_files(store: Path) -> list[Path]:
    return [p for p in store.rglob("*") if p.is_file()] if store.exists() else []


def dataset_file(stack: Stack, dataset_id: str) -> Path:
    return stack.store / "tenants" / "default" / "datasets" / dataset_id / "data.parquet"


def csv_of(size: int) -> bytes:
    rows = "".join(f"{i},{i * 0.5}\n" for i in range(size // 8))
    return ("a,b\n" + rows).encode()[:size].rsplit(b"\n", 1)[0] + b"\n"


@pytest.mark.parametrize("size", [LIMIT + 512 * 1024, 3 * LIMIT])
def test_upload_over_the_limit_is_413_and_leaves_nothing(small_api: Stack, size: int) -> None:
    # Just over the limit: refused by the streaming check; far over: by the request's length.
    r = requests.post(f"{small_api.url}/v1/datasets", files={"file": ("big.csv", csv_of(size))}, timeout=60)
    assert r.status_code == 413, r.text
    assert r.headers["Content-Type"].startswith("application/problem+json")
    assert stored_files(small_api.store) == []
    assert requests.get(f"{small_api.url}/v1/datasets", timeout=10).json()["items"] == []


def test_chunked_upload_over_the_limit_is_413_and_leaves_nothing(small_api: Stack) -> None:
    payload = csv_of(3 * LIMIT)
    boundary = "bmtestboundary"
    head = (f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="c.csv"\r\n'
            "Content-Type: text/csv\r\n\r\n").encode()
    body = [head] + [payload[i:i + 65536] for i in range(0, len(payload), 65536)] + [
        f"\r\n--{boundary}--\r\n".encode()]
    r = requests.post(f"{small_api.url}/v1/datasets", data=iter(body), timeout=60,
                      headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    assert r.status_code == 413, r.text
    assert stored_files(small_api.store) == []


def test_upload_under_the_limit_is_stored(small_api: Stack) -> None:
    r = requests.post(f"{small_api.url}/v1/datasets", files={"file": ("ok.csv", csv_of(LIMIT // 2))},
                      data={"name": "ok"}, timeout=60)
    assert r.status_code == 201, r.text
    assert r.json()["name"] == "ok" and [c["dtype"] for c in r.json()["columns"]] == ["int64", "float64"]
    assert {p.name for p in stored_files(small_api.store)} == {"data.parquet", "meta.json"}


def test_types_that_change_after_the_first_block_are_widened(stack: Stack) -> None:
    rows = 400_000  # about 5 MB: far past pyarrow's first (type-inferring) block
    rng = np.random.default_rng(3)
    frame = pd.DataFrame({"n": rng.integers(0, 100, rows).astype(object), "s": rng.integers(0, 9, rows),
                          "y": rng.normal(size=rows)})
    frame.loc[rows - 10, "n"] = 12.5
    payload = frame.to_csv(index=False).encode()
    r = requests.post(f"{stack.url}/v1/datasets", files={"file": ("late.csv", payload)}, timeout=120)
    assert r.status_code == 201, r.text
    dataset = r.json()
    assert [c["dtype"] for c in dataset["columns"]] == ["float64", "int64", "float64"]
    stored = pd.read_parquet(dataset_file(stack, dataset["id"]))
    pd.testing.assert_frame_equal(stored, pd.read_csv(io.BytesIO(payload)), check_exact=True)
    again = requests.post(f"{stack.url}/v1/datasets", files={"file": ("again.csv", payload)}, timeout=120)
    assert again.status_code == 200 and again.json()["id"] == dataset["id"]  # same bytes, same dataset


def wide_frame(rows: int = 10_500, seed: int = 0) -> pd.DataFrame:
    """100 columns: an id, 97 numbers with gaps, a 10,000-category column, a binary label."""
    rng = np.random.default_rng(seed)
    columns: dict[str, object] = {"id": np.arange(rows)}
    for j in range(97):
        values = rng.normal(rng.uniform(-5, 5), rng.uniform(0.5, 3), rows)
        values[10_000:][rng.random(rows - 10_000) < 0.05] = np.nan  # gaps only where categories repeat
        columns[f"f{j}"] = values
    codes = np.concatenate([rng.permutation(10_000), rng.integers(0, 10_000, rows - 10_000)])
    columns["cat"] = [f"c{c}" for c in codes]
    columns["label"] = (columns["f0"] + rng.normal(0, 1, rows) > 0).astype(int)  # type: ignore[operator]
    return pd.DataFrame(columns)


def test_wide_data_with_ten_thousand_categories_matches_pandas(stack: Stack) -> None:
    raw = wide_frame()
    up = requests.post(f"{stack.url}/v1/datasets", files={"file": ("wide.csv", raw.to_csv(index=False))},
                       timeout=120)
    assert up.status_code == 201, up.text
    assert len(up.json()["columns"]) == 100
    params = {"dataset": up.json()["id"], "label": "label", "max_categories": 10_000,
              "split": {"train": 0.5, "validation": 0.25, "test": 0.25}}
    record = wait_for(stack.url, submit(stack.url, {"type": "preprocess", "params": params}).json()["id"],
                      timeout=280)
    assert record["state"] == "succeeded", record["error"]
    processed = requests.get(f"{stack.url}/v1/datasets/{record['result']['dataset']}", timeout=10).json()
    t = processed["transform"]
    table = pa_parquet.read_table(dataset_file(stack, processed["id"]))

    # The plain pandas computation of the same steps: dropna, statistics of the train rows, standardise.
    usable = raw.dropna().set_index("id", drop=False)
    split = np.asarray(table.column("__split__").to_pylist())
    id_at = t["features"].index("id")
    ids = np.rint(table.column(id_at).to_numpy() * t["scale"][id_at] + t["offset"][id_at]).astype(int)
    assert sorted(ids.tolist()) == sorted(usable.index.tolist())  # every usable row, once
    train = usable.loc[ids[split == "train"]]
    numeric = [c for c in raw.columns if c not in ("cat", "label")]
    assert t["numeric"] == numeric
    mean, std = train[numeric].mean(), train[numeric].std(ddof=0)
    got = np.column_stack([table.column(i).to_numpy() for i in range(len(numeric))])
    np.testing.assert_allclose(got, ((usable.loc[ids, numeric] - mean) / std).to_numpy(), atol=2e-5)

    categories = sorted(train["cat"].unique())
    assert t["categorical"]["cat"] == categories
    share = train["cat"].value_counts(normalize=True).reindex(categories).to_numpy()
    hot_mean, hot_std = share, np.sqrt(share * (1 - share))
    position = pd.Index(categories).get_indexer(usable.loc[ids, "cat"])  # -1: not seen in train
    first = len(numeric)
    for start in range(0, len(ids), 1000):  # a block of rows at a time keeps the expected matrix small
        rows = slice(start, start + 1000)
        expected = np.zeros((len(ids[rows]), len(categories)))
        seen = np.flatnonzero(position[rows] >= 0)
        expected[seen, position[rows][seen]] = 1.0
        block = np.column_stack([table.column(first + k).slice(start, 1000).to_numpy()
                                 for k in range(len(categories))])
        np.testing.assert_allclose(block, (expected - hot_mean) / hot_std, atol=2e-4)
    assert table.column("label").to_numpy().tolist() == usable.loc[ids, "label"].tolist()
