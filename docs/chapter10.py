# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Deep Learning §10.2 in ten minutes
#
# Section 10.2 of *Deep Learning* (Goodfellow, Bengio, Courville) describes three ways to
# wire a recurrent network, and what each costs to train. This notebook states them, runs
# a tiny cell of every training strategy live on your CPU, then loads the rows that
# `rnnbench` measured for the whole chapter (`reports/chapter10-cpu/`) and re-derives two
# of its claims in front of you.
#
# Open it with `jupytext --to notebook docs/chapter10.py` (or run it as a script:
# `python docs/chapter10.py`). Everything here runs on a laptop's CPU in under a minute.
#
# ## The three patterns
#
# **1. Hidden-to-hidden recurrence, an output at every step** (an *Elman* network,
# `model: elman`). With input $x^{(t)}$, hidden state $h^{(t)}$, output $o^{(t)}$:
#
# $$h^{(t)} = \tanh\left(b + W h^{(t-1)} + U x^{(t)}\right), \qquad o^{(t)} = c + V h^{(t)}.$$
#
# The gradient flows back through every $h^{(t)}$: back-propagation through time (BPTT)
# takes $\tau$ sequential steps and keeps $O(\tau)$ activations.
#
# **2. Output-to-hidden recurrence** (a *Jordan* network, `model: jordan`): the state is
# fed by the previous *output* $f^{(t-1)}$ instead of the previous hidden state,
#
# $$h^{(t)} = \tanh\left(b + W f^{(t-1)} + U x^{(t)}\right), \qquad o^{(t)} = c + V h^{(t)}.$$
#
# During training $f^{(t-1)}$ can be the *true* previous target $y^{(t-1)}$ (one-hot):
# **teacher forcing**. Then no step waits for another, and all $\tau$ steps are computed
# at once: depth 1 instead of $\tau$. The price: the network is less powerful (the output
# is all it remembers), and at generation time it is fed its own outputs, which it never
# saw in training (*exposure bias*).
#
# **3. Hidden-to-hidden recurrence, one output at the end** (`model: single_output`): it
# reads a whole sequence and summarises it, $o = c + V h^{(\tau)}$.

# %%
import os
from pathlib import Path

import numpy as np
import pandas as pd

from rnnbench.core import strategies
from rnnbench.harness.runner import run_cell
from rnnbench.job.cell import Cell

# %% [markdown]
# ## Every strategy, live
#
# One tiny cell each (τ = 32, batch 2, H = 8, a running-parity task), run by the same
# harness as the benchmark: `step_ms` is the median time of one training step (forward,
# backward, optimizer), `depth` the number of steps that must run one after another.
# These times are far too small to compare methods (that is what the committed rows are
# for); they show that every strategy trains the same models. `bptt_compiled` builds a
# C++ extension on first use (a minute), so it is left out here: try
# `rnnbench bench --model elman --strategy bptt_compiled --tau 32`.

# %%
LIVE = [
    ("elman", "bptt"),
    ("elman", "bptt_fused"),
    ("elman", "bptt_no_graph"),
    ("elman", "checkpointed_bptt"),
    ("elman", "truncated_bptt"),
    ("elman", "scan_bptt"),
    ("elman", "deer"),
    ("elman", "quasi_deer"),
    ("jordan", "teacher_forcing"),
    ("jordan", "free_running"),
    ("jordan", "scheduled_sampling"),
    ("single_output", "bptt"),
]
live = []
for model, strategy in LIVE:
    task = "sequence_parity" if model == "single_output" else "running_parity"
    options = {"k": 8} if strategy == "truncated_bptt" else {}
    cell = Cell(
        model=model,
        strategy=strategy,
        strategy_options=options,
        task=task,
        tau=32,
        batch=2,
        hidden=8,
        repeats=3,
        train_steps=0,
        threads=1,
    )
    row = run_cell(cell)
    live.append(
        {
            "model": model,
            "strategy": strategy,
            "status": row["status"],
            "step_ms": row.get("step_ms_median"),
            "depth": row.get("depth"),
            "exact gradient": strategies.STRATEGIES[strategy].exact,
        }
    )
pd.DataFrame(live)

# %% [markdown]
# Teacher forcing's depth is 1 and BPTT's is τ = 32: that is the chapter's argument in one
# column. DEER and quasi-DEER (parallel in time, by Newton's method) report the depth they
# needed: iterations × ⌈log₂ τ⌉.
#
# ## The committed rows
#
# `rnnbench run jobs/chapter10.yaml` then `rnnbench report` wrote
# `reports/chapter10-cpu/tables/*.csv`: one numeric table each, the claims with their
# verdicts in `claims.csv`. The cell below finds them from the repository root (or the
# folder in the `RNNBENCH_REPORT` environment variable).


# %%
def find_report() -> Path | None:
    """The chapter10 report's tables folder, or None."""
    given = os.environ.get("RNNBENCH_REPORT")
    candidates = [Path(given)] if given else []
    for folder in (Path.cwd(), *Path.cwd().parents):
        candidates.append(folder / "reports" / "chapter10-cpu")
    for c in candidates:
        if (c / "tables").is_dir():
            return c / "tables"
    return None


def read(name: str) -> pd.DataFrame | None:
    """One committed table, or None (printing what was not found)."""
    path = TABLES / f"{name}.csv" if TABLES else None
    if path is None or not path.is_file():
        where = path or "reports/chapter10-cpu/tables/" + f"{name}.csv"
        print(f"not found: {where} (run `rnnbench report` on a chapter10 run, or set")
        print("  RNNBENCH_REPORT to its folder)")
        return None
    return pd.read_csv(path)


TABLES = find_report()
print(f"report tables: {TABLES}" if TABLES else "not found: reports/chapter10-cpu/tables/")
summary, fits, paired, claims = (read(n) for n in ("summary", "fits", "paired", "claims"))

# %% [markdown]
# ## Claim 1: BPTT keeps O(τ) memory
#
# *"Back-propagation through time … the states computed in the forward pass must be
# stored until they are reused during the backward pass, so the memory cost is also
# O(τ)."* The rows record `saved_bytes`: the bytes autograd kept for the backward pass.
# If memory $\propto \tau^k$, the slope of $\log$ bytes against $\log \tau$ is $k$.

# %%
if summary is not None:
    bptt = summary[
        (summary["model"] == "elman")
        & (summary["strategy_label"] == "bptt")
        & (summary["baseline"].isna())
        & (summary["train_steps"] == 0)
        & (summary["saved_bytes_mean"] > 0)
    ]
    for (batch, hidden, threads), g in bptt.groupby(["batch", "hidden", "threads"]):
        g = g.groupby("tau")["saved_bytes_mean"].mean()
        if len(g) < 3:
            continue
        k, _ = np.polyfit(np.log(g.index.to_numpy(float)), np.log(g.to_numpy(float)), 1)
        print(
            f"B={batch}, H={hidden}, {threads} thread(s): saved bytes ∝ τ^{k:.3f} "
            f"over τ {g.index.min()}–{g.index.max()} ({len(g)} τ)"
        )
if fits is not None:
    print("the report's fit (fits.csv):")
    mem = fits[(fits["series"] == "elman + bptt") & (fits["measure"] == "saved_bytes")]
    print(mem[["batch", "hidden", "threads", "exponent", "ci_low", "ci_high"]].to_string())
if claims is not None:
    row = claims[claims["key"] == "bptt_memory_linear"]
    print("verdict:", row["verdict"].iloc[0] if len(row) else "not found in claims.csv")

# %% [markdown]
# ## Claim 2: teacher forcing uses parallel hardware; BPTT's chain does not
#
# *"The runtime is O(τ) and cannot be reduced by parallelization because the forward
# propagation graph is inherently sequential"* — while teacher forcing's steps are
# independent. `paired.csv` holds cells timed in alternating blocks against the same
# cell on one thread (baseline `{"threads": 1}`): `speedup_median` = one-thread time /
# all-cores time, per block pair. More than 1: the extra cores helped.

# %%
if paired is not None:
    cores = paired[(paired["baseline"] == '{"threads": 1}') & (paired["workers"] == 1)]
    shown = cores[["model", "strategy_label", "batch", "tau", "threads", "speedup_median"]]
    print(shown.to_string(index=False))
    for model, strategy in (("jordan", "teacher_forcing"), ("elman", "bptt")):
        s = cores[(cores["model"] == model) & (cores["strategy_label"] == strategy)]
        if len(s):
            print(
                f"{model} + {strategy}: all cores vs one, median speedup "
                f"{s['speedup_median'].median():.2f}× over {len(s)} configuration(s)"
            )
if claims is not None:
    for key in ("tf_parallel_workers", "bptt_not_parallel"):
        row = claims[claims["key"] == key]
        print(f"{key}:", row["verdict"].iloc[0] if len(row) else "not found in claims.csv")

# %% [markdown]
# Teacher forcing gains from a second core; the sequential BPTT loop does not (on one
# sequence it even loses: the threads only add synchronisation). Whether that makes
# teacher forcing *faster* than the best BPTT, and from which τ, is the regime map in
# `reports/chapter10-cpu/index.html`.
