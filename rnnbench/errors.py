"""The one exception type rnnbench raises for bad input, and the one integer check.

A ``UsageError`` carries a message that names the offending field and what is
allowed; the command line prints it on one line and exits with code 2.
"""


class UsageError(ValueError):
    """Bad input from the user: a wrong argument, option or job-file field."""


def check_int(name: str, value, low: int = 1, upper: int | None = None) -> int:
    """``value`` if it is an integer in [low, upper], else a UsageError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        what = {1: "a positive integer", 0: "a non-negative integer"}.get(low, f"an integer >= {low}")
        raise UsageError(f"{name}: must be {what}, got {value!r}")
    if upper is not None and value > upper:
        raise UsageError(f"{name}: must be at most {upper} here, got {value}")
    return value
