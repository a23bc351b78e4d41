"""Job files: the shipped jobs load; every malformed file gives exit 2 and one
line per problem naming the field, never a traceback."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from rnnbench import cli
from rnnbench.job import jobfile
from rnnbench.job.cell import Cell
from rnnbench.results import store

ROOT = Path(__file__).resolve().parent.parent
GOOD = """\
name: tiny
fixed: {hidden: 8, repeats: 2, task: running_parity}
grid:
  tau: [8, 16]
  run:
    - {model: elman, strategy: bptt}
    - {model: jordan, strategy: teacher_forcing}
seeds: [0, 1]
"""

# (file text, text that the one error line must contain)
MALFORMED = [
    (
        "name: x\nfixed: {model: elman, strategy: truncated_bptt, strategy_options: {k: 0}}\n"
        "grid: {tau: [8]}\n",
        "k: must be a positive integer, got 0",
    ),
    (
        "name: x\nfixed: {model: jordan, strategy: free_running, task: running_parity,"
        " strategy_options: {feedback: bogus}}\ngrid: {tau: [8]}\n",
        "feedback: unknown feedback",
    ),
    (
        "name: x\nfixed: {model: elman, strategy: bptt, task_options: {path: /nonexistent}}\n"
        "grid: {tau: [8]}\n",
        "fixed.task_options.path: no such file or folder",
    ),
    (
        "name: x\nfixed: {model: elman, strategy: bptt}\ngrid: {tau: [8]}\ngrdi: {tau: [8]}\n",
        "grdi: unknown key",
    ),
    ("name: x\nfixed: {model: elman, strategy: bptt}\n", "grid: 'tau' is set nowhere"),
    ("name: x\ngrid: [8, 16]\n", "grid: must be a mapping"),
    ("name: x\ngrid: {}\n", "grid: empty grid"),
    (
        "name: x\nfixed: {model: elman, strategy: bptt}\ngrid: {tau: 64}\n",
        "grid.tau: must be a non-empty list",
    ),
    ("name: x\nfixed: {model: elman, strategy: bptt}\ngrid: {tau: []}\n", "grid.tau: empty list"),
    (
        "name: x\nfixed: {model: elman, strategy: bptt}\ngrid: {tau: [8, -4]}\n",
        "grid.tau: must be a positive integer, got -4",
    ),
    (
        "name: x\nfixed: {task: running_parity}\n"
        "grid: {tau: [8], run: [{model: elman, strategy: teacher_forcing}]}\n",
        "grid.run[0].strategy: teacher_forcing does not fit model 'elman'",
    ),
    (
        "name: x\nfixed: {model: lstm, strategy: bptt}\ngrid: {tau: [8]}\n",
        "fixed.model: unknown model 'lstm'",
    ),
    (
        "name: x\nfixed: {model: elman, strategy: bptt, hiden: 8}\ngrid: {tau: [8]}\n",
        "fixed.hiden: unknown field",
    ),
    (
        "name: x\nfixed: {model: elman, strategy: bptt, hidden: big}\ngrid: {tau: [8]}\n",
        "fixed.hidden: must be a positive integer, got 'big'",
    ),
    (
        "name: x\nfixed: {model: elman, strategy: bptt}\nparts:\n"
        "  - {name: a, grid: {tau: [8]}}\n  - {name: a, grid: {tau: [16]}}\n",
        "parts[1].name: duplicate name 'a'",
    ),
    (
        "name: x\nfixed: {model: elman, strategy: bptt}\ngrid: {tau: [8]}\ngrid: {tau: [16]}\n",
        "duplicate key 'grid'",
    ),
    (
        "name: x\nfixed: {model: elman, strategy: bptt, tau: 8}\ngrid: {tau: [16]}\n",
        "grid.tau: 'tau' is also set in fixed.tau",
    ),
    (
        "name: x\nfixed: {model: elman, strategy: bptt}\ngrid: {tau: [8]}\nseeds: 3\n",
        "seeds: must be a non-empty list",
    ),
    (
        "name: x\nfixed: {model: elman, strategy: bptt}\ngrid: {tau: [8]}\nseeds: [0, -1]\n",
        "seeds: must be a non-negative integer, got -1",
    ),
    ("name: x\ngrid: {tau: [8]\n", "job: not valid YAML: line"),
    ("fixed: {model: elman, strategy: bptt}\ngrid: {tau: [8]}\n", "name: must be a name"),
    (
        "name: x\nfixed: {model: elman, strategy: bptt, threads: 0}\ngrid: {tau: [8]}\n",
        "fixed.threads: must be a positive integer or 'all', got 0",
    ),
    (
        "name: x\nfixed: {model: elman, strategy: bptt, device: tpu}\ngrid: {tau: [8]}\n",
        "fixed.device: must be one of cpu, cuda, got 'tpu'",
    ),
    ("- name: x\n- grid: {}\n", "job: must be a mapping"),
    (
        "name: x\nfixed: {model: elman, strategy: truncated_bptt, strategy_options: {kk: 2}}\n"
        "grid: {tau: [8]}\n",
        "fixed.strategy_options.kk: unknown option; allowed: k",
    ),
    (
        "name: x\nfixed: {model: elman, strategy: bptt, task: delayed_recall,"
        " task_options: {lag: 2}}\ngrid: {tau: [8]}\n",
        "fixed.task_options.lag: unknown option",
    ),
    (
        "name: x\nfixed: {model: elman, strategy: bptt}\ngrid: {tau: [8], width: [1]}\n",
        "grid.width: unknown axis",
    ),
    ("name: x\nfixed: {model: elman}\ngrid: {tau: [8]}\n", "'strategy' is set nowhere"),
    (
        "name: x\nfixed: {model: elman, strategy: bptt}\ngrid: {tau: [8, 8]}\n",
        "grid.tau[1]: duplicate value 8",
    ),
    (
        "name: x\nfixed: {model: elman, strategy: bptt}\ngrid: {tau: [8], run: [bptt]}\n",
        "grid.run[0]: must be a mapping of fields",
    ),
    (
        "name: x\nfixed: {model: elman, strategy: bptt}\ngrid: {tau: [8]}\nparts: []\n",
        "parts: give either a top-level grid or parts",
    ),
    (
        "name: x\nfixed: {model: elman, strategy: bptt, lr: -1}\ngrid: {tau: [8]}\n",
        "fixed.lr: must be a finite positive number, got -1",
    ),
    # job files never execute code: a Python tag is refused by the safe loader
    (
        "name: !!python/object/apply:os.system ['echo owned']\ngrid: {tau: [8]}\n",
        "job: not valid YAML",
    ),
]


def run_cli(argv, capsys):
    rc = cli.main(argv)
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


@pytest.mark.parametrize("text,expected", MALFORMED, ids=[e for _, e in MALFORMED])
def test_malformed_job_exits_2_with_one_line_naming_the_field(tmp_path, capsys, text, expected):
    path = tmp_path / "job.yaml"
    path.write_text(text)
    rc, out, err = run_cli(["run", str(path), "--out", str(tmp_path / "out"), "--dry-run"], capsys)
    assert rc == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert expected in lines[0]
    assert str(path) in lines[0]
    assert "Traceback" not in err and out == ""
    assert not (tmp_path / "out").exists()


def test_at_least_twelve_malformed_files():
    assert len(MALFORMED) >= 12


def test_every_problem_is_reported_at_once(tmp_path, capsys):
    path = tmp_path / "job.yaml"
    path.write_text(
        "name: x\nextra: 1\nfixed: {hidden: 8, hiden: 3, task: running_parity}\n"
        "grid:\n  tau: [8, -4]\n  batch: 3\n  run:\n"
        "    - {model: elman, strategy: bptt}\n"
        "    - {model: elman, strategy: teacher_forcing}\n"
    )
    rc, _, err = run_cli(["run", str(path), "--dry-run"], capsys)
    assert rc == 2
    lines = err.strip().splitlines()
    for field in (
        "extra: unknown key",
        "fixed.hiden: unknown field",
        "grid.batch: must be a non-empty list",
        "grid.tau: must be a positive integer",
        "grid.run[1].strategy: teacher_forcing does not fit model 'elman'",
    ):
        assert sum(field in line for line in lines) == 1, (field, err)
    assert len(lines) == 5
    assert all(line.startswith(f"rnnbench run: error: {path}: ") for line in lines)


def test_missing_file_is_one_line(tmp_path, capsys):
    rc, _, err = run_cli(["run", str(tmp_path / "nope.yaml")], capsys)
    assert rc == 2 and "no such file" in err and len(err.strip().splitlines()) == 1


def test_grid_product_and_seeds(tmp_path):
    path = tmp_path / "job.yaml"
    path.write_text(GOOD)
    job = jobfile.load(path)
    assert job.name == "tiny"
    assert len(job.cells) == 2 * 2 * 2  # tau x run x seeds
    assert {(c.model, c.strategy) for c in job.cells} == {
        ("elman", "bptt"),
        ("jordan", "teacher_forcing"),
    }
    assert {c.seed for c in job.cells} == {0, 1}
    assert all(c.hidden == 8 and c.repeats == 2 for c in job.cells)
    assert len({c.cell_id for c in job.cells}) == len(job.cells)
    # the ids are stable: the same file gives the same ids
    assert [c.cell_id for c in jobfile.load(path).cells] == [c.cell_id for c in job.cells]


def test_parts_merge_fixed_and_drop_repeated_cells(tmp_path):
    path = tmp_path / "job.yaml"
    path.write_text(
        "name: p\nfixed: {model: elman, strategy: bptt, hidden: 8}\nseeds: [0]\nparts:\n"
        "  - {name: a, grid: {tau: [8, 16]}}\n"
        "  - {name: b, fixed: {hidden: 16}, grid: {tau: [8]}, seeds: [3, 4]}\n"
        "  - {name: c, grid: {tau: [8]}}\n"
    )  # same cell as in part a
    cells = jobfile.load(path).cells
    assert [(c.tau, c.hidden, c.seed) for c in cells] == [
        (8, 8, 0),
        (16, 8, 0),
        (8, 16, 3),
        (8, 16, 4),
    ]


@pytest.mark.parametrize("name", ["quick", "chapter10", "cluster"])
def test_shipped_jobs_load(name):
    job = jobfile.load(ROOT / "jobs" / f"{name}.yaml")
    assert job.name == name
    assert all(isinstance(c, Cell) for c in job.cells)
    assert len({c.cell_id for c in job.cells}) == len(job.cells)


def test_quick_job_covers_every_model_and_the_main_strategies():
    cells = jobfile.load(ROOT / "jobs" / "quick.yaml").cells
    assert {c.model for c in cells} == {"elman", "jordan", "single_output"}
    assert {
        "bptt",
        "bptt_fused",
        "checkpointed_bptt",
        "truncated_bptt",
        "teacher_forcing",
        "free_running",
    } <= {c.strategy for c in cells}
    taus = {c.tau for c in cells if c.strategy == "teacher_forcing"}
    assert len(taus) >= 3  # a scaling slope can be fitted
    assert any(c.train_steps >= 100 for c in cells)


def test_chapter10_and_cluster_jobs_cover_the_claims():
    ch10 = jobfile.load(ROOT / "jobs" / "chapter10.yaml").cells
    assert {64, 4096} <= {c.tau for c in ch10}
    assert {1, 32} <= {c.batch for c in ch10}
    assert {1, 2} <= {c.workers for c in ch10}
    assert len({c.seed for c in ch10}) >= 2
    cluster = jobfile.load(ROOT / "jobs" / "cluster.yaml").cells
    assert max(c.tau for c in cluster) == 16384
    assert max(c.hidden for c in cluster) == 1024
    assert {c.device for c in cluster} == {"cuda"}
    assert {1, 2, 4, 8} <= {c.workers for c in cluster}
    for job in (ch10, cluster, jobfile.load(ROOT / "jobs" / "quick.yaml").cells):
        # every 1-worker baseline of a workers sweep is timed in the same harness
        swept = [c for c in job if c.workers > 1]
        assert swept and all(c.harness == "group" for c in swept)
        assert any(c.workers == 1 and c.harness == "group" for c in job)


def test_dry_run_lists_cells_and_counts_done(tmp_path, capsys):
    path = tmp_path / "job.yaml"
    path.write_text(GOOD)
    out = tmp_path / "out"
    rc, text, _ = run_cli(["run", str(path), "--out", str(out), "--dry-run"], capsys)
    assert rc == 0
    assert "tiny: 8 cells, 0 done" in text and "8 to run" in text
    cell = jobfile.load(path).cells[0]
    store.write_row(out, {**cell.config(), "cell_id": cell.cell_id, "status": "ok", "wall_s": 1.5})
    rc, text, _ = run_cli(["run", str(path), "--out", str(out), "--dry-run"], capsys)
    assert rc == 0
    assert "tiny: 8 cells, 1 done (1 ok, 0 not ok), 7 to run" in text
    assert cell.cell_id in text and "todo" in text


# --------------------------------------------------------------------------- hostile files


def _bomb(levels: int) -> str:
    """A YAML alias bomb: each level is a list of ten aliases of the level before,
    so the last one expands to 10**levels values."""
    lines = ["name: bomb", "fixed: {model: elman, strategy: bptt}", "a0: &a0 [8]"]
    for i in range(1, levels + 1):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]")
    lines.append(f"grid: {{tau: *a{levels}}}")
    return "\n".join(lines) + "\n"


def test_alias_bomb_is_refused_at_once_in_one_short_line(tmp_path, capsys, monkeypatch):
    """Refused from the node graph, before a single value is built."""

    def never(self, node):
        raise AssertionError("the document was built")

    monkeypatch.setattr(jobfile._Loader, "construct_document", never)
    path = tmp_path / "job.yaml"
    path.write_text(_bomb(9))
    rc, out, err = run_cli(["run", str(path), "--out", str(tmp_path / "out"), "--dry-run"], capsys)
    assert rc == 2 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "too large" in lines[0] and "aliases" in lines[0], err
    assert len(lines[0]) < 300


def test_expanded_size_counts_aliases_and_refuses_recursion():
    import yaml

    def node(text):
        return yaml.compose(text, Loader=yaml.SafeLoader)

    # a list of 3 scalars is 4 nodes; used twice through an alias it counts twice
    assert jobfile.expanded_size(node("[1, 2, 3]")) == 4
    assert jobfile.expanded_size(node("{a: &x [1, 2, 3], b: *x}")) == 1 + 2 + 4 + 4
    with pytest.raises(jobfile.TooLarge):
        jobfile.expanded_size(node(_bomb(3)), limit=1000)
    assert jobfile.expanded_size(node(_bomb(2)), limit=1000) < 1000
    with pytest.raises(jobfile.TooLarge, match="recursive"):
        jobfile.expanded_size(node("&a [*a]"))


def test_recursive_alias_and_deep_nesting_are_one_line(tmp_path, capsys):
    for text in (
        "name: x\nfixed: &f {model: elman, strategy: bptt, tau: [*f]}\ngrid: {tau: [8]}\n",
        "name: x\ngrid: {tau: " + "[" * 5000 + "]" * 5000 + "}\n",
    ):
        path = tmp_path / "job.yaml"
        path.write_text(text)
        rc, _, err = run_cli(["run", str(path), "--dry-run"], capsys)
        assert rc == 2 and len(err.strip().splitlines()) == 1, err
        assert "Traceback" not in err


def test_huge_values_are_shortened_in_messages(tmp_path, capsys):
    path = tmp_path / "job.yaml"
    path.write_text(
        "name: x\nfixed: {model: " + "m" * 100_000 + ", strategy: bptt}\n"
        "grid: {tau: [8], batch: " + str(list(range(10_000))) + "}\n"
        "seeds: " + "s" * 100_000 + "\n"
    )
    rc, _, err = run_cli(["run", str(path), "--dry-run"], capsys)
    assert rc == 2
    lines = err.strip().splitlines()
    assert any("fixed.model: unknown model" in line for line in lines), err
    assert any("seeds: must be a non-empty list" in line for line in lines), err
    assert all(len(line) < 400 for line in lines), [len(line) for line in lines]


def test_duplicate_check_is_linear():
    """Values are looked up in a hash set, not searched in a list: the number of
    equality tests stays near the number of values (a list search made n²/2 of them)."""
    compared = [0]

    class Value(int):
        def __eq__(self, other):
            compared[0] += 1
            return int.__eq__(self, other)

        __hash__ = int.__hash__

    values = [Value(v) for v in range(2_000)] + [Value(5)]
    problems: list[str] = []
    jobfile._check_list("grid.tau", values, problems)
    assert compared[0] < 10 * len(values), compared[0]
    assert problems == ["grid.tau[2000]: duplicate value 5; each value may appear once"]
    values = list(range(100_000)) + [5]
    problems = []
    jobfile._check_list("grid.tau", values, problems)
    assert problems == ["grid.tau[100000]: duplicate value 5; each value may appear once"]
    problems = []
    jobfile._check_list(
        "grid.run", [{"model": "elman"}, {"model": "jordan"}, {"model": "elman"}], problems
    )
    assert problems == [
        "grid.run[2]: duplicate value {'model': 'elman'}; each value may appear once"
    ]


def test_every_field_problem_of_one_cell_is_its_own_line(tmp_path, capsys):
    path = tmp_path / "job.yaml"
    path.write_text(
        "name: x\nfixed: {model: elman, strategy: bpt, batch: 0}\ngrid: {tau: [0, 64]}\n"
    )
    rc, _, err = run_cli(["run", str(path), "--dry-run"], capsys)
    assert rc == 2
    lines = err.strip().splitlines()
    for field in (
        "fixed.strategy: unknown strategy 'bpt'",
        "fixed.batch: must be a positive integer",
        "grid.tau: must be a positive integer, got 0",
    ):
        assert sum(field in line for line in lines) == 1, (field, err)
    assert len(lines) == 3, err


@pytest.mark.parametrize(
    "fixed,expected",
    [
        ("lr: .inf", "fixed.lr: must be a finite positive number, got inf"),
        ("lr: .nan", "fixed.lr: must be a finite positive number, got nan"),
        ("lr: 0", "fixed.lr: must be a finite positive number, got 0"),
        ("seed: 100000000000000000000000", "fixed.seed: must be at most 9223372036854775807"),
        ("hidden: 100000000000000000000000", "fixed.hidden: must be at most 9223372036854775807"),
    ],
)
def test_values_outside_what_rows_can_store_are_refused(tmp_path, capsys, fixed, expected):
    path = tmp_path / "job.yaml"
    path.write_text(
        f"name: x\nfixed: {{model: elman, strategy: bptt, {fixed}}}\ngrid: {{tau: [8]}}\n"
    )
    rc, _, err = run_cli(["run", str(path), "--dry-run"], capsys)
    assert rc == 2 and len(err.strip().splitlines()) == 1 and expected in err, err
    assert Cell(model="elman", strategy="bptt", tau=8, seed=2**63 - 1).seed == 2**63 - 1


def test_dry_run_honours_fresh_and_exclusive(tmp_path, capsys):
    path = tmp_path / "job.yaml"
    path.write_text(GOOD.replace("tau: [8, 16]", "tau: [40960, 81920]"))  # one-thread cells
    out = tmp_path / "out"
    cell = jobfile.load(path).cells[0]
    store.write_row(out, {**cell.config(), "cell_id": cell.cell_id, "status": "ok", "wall_s": 1.5})
    argv = ["run", str(path), "--out", str(out), "--dry-run", "--num-cpus", "2"]

    def minutes(text):
        return float(text.split("about ")[-1].split(" min")[0])

    rc, plain, _ = run_cli(argv, capsys)
    assert rc == 0 and "1 done" in plain and "7 to run" in plain
    rc, fresh, _ = run_cli(argv + ["--fresh"], capsys)
    assert rc == 0 and "0 done" in fresh and "8 to run" in fresh and "--fresh" in fresh
    assert store.stored_ids(out) == {cell.cell_id}  # a dry run deletes nothing
    rc, alone, _ = run_cli(argv + ["--exclusive"], capsys)
    assert rc == 0 and "one cell at a time" in alone
    # one-thread cells on 2 CPUs take half the time they take one at a time
    assert minutes(alone) == pytest.approx(2 * minutes(plain), rel=0.02)  # shown to 0.1 min


def test_cost_estimate_of_a_cell_whose_depth_is_measured():
    """Newton strategies report their depth only once run: the dry run assumes the worst
    case, max_iter scans (τ without max_iter)."""
    from rnnbench.sweep import estimate

    capped = Cell(
        model="elman", strategy="deer", tau=1024, hidden=8, strategy_options={"max_iter": 8}
    )
    worst = Cell(model="elman", strategy="deer", tau=1024, hidden=8)
    assert 0 < estimate.estimate_seconds(capped) < estimate.estimate_seconds(worst) < math.inf


# ---------------------------------------------------------------- a job without a grid


def test_a_job_without_a_grid_is_one_cell_per_seed():
    """Its fixed fields are the cell (the old parser refused it: "grid: missing")."""
    one = jobfile.validate(
        {"name": "one", "fixed": {"model": "elman", "strategy": "bptt", "tau": 8, "hidden": 4}}
    )
    assert [(c.model, c.strategy, c.tau, c.hidden, c.seed) for c in one.cells] == [
        ("elman", "bptt", 8, 4, 0)
    ]
    seeded = jobfile.validate(
        {"name": "two", "fixed": {"model": "elman", "strategy": "bptt", "tau": 8}, "seeds": [0, 1]}
    )
    assert [c.seed for c in seeded.cells] == [0, 1]
    parts = jobfile.validate(
        {
            "name": "p",
            "fixed": {"model": "elman", "strategy": "bptt"},
            "parts": [{"name": "a", "fixed": {"tau": 8}}, {"name": "b", "grid": {"tau": [16, 32]}}],
        }
    )
    assert [c.tau for c in parts.cells] == [8, 16, 32]
    # the opposite case: an empty grid is still an error, and a missing field is named
    with pytest.raises(jobfile.JobError, match="grid: empty grid"):
        jobfile.validate({"name": "x", "fixed": {"model": "elman", "strategy": "bptt"}, "grid": {}})
    with pytest.raises(jobfile.JobError, match="parts\\[0\\].grid: 'tau' is set nowhere"):
        jobfile.validate(
            {"name": "x", "fixed": {"model": "elman", "strategy": "bptt"}, "parts": [{"name": "a"}]}
        )
