"""The exception types rnnbench raises for bad input.

A ``UsageError`` carries a message that names the offending field and what is
allowed; the command line prints it on one line and exits with code 2.
A ``StorageError`` (results could not be written) exits with code 3.
"""

import reprlib

_REPR = reprlib.Repr()
_REPR.maxstring = _REPR.maxother = 80
_REPR.maxlist = _REPR.maxtuple = _REPR.maxdict = _REPR.maxset = 8
_REPR.maxlevel = 3


def short(value) -> str:
    """``repr(value)``, shortened (long strings, lists, deep nesting), for error messages."""
    return _REPR.repr(value)


class UsageError(ValueError):
    """Bad input from the user: a wrong argument, option or job-file field."""


class StorageError(RuntimeError):
    """Results could not be written (disk full, folder removed, ...); the rows
    written before stay.  The command line prints it on one line and exits 3."""
