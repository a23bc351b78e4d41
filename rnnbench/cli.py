"""The ``rnnbench`` command: ``bench`` (one cell), ``run`` (a sweep), ``report``.

Each sub-command lives in its own module, which provides ``configure(parser)``
and ``main(args) -> int``; only the chosen one is imported.  Bad input prints
one line naming the field and exits 2, never a traceback; results that cannot
be written (disk full, ...) print one line and exit 3.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from rnnbench.errors import StorageError, UsageError

COMMANDS = {
    "bench": ("rnnbench.bench", "run one benchmark cell and print its row"),
    "run": ("rnnbench.sweep.command", "run a sweep (a job file) on Ray, resumably"),
    "report": ("rnnbench.report", "turn results folders into tables, plots and claims"),
    "compare": (
        "rnnbench.gate",
        "compare two runs configuration by configuration (exit 1 on a regression)",
    ),
}


class _Parser(argparse.ArgumentParser):
    """argparse, but an error is one line (naming the option) and exit code 2."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message}\n")


def _usage() -> str:
    lines = ["usage: rnnbench {" + ",".join(COMMANDS) + "} ...", ""]
    lines += [f"  {name:<9}{help_}" for name, (_, help_) in COMMANDS.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0 if argv else 2
    if argv[0] in ("-V", "--version"):
        from rnnbench import __version__

        print(f"rnnbench {__version__}")
        return 0
    command = argv[0]
    if command not in COMMANDS:
        print(
            f"rnnbench: error: unknown command {command!r}; allowed: {', '.join(COMMANDS)}",
            file=sys.stderr,
        )
        return 2
    from rnnbench import stopping

    with stopping.handled():  # SIGTERM and SIGHUP stop as Ctrl-C does, from here: exit 130
        try:
            return _command(command, argv)
        except KeyboardInterrupt:  # before the command's own handling (importing it)
            print(f"rnnbench {command}: interrupted", file=sys.stderr)
            return 130


def _command(command: str, argv: list[str]) -> int:
    from rnnbench import stopping

    with stopping.deferred():  # a signal inside an import (scipy's) would surface as a
        module = importlib.import_module(COMMANDS[command][0])  # RuntimeError: hold it
    parser = _Parser(prog=f"rnnbench {command}", description=COMMANDS[command][1])
    module.configure(parser)
    args = parser.parse_args(argv[1:])
    try:
        return int(module.main(args) or 0)
    except UsageError as exc:  # one line per problem
        for line in str(exc).splitlines() or [""]:
            print(f"rnnbench {command}: error: {line}", file=sys.stderr)
        return 2
    except StorageError as exc:
        print(f"rnnbench {command}: error: {exc}", file=sys.stderr)
        return 3
    except KeyboardInterrupt:
        return _interrupted(command)
    except RuntimeError as exc:  # a signal inside a class body of a lazy import (3.11
        if not isinstance(exc.__cause__, KeyboardInterrupt):  # wraps it in __set_name__)
            raise
        return _interrupted(command)


def _interrupted(command: str) -> int:
    hint = (
        "; rows written so far are kept: run the same command again to resume"
        if command == "run"
        else ""
    )
    print(f"rnnbench {command}: interrupted{hint}", file=sys.stderr)
    return 130


if __name__ == "__main__":
    sys.exit(main())
