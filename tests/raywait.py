"""Waiting on the shared test Ray session (its CPUs come back asynchronously)."""

from __future__ import annotations

import time

import pytest


def wait_cpus_free(ray, seconds: float, why: str) -> None:
    """Wait until every CPU of the Ray session is free; fail after ``seconds`` saying
    ``why``, what is available and which placement groups are still there."""
    from ray.util.placement_group import placement_group_table

    deadline = time.monotonic() + seconds
    while ray.available_resources().get("CPU", 0) < ray.cluster_resources()["CPU"]:
        if time.monotonic() > deadline:
            live = [
                (v["name"], v["state"])
                for v in placement_group_table().values()
                if v["state"] != "REMOVED"
            ]
            pytest.fail(
                f"{why}: available {ray.available_resources()}; "
                f"placement groups not removed: {live}"
            )
        time.sleep(0.01)
