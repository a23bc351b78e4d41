"""Measuring one cell: in one process or on a group of Ray workers, paired against a
baseline, under fixed allocator conditions; time, memory, work, loss, provenance (torch)."""
