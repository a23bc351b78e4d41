"""argparse value types shared by the commands: each rejects a bad value with
a message that argparse prints on one line after the option's name."""

from __future__ import annotations

import argparse
import math

from rnnbench.errors import UsageError, check_int


def _int_at_least(low: int):
    """An argparse type: :func:`check_int`'s rule, on the option's text."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        try:
            return check_int("value", value, low)
        except UsageError as exc:
            what = str(exc).split(": ", 1)[1].rsplit(", got", 1)[0]
            raise argparse.ArgumentTypeError(f"{what}, got {text!r}") from None

    return parse


positive_int = _int_at_least(1)
non_negative_int = _int_at_least(0)


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not value > 0 or math.isinf(value):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text!r}")
    return value
