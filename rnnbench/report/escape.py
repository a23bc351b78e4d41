"""Text from rows and jobs (task paths, labels, errors) shown as text, never run.

- :func:`plot_text`: for matplotlib, every ``$`` escaped so mathtext never parses a
  task path or a ``--label`` (an unbalanced ``$`` used to raise); backslashes kept.
- :func:`html_text` (HTML) and :func:`md_text` (Markdown): ``< > & " '`` escaped, so a job string
  holding ``<script>`` or ``<img onerror=...>`` shows as those characters.
- :func:`csv_cell` / :func:`csv_frame`: a text cell starting with ``= + - @``, a tab or a
  carriage return is prefixed with ``'`` (OWASP's CSV-injection rule), so a spreadsheet
  reads it as text; numeric columns are left as numbers.
"""

from __future__ import annotations

import html

import pandas as pd

FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def plot_text(text) -> str:
    return str(text).replace("$", r"\$")


def html_text(text) -> str:
    return html.escape(str(text), quote=True)


def md_text(text) -> str:
    """Text for a Markdown page: ``< > &`` escaped (no tag survives), on one line."""
    return html.escape(str(text), quote=False).replace("\n", " ")


def csv_cell(value):
    if isinstance(value, str) and value.startswith(FORMULA_START):
        return "'" + value
    return value


def csv_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy whose text cells (object or string columns) are safe for a spreadsheet;
    the column names too."""
    out = frame.copy()
    for col in out.columns:
        if not pd.api.types.is_numeric_dtype(out[col]) and not pd.api.types.is_bool_dtype(out[col]):
            if isinstance(out[col].dtype, pd.CategoricalDtype):
                out[col] = out[col].astype(object)
            out[col] = out[col].map(csv_cell)
    out.columns = [csv_cell(str(c)) for c in out.columns]
    return out
