"""Parallel-in-time evaluation of Elman's recurrence: the associative scan, Newton (DEER)
solvers with their adjoint, and the scan split along time over ranks (torch)."""
