"""Shared fixtures: one Ray instance for the whole test run (ray.init costs ~4 s)."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(scope="session")
def ray_session():
    """An embedded Ray with 2 CPUs, started once, shut down at the end of the run.

    ``address="local"`` always starts a new one: without it Ray would attach to the
    last head that ``ray start`` recorded on this machine.
    """
    import ray

    if not ray.is_initialized():
        ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
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


def pytest_collection_modifyitems(config, items):
    """Every test that uses the shared Ray is marked ``ray`` (``make test-fast`` leaves them
    out)."""
    for item in items:
        if "ray_session" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.ray)
