"""One pattern for user-given names and ids: what passes, what is refused, what free text becomes."""

from __future__ import annotations

import pytest

from bigmodel.errors import InvalidRequest
from bigmodel.names import check_name, check_segment, is_dataset_id, is_job_id, safe_name


@pytest.mark.parametrize("good", ["blobs", "model-1", "a.b_c", "X" * 64, "9lives"])
def test_valid_names_pass(good: str) -> None:
    assert check_name(good) == good


@pytest.mark.parametrize("bad", ["", ".hidden", "../../../tmp/evil", "a/b", "a..b", "x" * 65, "sp ace",
                                 "-lead", 3, None, "é"])
def test_hostile_names_are_refused_with_the_rule(bad: object) -> None:
    with pytest.raises(InvalidRequest, match="letters, digits"):
        check_name(bad, "dataset name")


def test_free_text_becomes_a_safe_name_or_the_fallback() -> None:
    assert safe_name("my data (1)", "fb") == "my_data_1"
    assert safe_name("../../etc/passwd", "fb") == "etc_passwd"
    assert safe_name("...", "fb") == "fb"
    assert len(safe_name("a" * 300, "fb")) == 64


def test_ids_have_exact_shapes() -> None:
    assert is_job_id("0" * 32) and not is_job_id("0" * 31) and not is_job_id("g" * 32)
    assert not is_job_id("0" * 32 + ":events")
    assert is_dataset_id("a" * 64) and not is_dataset_id("A" * 64)


def test_store_segments_refuse_traversal() -> None:
    assert check_segment("epoch=3") == "epoch=3"
    for bad in ("..", "a/b", ".tmp", ""):
        with pytest.raises(InvalidRequest):
            check_segment(bad)
