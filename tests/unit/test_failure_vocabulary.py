"""The failure model's numbers and words, without services: time limits, reaper cadence, error types."""

from __future__ import annotations

import re

import redis

from bigmodel import errors
from bigmodel.config import Settings
from bigmodel.jobs.execution import error_of
from bigmodel.jobs.jobtypes import JOB_TYPES, limits
from bigmodel.jobs.reaper import Reaper
from bigmodel.jobs.records import Jobs


def test_soft_below_hard_below_visibility_timeout_for_every_job_type() -> None:
    for settings in (Settings(), Settings.from_env({"BIGMODEL_TASK_SOFT_TIME_LIMIT": "60"})):
        for name in JOB_TYPES:
            lim = limits(name, settings)
            assert 0 < lim["soft"] < lim["hard"] <= settings.task_time_limit < settings.visibility_timeout
    assert limits("ping", Settings())["soft"] < limits("train", Settings())["soft"]  # per job type


def test_a_lost_worker_is_noticed_within_two_lease_periods() -> None:
    jobs = Jobs(redis.Redis(), lease_seconds=30)  # no connection is made: scripts register lazily
    reaper = Reaper(jobs, max_attempts=3)
    # A lease lapses at most one lease after the worker's last renewal; a reaper pass comes every half lease.
    assert reaper.period == 15 and jobs.lease_seconds + reaper.period < 2 * jobs.lease_seconds


def test_error_types_are_one_snake_case_vocabulary() -> None:
    codes = {c.code for c in vars(errors).values()
             if isinstance(c, type) and issubclass(c, errors.BigModelError)}
    assert all(re.fullmatch(r"[a-z]+(_[a-z]+)*", code) for code in codes)
    assert {"worker_lost", "time_limit", "cancelled", "invalid_input", "data_error", "store_error",
            "unavailable", "not_found"} <= codes
    assert errors.WorkerLost.retryable and errors.StoreError.retryable and not errors.DataError.retryable
    assert error_of(errors.DataError("bad column"))["type"] == "data_error"
    assert error_of(redis.exceptions.ConnectionError("down"))["type"] == "unavailable"
    assert error_of(KeyError("x"))["type"] == "internal_error"
