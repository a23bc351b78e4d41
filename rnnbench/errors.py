"""The exception types rnnbench raises, the one integer check, and short values
for messages.

A ``UsageError`` carries a message that names the offending field and what is
allowed; the command line prints it on one line and exits with code 2.
A ``StorageError`` (results could not be written) exits with code 3.
"""

import reprlib

_REPR = reprlib.Repr()
_REPR.maxstring = _REPR.maxother = 80
_REPR.maxlist = _REPR.maxtuple = _REPR.maxdict = _REPR.maxset = 8
_REPR.maxlevel = 3


def short(value: object) -> str:
    """``repr(value)``, shortened (long strings, lists, deep nesting), for error messages."""
    return _REPR.repr(value)


class UsageError(ValueError):
    """Bad input from the user: a wrong argument, option or job-file field."""


class StorageError(RuntimeError):
    """Results could not be written (disk full, folder removed, ...); the rows
    written before stay.  The command line prints it on one line and exits 3."""


def check_int(name: str, value: object, low: int = 1, upper: int | None = None) -> int:
    """``value`` if it is an integer in [low, upper], else a UsageError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        what = {1: "a positive integer", 0: "a non-negative integer"}.get(
            low, f"an integer >= {low}"
        )
        raise UsageError(f"{name}: must be {what}, got {short(value)}")
    if upper is not None and value > upper:
        raise UsageError(f"{name}: must be at most {upper} here, got {short(value)}")
    return value
