"""The one exception type rnnbench raises for bad input.

A ``UsageError`` carries a message that names the offending field and what is
allowed; the command line prints it on one line and exits with code 2.
"""


class UsageError(ValueError):
    """Bad input from the user: a wrong argument, option or job-file field."""
