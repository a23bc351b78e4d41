"""Shared fixtures: one Ray instance for the whole test run (ray.init costs ~4 s)."""

from __future__ import annotations

import sys
import time

import pytest
import torch
from helpers import live_placement_groups


@pytest.fixture(scope="session")
def ray_session():
    """An embedded Ray with 2 CPUs, started once, shut down at the end of the run.

    ``address="local"`` always starts a new one: without it Ray would attach to the
    last head that ``ray start`` recorded on this machine.
    """
    import ray

    from rnnbench import raysession

    if not ray.is_initialized():  # embedded, loopback only, as rnnbench starts it
        raysession.start(num_cpus=2, resources={"rnnbench_exclusive": 1})
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def one_thread():
    """torch on one thread for a module: tiny tensors gain nothing from intra-op threads,
    and on a shared 2-core machine a second thread makes softmax stall for milliseconds."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module", autouse=True)
def no_placement_group_left(request):
    """Every module that used the shared Ray leaves no placement group behind (Ray
    removes them asynchronously: a few seconds' grace), so no module depends on another
    having run before it."""
    yield
    ray = sys.modules.get("ray")
    if ray is None or not ray.is_initialized():
        return
    deadline = time.monotonic() + 30
    while (left := live_placement_groups()) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not left, f"{request.module.__name__} left placement groups behind: {left}"


def pytest_collection_modifyitems(config, items):
    """Every test that uses the shared Ray is marked ``ray`` (``make test-fast`` leaves them
    out).  The slow tests run first, then the rest of the ``ray`` ones, then the unit
    tests, each in collection order: xdist hands tests out one at a time as workers free
    up, so the long ones start early and short ones fill the end, instead of one worker
    finishing a long test while the others wait."""
    for item in items:
        if "ray_session" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.ray)
    items.sort(key=_first)


def _first(item) -> int:
    if item.get_closest_marker("slow"):
        return 0
    return 1 if item.get_closest_marker("ray") else 2
