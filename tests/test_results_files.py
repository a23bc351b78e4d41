"""results.parquet as other tools read it: every column of its declared type, so runs
read together (pyarrow.dataset, pandas, DuckDB) even when one has an all-null column."""

from __future__ import annotations

import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
from report_synthetic import row as synthetic_row

from rnnbench.errors import UsageError
from rnnbench.report import tidy as report_load
from rnnbench.results import store
from rnnbench.results.rows import ROW_KEYS


def _run(folder, rows) -> str:
    for row in rows:
        store.write_row(folder, row)
    return str(store.consolidate(folder))


@pytest.fixture
def two_runs(tmp_path):
    """Run a: all ok (error and comm_ms_median all null); run b: a failed row and a comm time."""
    a = _run(
        tmp_path / "a",
        [
            synthetic_row(
                model="elman",
                strategy="bptt",
                tau=t,
                step_ms_median=1.0 * t,
                step_ms_samples=[1.0, 2.0],
                train_curve=[[1, 0.5, 2.0]],
                horizon_t=[4, 8],
            )
            for t in (8, 16)
        ],
    )
    b = _run(
        tmp_path / "b",
        [
            synthetic_row(
                model="jordan",
                strategy="teacher_forcing",
                tau=8,
                workers=2,
                split="time",
                comm_ms_median=0.25,
                step_ms_median=3.0,
                strategy_options={"chunk": 4},
            ),
            synthetic_row(
                model="elman", strategy="bptt", tau=32, status="failed", error="RuntimeError: boom"
            ),
        ],
    )
    return a, b


def test_all_null_columns_keep_their_declared_type(two_runs):
    schema = pq.read_schema(two_runs[0])
    assert set(ROW_KEYS) <= set(schema.names)
    assert schema.field("error").type == pa.string()
    assert schema.field("comm_ms_median").type == pa.float64()
    assert schema.field("gpu_name").type == pa.string()
    assert schema.field("tau").type == pa.int64()
    assert schema.field("strategy_options").type == pa.string()  # JSON text
    assert pa.types.is_timestamp(schema.field("timestamp").type)
    assert schema.field("train_curve").type == pa.list_(pa.list_(pa.float64()))
    assert not [f.name for f in schema if pa.types.is_null(f.type)]
    assert pq.read_schema(two_runs[1]) == schema


def test_two_runs_read_together_with_pyarrow_dataset_and_pandas(two_runs):
    table = ds.dataset(list(two_runs), format="parquet").to_table()
    assert table.num_rows == 4
    assert sorted(v for v in table.column("error").to_pylist() if v) == ["RuntimeError: boom"]
    assert table.column("comm_ms_median").drop_null().to_pylist() == [0.25]
    both = pd.concat([pd.read_parquet(p) for p in two_runs], ignore_index=True)
    assert both["timestamp"].dt.year.eq(2025).all()
    assert both.loc[both["model"] == "jordan", "strategy_options"].item() == '{"chunk": 4}'


def test_two_runs_read_together_with_duckdb(two_runs):
    duckdb = pytest.importorskip("duckdb")
    files = ", ".join(f"'{p}'" for p in two_runs)
    [(n, errors, comm)] = (
        duckdb.connect()
        .execute(f"select count(*), count(error), sum(comm_ms_median) from read_parquet([{files}])")
        .fetchall()
    )
    assert (n, errors, comm) == (4, 1, 0.25)


def test_the_parquet_file_loads_as_the_row_files_do(two_runs, tmp_path):
    from_rows = store.load(tmp_path / "a")
    from_file = store.read_parquet(two_runs[0])
    assert list(from_file["timestamp"]) == list(from_rows["timestamp"])
    assert from_file["step_ms_samples"].tolist() == from_rows["step_ms_samples"].tolist()
    rows = report_load.load(two_runs[0])  # the report takes the file as well as its folder
    assert len(rows) == 2 and set(rows["tau"]) == {8, 16}


def test_a_value_that_breaks_its_declared_type_is_a_broken_row_not_a_column(tmp_path):
    """rnnbench.results.validate: such a row is skipped (moved aside by run), so the
    column keeps its declared type (issue 25 point 3)."""
    store.write_row(tmp_path, synthetic_row(model="elman", strategy="bptt", tau=8, depth="deep"))
    store.write_row(tmp_path, synthetic_row(model="elman", strategy="bptt", tau=16, depth=3))
    with pytest.warns(UserWarning, match="'depth' is not an integer"):
        path = store.consolidate(tmp_path)
    column = pq.read_table(path.path).column("depth")
    assert column.type == pa.int64() and column.to_pylist() == [3]


def test_report_names_a_file_that_is_not_a_results_file(tmp_path):
    other = tmp_path / "notes.txt"
    other.write_text("hello")
    with pytest.raises(UsageError, match="notes.txt"):
        report_load.load(other)
