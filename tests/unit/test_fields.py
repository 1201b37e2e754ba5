"""Job record fields as Redis holds them."""

from __future__ import annotations

from bigmodel.jobs.fields import decode, encode


def test_a_record_field_holding_nan_still_reads() -> None:
    # A diverged training's loss is NaN: json writes it, orjson refuses it, the record must still read.
    record = decode({b"state": b"succeeded", b"result": encode("result", {"loss": float("nan")}).encode()})
    assert record["state"] == "succeeded" and record["result"]["loss"] != record["result"]["loss"]
