"""docs/queries.md: every code block runs, on small results folders written by the store,
and DuckDB and pandas give the same table; no query pools configurations."""

from __future__ import annotations

import contextlib
import io
import math
import os
import re
from pathlib import Path

import pandas as pd
import pytest
import report_synthetic as rs

from rnnbench.results import store

DOC = Path(__file__).resolve().parent.parent / "docs" / "queries.md"


def blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)


def _results(folder: Path, rows: list[dict]) -> None:
    (folder / "rows").mkdir(parents=True)
    for r in rows:
        store.write_row(folder, r)
    store.consolidate(folder)


def _runs(tmp_path: Path) -> None:
    """Two runs; in each, configurations that differ in one field only (threads, H, task,
    a paired cell against a plain one), two seeds each, one failed row."""

    def rows(scale: float) -> list[dict]:
        out = []
        for seed in (0, 1):
            ms = scale * (1 + seed)
            out += [
                rs.row(model="elman", strategy="bptt", tau=64, seed=seed, step_ms_median=ms),
                rs.row(
                    model="elman",
                    strategy="bptt",
                    tau=64,
                    seed=seed,
                    threads=2,
                    step_ms_median=2 * ms,
                ),
                rs.row(
                    model="elman",
                    strategy="bptt",
                    tau=64,
                    seed=seed,
                    hidden=64,
                    step_ms_median=3 * ms,
                ),
                rs.row(
                    model="elman",
                    strategy="bptt",
                    tau=64,
                    seed=seed,
                    task="running_parity",
                    step_ms_median=5 * ms,
                ),
                rs.row(
                    model="elman",
                    strategy="bptt",
                    tau=64,
                    seed=seed,
                    threads=2,
                    baseline='{"threads": 1}',
                    step_ms_median=7 * ms,
                    baseline_step_ms_median=11 * ms,
                    speedup_median=1.5 + seed,
                ),
                rs.row(
                    model="elman",
                    strategy="truncated_bptt",
                    strategy_options={"k": 8},
                    tau=64,
                    seed=seed,
                    step_ms_median=13 * ms,
                ),
            ]
        out.append(rs.row(model="elman", strategy="bptt", tau=128, status="failed", error="x"))
        return out

    _results(tmp_path / "results" / "a", rows(1.0))
    _results(tmp_path / "results" / "b", rows(10.0))


@pytest.fixture
def executed(tmp_path):
    _runs(tmp_path)
    here = os.getcwd()
    os.chdir(tmp_path)
    scope: dict = {}
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            for code in blocks():
                exec(compile(code, str(DOC), "exec"), scope)
    finally:
        os.chdir(here)
    return scope


def _same(duck: pd.DataFrame, pan: pd.DataFrame) -> None:
    """The same lines whatever their order, nulls as nulls, numbers as numbers."""

    def canon(df: pd.DataFrame) -> list[tuple]:
        cols = sorted(map(str, df.columns))
        df = df.rename(columns=str)[cols]
        out = []
        for rec in df.itertuples(index=False):
            out.append(
                tuple(
                    None
                    if v is None or (isinstance(v, float) and math.isnan(v)) or v is pd.NA
                    else round(float(v), 9)
                    if isinstance(v, (int, float))
                    else str(v)
                    for v in rec
                )
            )
        return sorted(out, key=repr)

    assert sorted(map(str, duck.columns)) == sorted(map(str, pan.columns))
    assert canon(duck) == canon(pan)


def test_the_doc_has_duckdb_and_pandas_blocks():
    code = blocks()
    assert len(code) >= 6
    assert sum("duckdb.sql" in c for c in code) >= 3


def test_duckdb_and_pandas_agree_on_every_query(executed):
    for name in ("step", "paired", "threads"):
        _same(executed[f"{name}_duckdb"], executed[f"{name}_pandas"])


def test_no_query_pools_configurations(executed, tmp_path):
    step = executed["step_duckdb"]
    # 2 runs x 6 configurations (threads, H, task, paired, an option apart), 2 seeds each;
    # the failed row is in no line
    assert len(step) == 12 and set(step["n"]) == {2}
    a = step[step["run"].str.contains("/a/")]
    plain_1 = a[(a["threads"] == 1) & (a["hidden"] == 32) & (a["task"] == "text")]
    assert sorted(plain_1["step_ms"]) == [1.5, 13 * 1.5]  # bptt, truncated_bptt(k=8)
    # the opposite case: the README's old query (model, strategy, tau) pools them all
    import duckdb

    pooled = duckdb.sql(
        "select model, strategy, tau, median(step_ms_median) as ms "
        f"from '{tmp_path}/results/*/results.parquet' where status = 'ok' group by all"
    ).df()
    assert len(pooled) == 2  # bptt at 64 pools 2 runs x 5 configurations
    paired = executed["paired_duckdb"]
    assert len(paired) == 2 and set(paired["baseline"]) == {'{"threads": 1}'}
    assert sorted(paired["speedup"]) == [2.0, 2.0]
    threads = executed["threads_duckdb"]
    assert {"1", "2"} <= set(map(str, threads.columns))
