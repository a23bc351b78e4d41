"""Synthetic result rows with known laws, for the report tests.

Every measure follows a stated law (time = a·τ^k, memory = b·τ^k) times
log-normal noise, so a test can check that the report recovers the law.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

from rnnbench.facts import scan_depth
from rnnbench.results.rows import ROW_KEYS

TAUS = (16, 32, 64, 128, 256, 512, 1024)
SEEDS = (0, 1, 2)

# (model, strategy) -> {measure: (prefactor, exponent)}
LAWS = {
    ("elman", "bptt"): {"time": (0.02, 1.0), "saved": (4096.0, 1.0), "peak": (2.0e5, 0.5)},
    ("elman", "bptt_fused"): {"time": (0.008, 1.0), "saved": (4096.0, 1.0), "peak": (2.0e5, 0.5)},
    ("elman", "bptt_compiled"): {
        "time": (0.004, 1.0),
        "saved": (2048.0, 1.0),
        "peak": (1.0e5, 0.5),
    },
    ("jordan", "teacher_forcing"): {
        "time": (0.05, 0.5),
        "saved": (4096.0, 1.0),
        "peak": (3.0e5, 0.5),
    },
}
DEPTH = {
    "bptt": lambda t: t,
    "bptt_fused": lambda t: t,
    "bptt_compiled": lambda t: t,
    "teacher_forcing": lambda t: 1,
    "free_running": lambda t: t,
}

# (task, model) -> (accuracy, per-token loss) after training
TRAINED = {
    ("delayed_recall", "elman"): (0.95, 0.2),
    ("delayed_recall", "jordan"): (0.13, 2.0),
    ("running_parity", "elman"): (0.99, 0.05),
    ("running_parity", "jordan"): (0.99, 0.04),
    ("text", "elman"): (0.55, 1.6),
    ("text", "jordan"): (0.35, 2.4),
}
TRAIN_STRATEGY = {"elman": "bptt", "jordan": "teacher_forcing"}
TASK_OPTIONS = {"delayed_recall": {"k": 5, "symbols": 8}, "running_parity": {}, "text": {}}

ENV = {
    "python": "3.11.2",
    "torch": "2.5.1",
    "ray": "2.59.0",
    "rnnbench": "0.1.0",
    "git_commit": "abc1234",
    "host": "testhost",
    "cpu_model": "Synthetic CPU @ 3 GHz",
    "gpu_name": None,
}


def row(**fields) -> dict:
    """One synthetic row: every key, these fields set, a stable cell id."""
    out = dict.fromkeys(ROW_KEYS, None)
    out.update(
        strategy_options={},
        task="text",
        task_options={},
        batch=1,
        hidden=32,
        n_in=8,
        n_out=8,
        n_params=1000,
        seed=0,
        threads=1,
        device="cpu",
        workers=1,
        dtype="float32",
        train_steps=0,
        lr=0.01,
        repeats=5,
        status="ok",
        error=None,
        split=None,
        neighbours=0,
        attempt=1,
        timestamp="2025-01-01T12:00:00+00:00",
        wall_s=1.0,
        peak_method="rss",
        **ENV,
    )
    out.update(fields)
    if out.get("chance_acc") is None:  # as a measured row records it: 1/symbols, 1/2, or none
        chance = {
            "delayed_recall": 1 / TASK_OPTIONS["delayed_recall"]["symbols"],
            "running_parity": 0.5,
            "temporal_xor": 0.5,
        }.get(out["task"], math.nan)
        out["chance_acc"] = chance
    blob = json.dumps(
        {
            k: out.get(k)
            for k in (
                "model",
                "strategy",
                "task",
                "tau",
                "batch",
                "seed",
                "workers",
                "split",
                "harness",
                "train_steps",
                "status",
                "threads",
                "hidden",
                "baseline",
                "strategy_options",
                "task_options",
                "rho",
                "replicate",
            )
        },
        sort_keys=True,
        default=str,
    )
    out["cell_id"] = hashlib.sha256(blob.encode()).hexdigest()[:16]
    return out


def timing_rows(laws=LAWS, taus=TAUS, seeds=SEEDS, noise=0.03, rng=None, batch=1) -> list[dict]:
    """One row per model × strategy × τ × seed, measures following ``laws``."""
    rng = rng or np.random.default_rng(0)
    rows = []
    for (model, strategy), law in laws.items():
        for tau in taus:
            for seed in seeds:

                def draw(key):
                    a, k = law[key]
                    return a * tau**k * math.exp(rng.normal(0.0, noise))

                ms = draw("time")
                rows.append(
                    row(
                        model=model,
                        strategy=strategy,
                        tau=tau,
                        seed=seed,
                        batch=batch,
                        step_ms_median=ms,
                        step_ms_iqr=ms * 0.05,
                        step_ms_samples=[ms * 0.98, ms, ms * 1.02],
                        fwd_ms_median=ms * 0.4,
                        bwd_ms_median=ms * 0.6,
                        saved_bytes=draw("saved"),
                        peak_bytes=draw("peak"),
                        flops=1e4 * tau,
                        depth=DEPTH[strategy](tau),
                    )
                )
    return rows


def trained_rows(trained=TRAINED, tau=64, seeds=SEEDS, exposure_gap=0.3, rng=None) -> list[dict]:
    """Rows after training (batch 16, one τ): accuracy and loss per task × model, curves,
    horizons; their step time is a constant, at a single τ it fits no law."""
    rng = rng or np.random.default_rng(1)
    rows = []
    for (task, model), (acc, loss) in trained.items():
        strategy = TRAIN_STRATEGY[model]
        for seed in seeds:
            jitter = rng.normal(0.0, 0.005)
            acc_s, loss_s = min(1.0, acc + jitter), loss * (1 + jitter)
            free = loss_s + exposure_gap if model == "jordan" else loss_s
            acc_free = acc_s - 0.05 if model == "jordan" else acc_s
            steps = np.arange(0, 101, 10)
            curve = [
                [
                    int(s),
                    0.01 * s * (2 if model == "elman" else 1),
                    loss_s + 2.0 * math.exp(-s / 30),
                ]
                for s in steps
            ]
            horizon = [1, 2, 4, 8, 16, 32, 64]
            rows.append(
                row(
                    model=model,
                    strategy=strategy,
                    task=task,
                    task_options=TASK_OPTIONS[task],
                    tau=tau,
                    batch=16,
                    seed=seed,
                    train_steps=300,
                    step_ms_median=1.0,
                    saved_bytes=1e5,
                    peak_bytes=1e6,
                    depth=DEPTH[strategy](tau),
                    loss_tf=loss_s,
                    loss_free=free,
                    acc_tf=acc_s,
                    acc_free=acc_free,
                    train_curve=curve,
                    horizon_t=horizon,
                    horizon_loss_tf=[loss_s] * len(horizon),
                    horizon_loss_free=[
                        loss_s + (exposure_gap * h / 64 if model == "jordan" else 0)
                        for h in horizon
                    ],
                )
            )
    return rows


def worker_rows(
    tf_speedups=(1.0, 1.8, 3.2),
    elman_speedups=(1.0, 0.97, 0.95),
    tau=1024,
    laws=LAWS,
    spread=0.02,
    baseline=True,
    seeds=(0,),
) -> list[dict]:
    """Time-parallel rows on 1, 2, 4 workers, all timed by the worker-group harness
    (``split`` 'time' or 'batch'; the 1-worker baseline has ``harness='group'``), each
    with raw samples spread ±``spread`` around its median (quartiles at about ±spread/2).
    ``baseline=False`` leaves the 1-worker rows out."""
    rows = []
    for model, strategy, split, speedups in (
        ("jordan", "teacher_forcing", "time", tf_speedups),
        ("elman", "bptt", "batch", elman_speedups),
    ):
        a, k = laws[(model, strategy)]["time"]
        base = a * tau**k  # the law's single-worker time
        for workers, s in zip((1, 2, 4), speedups):
            if workers == 1 and not baseline:
                continue
            ms = base / s
            for seed in seeds:
                rows.append(
                    row(
                        model=model,
                        strategy=strategy,
                        tau=tau,
                        workers=workers,
                        seed=seed,
                        split=split,
                        harness="group" if workers == 1 else "auto",
                        step_ms_median=ms,
                        step_ms_iqr=ms * spread,
                        step_ms_samples=list(ms * np.linspace(1 - spread, 1 + spread, 9)),
                        comm_ms_median=0.1 * workers,
                        depth=DEPTH[strategy](tau),
                    )
                )
    return rows


def failed_rows() -> list[dict]:
    return [
        row(
            model="elman",
            strategy="bptt",
            tau=65536,
            status="oom",
            error="Traceback (most recent call last):\n...\nRuntimeError: out of memory",
        ),
        row(
            model="jordan",
            strategy="teacher_forcing",
            tau=32768,
            status="crashed",
            error="worker died unexpectedly",
        ),
    ]


def claims_rows(mismatch=0.3, deer_speedup=0.5, vs_compiled=2.0, **hardware) -> list[dict]:
    """The evidence only the claims use: the chain and paired hardware comparisons,
    overhead comparisons, DEER iterations and a paired DEER timing, Jordan fed its own
    outputs on delayed recall, text generation with its W = 0 control and a Jordan trained
    on its own outputs (whose free-running loss is ``mismatch`` below teacher forcing's)."""
    return (
        hardware_rows(**hardware)
        + overhead_rows(vs_compiled=vs_compiled)
        + deer_rows()
        + deer_rows(strategy="quasi_deer", iterations=lambda tau: 20)
        + paired_rows(
            "elman",
            "deer",
            deer_speedup,
            {"strategy": "bptt"},
            tau=4096,
            iterations=6,
            converged=True,
            threads=2,
        )
        + capacity_rows({("jordan", "free_running"): 0.5}, tau=64)
        + exposure_rows(mismatch=mismatch)
    )


def frame(**kwargs) -> pd.DataFrame:
    """The full synthetic sweep: timings, trained rows, workers, two failures."""
    return pd.DataFrame(timing_rows(**kwargs) + trained_rows() + worker_rows() + failed_rows())


def write_rows(rows: pd.DataFrame | list, folder: Path) -> Path:
    """Write rows as ``folder/rows/<cell_id>.json``, as a results folder does."""
    records = rows.to_dict("records") if isinstance(rows, pd.DataFrame) else rows
    (folder / "rows").mkdir(parents=True, exist_ok=True)
    for i, rec in enumerate(records):
        (folder / "rows" / f"{rec['cell_id']}-{i}.json").write_text(json.dumps(rec))
    return folder


# --------------------------------------------------------------------------- claims' evidence


def law_rows(
    a: float,
    b: float,
    k: float = 1.0,
    taus=TAUS,
    seeds=(0,),
    noise=0.02,
    model="elman",
    strategy="bptt_compiled",
    rng=None,
    **fields,
) -> list[dict]:
    """Timing cells whose step time follows T = a + b·τ^k (times log-normal noise)."""
    rng = rng or np.random.default_rng(7)
    rows = []
    for tau in taus:
        for seed in seeds:
            ms = (a + b * tau**k) * math.exp(rng.normal(0.0, noise))
            rows.append(
                row(
                    model=model,
                    strategy=strategy,
                    tau=tau,
                    seed=seed,
                    step_ms_median=ms,
                    step_ms_iqr=ms * 0.05,
                    saved_bytes=4096.0 * tau,
                    depth=tau,
                    **fields,
                )
            )
    return rows


def process_law_rows(
    a: float,
    b: float,
    k: float = 1.0,
    taus=(256, 1024, 4096),
    speeds=(1.0, 1.8, 1.3),
    noise=0.02,
    rng=None,
    **fields,
) -> list[dict]:
    """Law cells: one row per process (replicate), its step time at every τ taken in
    turns, T = (a + b·τ^k) × the process's speed × log-normal noise per τ."""
    rng = rng or np.random.default_rng(11)
    rows = []
    for i, speed in enumerate(speeds):
        ms = [(a + b * t**k) * speed * math.exp(rng.normal(0.0, noise)) for t in taus]
        rows.append(
            row(
                model="elman",
                strategy="bptt_compiled",
                tau=max(taus),
                law_taus=list(taus),
                law_step_ms=ms,
                step_ms_median=ms[-1],
                step_ms_iqr=ms[-1] * 0.05,
                replicate=i,
                replicates=len(speeds),
                **fields,
            )
        )
    return rows


def paired_rows(
    model: str,
    strategy: str,
    speedup: float,
    baseline: dict,
    spread=0.03,
    pairs=9,
    replicates=3,
    seed=0,
    ms=10.0,
    **fields,
) -> list[dict]:
    """One cell timed against its ``baseline`` in alternating blocks, measured in
    ``replicates`` fresh processes: each replicate's pair ratios (baseline/this) lie around
    its own speedup, the replicates' speedups log-spaced ±``spread`` around ``speedup``."""
    out = []
    depth = fields.pop("depth", 1)
    for i, rep in enumerate(np.exp(np.linspace(-spread, spread, replicates))):
        mid = speedup * rep
        ratios = list(mid * np.exp(np.linspace(-spread, spread, pairs)))
        out.append(
            row(
                model=model,
                strategy=strategy,
                seed=seed,
                replicate=i,
                replicates=replicates,
                step_ms_median=ms,
                step_ms_iqr=ms * 0.05,
                baseline=json.dumps(baseline, sort_keys=True),
                baseline_step_ms_median=ms * mid,
                speedup_median=mid,
                speedup_q1=ratios[pairs // 4],
                speedup_q3=ratios[3 * pairs // 4],
                speedup_samples=ratios,
                depth=depth,
                **fields,
            )
        )
    return out


def chain_rows(
    strategy="bptt_compiled",
    step=1.45,
    chain=1.1,
    op=1.1,
    threads=2,
    tau=4096,
    batch=32,
    spread=0.03,
    replicates=3,
) -> list[dict]:
    """A sequential BPTT on ``threads`` cores against one thread: the whole step gains
    ``step``, its chain alone ``chain``, one step's operations ``op`` (the control)."""
    rows = paired_rows(
        "elman",
        strategy,
        step,
        {"threads": 1},
        spread=spread,
        tau=tau,
        batch=batch,
        threads=threads,
        replicates=replicates,
        depth=tau,
    )
    for i, r in enumerate(rows):
        jitter = math.exp(spread * (i - 1))
        r["chain_speedup_samples"] = list(chain * jitter * np.exp(np.linspace(-0.02, 0.02, 5)))
        r["op_speedup_samples"] = list(op * np.exp(np.linspace(-0.02, 0.02, 5)))
        r["chain_ms_median"] = 0.4 * r["step_ms_median"]
    return rows


def hardware_rows(
    chain=1.1, op=1.1, step=1.45, tf_cores=1.5, deer_workers=None, tf_workers=1.8, tau=1024
) -> list[dict]:
    """The compiled loop's chain on all cores against one thread (with its control and
    the whole step), Jordan + teacher forcing on all cores and on two workers against one
    (and Elman + deer split along time when given)."""
    rows = (
        chain_rows(step=step, chain=chain, op=op, tau=tau)
        + paired_rows("jordan", "teacher_forcing", tf_cores, {"threads": 1}, tau=tau, threads=2)
        + paired_rows(
            "jordan",
            "teacher_forcing",
            tf_workers,
            {"workers": 1},
            tau=tau * 16,
            workers=2,
            split="time",
            harness="group",
        )
    )
    if deer_workers is not None:
        rows += paired_rows(
            "elman",
            "deer",
            deer_workers,
            {"workers": 1},
            tau=tau,
            workers=2,
            split="time",
            harness="group",
        )
    return rows


def overhead_rows(vs_loop=20.0, vs_compiled=2.0, tau=1024) -> list[dict]:
    """Teacher forcing timed against the framework loop and the compiled loop, at
    1 thread and 2, B = 1 and 32."""
    rows = []
    for threads in (1, 2):
        for batch in (1, 32):
            for base, s in (("bptt", vs_loop), ("bptt_compiled", vs_compiled)):
                rows += paired_rows(
                    "jordan",
                    "teacher_forcing",
                    s,
                    {"model": "elman", "strategy": base},
                    tau=tau,
                    threads=threads,
                    batch=batch,
                )
    return rows


def deer_rows(
    iterations=lambda tau: 6,
    converged=True,
    rho=0.9,
    taus=(64, 256, 1024, 4096),
    strategy="deer",
    lyapunov=-0.2,
    cap=None,
) -> list[dict]:
    """Elman + deer timing cells with Newton iteration counts (``cap``: the iteration cap,
    default tau; ``converged`` may be a function of tau)."""
    done = converged if callable(converged) else (lambda tau: converged)
    return [
        row(
            model="elman",
            strategy=strategy,
            tau=tau,
            rho=rho,
            step_ms_median=1.0,
            iterations=iterations(tau),
            converged=done(tau),
            residual=1e-12,
            iter_cap=cap or tau,
            lyapunov=lyapunov,
            depth=iterations(tau) * scan_depth(tau),
        )
        for tau in taus
    ]


def capacity_rows(
    acc, task="delayed_recall", seeds=SEEDS, steps=300, tau=32, jitter=0.01
) -> list[dict]:
    """Trained rows: ``acc`` maps (model, strategy) to its accuracy on its own outputs."""
    rng = np.random.default_rng(3)
    rows = []
    for (model, strategy), a in acc.items():
        for seed in seeds:
            v = min(1.0, a + rng.normal(0.0, jitter))
            rows.append(
                row(
                    model=model,
                    strategy=strategy,
                    task=task,
                    task_options=TASK_OPTIONS.get(task, {}),
                    tau=tau,
                    batch=16,
                    seed=seed,
                    train_steps=steps,
                    loss_tf=1.0 - v,
                    loss_free=1.0 - v,
                    acc_tf=v,
                    acc_free=v,
                    depth=tau,
                )
            )
    return rows


def exposure_rows(
    gap=0.5,
    mismatch=0.3,
    feedback_worth=0.8,
    seeds=SEEDS,
    steps=300,
    loss=2.0,
    task_options=None,
    control=True,
    self_fed=True,
) -> list[dict]:
    """Jordan on text generation (input none): trained with teacher forcing, its
    free-running loss ``gap`` above its teacher-forced one; trained on its own outputs
    (free running), a free-running loss ``mismatch`` below the teacher-forcing-trained
    one's; the W = 0 control ``feedback_worth`` above the teacher-forced loss."""
    rng = np.random.default_rng(5)
    opts = {"input": "none"} if task_options is None else task_options
    common = dict(
        model="jordan", task="text", task_options=opts, tau=64, batch=16, train_steps=steps, depth=1
    )
    horizon = [8, 16, 32, 64]
    rows = []
    for seed in seeds:
        j = rng.normal(0.0, 0.01)
        free = loss + j + gap + rng.normal(0.0, 0.01)
        rows.append(
            row(
                strategy="teacher_forcing",
                seed=seed,
                loss_tf=loss + j,
                loss_free=free,
                acc_tf=0.3,
                acc_free=0.25,
                eval_feedback="argmax",
                horizon_t=horizon,
                horizon_loss_free=[loss + gap * h / 64 for h in horizon],
                **common,
            )
        )
        if self_fed:
            own = free - mismatch + rng.normal(0.0, 0.01)
            rows.append(
                row(
                    strategy="free_running",
                    seed=seed,
                    loss_tf=loss + j + 0.1,
                    loss_free=own,
                    acc_tf=0.28,
                    acc_free=0.27,
                    eval_feedback="softmax",
                    horizon_t=horizon,
                    horizon_loss_free=[own] * len(horizon),
                    **{**common, "depth": 64},
                )
            )
        if control:
            c = loss + feedback_worth + rng.normal(0.0, 0.01)
            rows.append(
                row(
                    strategy="teacher_forcing",
                    strategy_options={"w_zero": True},
                    seed=seed,
                    loss_tf=c,
                    loss_free=c,
                    acc_tf=0.2,
                    acc_free=0.2,
                    **common,
                )
            )
    return rows


# --------------------------------------------------------------------------- busy rows (legibility)

LONG_TASK_PATH = (
    "/data/corpora/$HOME/a very long folder name/with $x$ in it/shakespeare_complete.txt"
)
BUSY_LAWS = {
    ("elman", "bptt", ()): (0.02, 1.0),
    ("elman", "bptt_fused", ()): (0.008, 1.0),
    ("elman", "bptt_compiled", ()): (0.004, 1.0),
    ("elman", "scan_bptt", ()): (0.03, 0.9),
    ("elman", "deer", ()): (0.05, 0.8),
    ("elman", "quasi_deer", ()): (0.04, 0.8),
    ("elman", "truncated_bptt", (("k", 32),)): (0.015, 1.0),
    ("elman", "checkpoint_bptt", (("segments", 8),)): (0.025, 1.0),
    ("jordan", "teacher_forcing", ()): (0.05, 0.5),
    ("jordan", "bptt", ()): (0.02, 1.0),
    ("jordan", "scheduled_sampling", (("p", 0.25),)): (0.03, 1.0),
}


def busy_rows(label_task: str = LONG_TASK_PATH) -> list[dict]:
    """A crowded sweep: eleven model + strategy series (some with options), two tasks (one
    with a long path holding ``$``), three thread counts and three hidden sizes, workers,
    trained rows, DEER over ρ and τ, failures: every plot busy at once."""
    rng = np.random.default_rng(7)
    rows = []
    tasks = (("text", {"path": label_task}), ("running_parity", {}))
    for (model, strategy, opts), (a, k) in BUSY_LAWS.items():
        for task, task_options in tasks:
            for threads in (1, 2, 4):
                for hidden in (8, 32, 128):
                    for tau in (64, 256, 1024, 4096):
                        ms = a * tau**k * hidden / 32 / threads**0.5 * math.exp(rng.normal(0, 0.03))
                        rows.append(
                            row(
                                model=model,
                                strategy=strategy,
                                strategy_options=dict(opts),
                                task=task,
                                task_options=task_options,
                                tau=tau,
                                hidden=hidden,
                                threads=threads,
                                step_ms_median=ms,
                                step_ms_iqr=ms * (0.2 if tau == 256 else 0.05),
                                step_ms_samples=[ms * 0.98, ms, ms * 1.02],
                                saved_bytes=4096.0 * tau * hidden,
                                peak_bytes=2.0e5 * tau**0.5 * hidden,
                                flops=1e4 * tau,
                                depth=tau,
                            )
                        )
    for strategy in ("deer", "quasi_deer"):
        for rho in (0.5, 0.9, 0.99, 1.1, 1.5):
            for tau in (64, 256, 1024, 4096):
                rows += deer_rows(
                    strategy=strategy,
                    rho=rho,
                    taus=(tau,),
                    iterations=lambda t, r=rho: int(4 + 10 * r * math.log2(t)),
                    converged=rho < 1.2,
                )
    return rows + trained_rows() + worker_rows() + failed_rows()
