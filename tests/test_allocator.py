"""The allocator conditions of timing (rnnbench.allocator): large blocks reuse their pages."""

from __future__ import annotations

import subprocess
import sys

import pytest

from rnnbench import allocator

# Faults per 64 MiB block allocated, touched and freed (after three untimed rounds).
PROBE = """
import resource, sys
from rnnbench import allocator
if sys.argv[1] == "steady":
    print(allocator.steady(), file=sys.stderr)
def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(3):
    bytearray(64 << 20)
f0 = faults()
for _ in range(5):
    bytearray(64 << 20)
print((faults() - f0) / 5)
"""


def faults_per_block(mode: str) -> float:
    out = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True,
                         check=True)
    return float(out.stdout)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_steady_reuses_the_pages_of_large_blocks():
    # the control: by default glibc maps every 64 MiB block fresh (16384 pages of 4 KiB)
    assert faults_per_block("default") > 8000
    assert faults_per_block("steady") < 100


def test_state_is_recorded_and_steady_is_idempotent():
    first = allocator.steady()
    assert first in (allocator.STEADY, allocator.DEFAULT)
    assert allocator.steady() == first == allocator.state()
