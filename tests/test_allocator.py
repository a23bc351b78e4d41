"""The allocator conditions of timing (rnnbench.harness.allocator): large blocks reuse
their pages."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from rnnbench.harness import allocator, runner
from rnnbench.job.cell import Cell


def _glibc() -> bool:
    try:
        return (os.confstr("CS_GNU_LIBC_VERSION") or "").startswith("glibc")
    except (AttributeError, ValueError, OSError):
        return False


GLIBC = _glibc()

# Faults per 64 MiB block allocated, touched and freed (after three untimed rounds).
PROBE = """
import resource, sys
from rnnbench.harness import allocator
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
    out = subprocess.run(
        [sys.executable, "-c", PROBE, mode], capture_output=True, text=True, check=True
    )
    return float(out.stdout)


@pytest.mark.skipif(not GLIBC, reason="glibc's mallopt")
def test_steady_reuses_the_pages_of_large_blocks():
    default, steady = faults_per_block("default"), faults_per_block("steady")
    # the control: by default glibc maps every 64 MiB block fresh, at least one fault per
    # page (32 with 2 MiB huge pages, 16384 with 4 KiB pages)
    assert default >= (64 << 20) // (2 << 20)
    assert steady <= default / 8, (default, steady)


@pytest.mark.skipif(not GLIBC, reason="glibc's mallopt")
def test_rows_record_the_allocator_their_cell_ran_under(one_thread):
    row = runner.run_cell(Cell(model="elman", strategy="bptt", tau=4, batch=1, hidden=4, repeats=1))
    assert row["status"] == "ok", row.get("error")
    assert row["allocator"] == allocator.STEADY == allocator.steady() == allocator.state()
