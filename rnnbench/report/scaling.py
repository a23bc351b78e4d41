"""A scaling model of a time split to N = 1,024 workers, calibrated from rows.

The equations and assumptions are in docs/scaling.md; in short, one training step of a
sequence of tau steps split over N workers (each a shard of L = ceil(tau / N) steps) takes

    T(N) = F(L) * k + B(L) + R + fold(N) + comm(N)

- F, B: the forward (per Newton iteration) and backward time of one shard against its
  length, least squares F(L) = a + b L over the one-worker rows of the configuration
  (several tau), or F(L) = b L through 0 with one tau; k: the Newton iterations (DEER,
  quasi-DEER; 1 otherwise); ``scan_bptt``'s forward is the sequential chain, which the
  ranks run one after another: F(tau), not F(L);
- R: the rest of the one-worker step (optimizer, the gradient's reduction on one rank);
- fold(N): the summaries each rank composes (N - 1 matrix-vector products per scan),
  at the node's GEMM rate (an optimistic bound);
- comm(N): the strategy's collectives per step (:func:`collectives`), each costed on a
  network of two parameters, per-message latency alpha and bandwidth beta, by the ring
  algorithms: all-reduce of m bytes 2 (N - 1) alpha + 2 (N - 1) / N m / beta, all-gather
  of m bytes per rank (N - 1) alpha + (N - 1) m / beta, a send alpha + m / beta.

Speedup(N) = T(1) / T(N).  The loopback network is fitted to every group row's
collective timings (alpha and 1 / beta by least squares over the ring coefficients);
:data:`DATACENTRE` is a documented example, not a measurement.  Torch-free.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from rnnbench import stats
from rnnbench.facts import OK

N_MAX = 1024
GRID = np.arange(1, N_MAX + 1)
NEWTON = ("deer", "quasi_deer")
ITEMSIZE = {"float32": 4, "float64": 8, "float16": 2, "bfloat16": 2}
# the configuration a calibration holds for (tau varies within it)
CALIBRATION = [
    "model",
    "strategy",
    "strategy_label",
    "task_label",
    "batch",
    "hidden",
    "threads",
    "dtype",
    "device",
]


@dataclass(frozen=True)
class Network:
    """Per-message latency ``alpha`` (s) and bandwidth ``beta`` (bytes/s) of one link."""

    name: str
    alpha: float
    beta: float
    points: int = 0  # collective timings it was fitted to (0: given, not measured)

    def allreduce(self, n: int, nbytes: float) -> float:
        if n <= 1:
            return 0.0
        return 2 * (n - 1) * self.alpha + 2 * (n - 1) / n * nbytes / self.beta

    def allgather(self, n: int, nbytes: float) -> float:
        if n <= 1:
            return 0.0
        return (n - 1) * self.alpha + (n - 1) * nbytes / self.beta

    def send(self, n: int, nbytes: float) -> float:
        return 0.0 if n <= 1 else self.alpha + nbytes / self.beta


# 100 Gb/s RDMA (RoCE v2 or InfiniBand EDR/HDR100): 12.5 GB/s a link, and 5 us a
# message end to end through the collective library (the wire's 1-2 us plus software).
DATACENTRE = Network("datacentre example (100 Gb/s, 5 us)", alpha=5e-6, beta=12.5e9)


def coefficients(kind: str, n: int, nbytes: float) -> tuple[float, float]:
    """(latency count, bytes over the bandwidth) of one collective in the ring model:
    its time is alpha * the first + the second / beta."""
    if kind == "allreduce":
        return 2 * (n - 1), 2 * (n - 1) / n * nbytes
    if kind == "allgather":
        return n - 1, (n - 1) * nbytes
    raise ValueError(f"kind: expected allreduce or allgather, got {kind!r}")


def loopback(rows: pd.DataFrame, name: str = "loopback (measured)") -> Network | None:
    """The network the group rows' collective timings describe: alpha and 1 / beta by
    least squares over the ring model's coefficients (every ok row with more than one
    worker and its timings); None without any.  A non-positive fitted 1 / beta is an
    unlimited bandwidth, a negative alpha none."""
    lat, byt, sec = [], [], []
    ok = rows[(rows["status"] == OK) & (rows["workers"] > 1)]
    for _, r in ok.iterrows():
        sizes = r.get("coll_bytes")
        if not isinstance(sizes, list) or not sizes:
            continue
        for kind in ("allreduce", "allgather"):
            for m, t in zip(sizes, r.get(f"{kind}_s") or []):
                if t is not None and math.isfinite(t):
                    a, b = coefficients(kind, int(r["workers"]), float(m))
                    lat.append(a)
                    byt.append(b)
                    sec.append(t)
    if len(sec) < 2:
        return None
    design = np.column_stack([lat, byt])
    (alpha, inv_beta), *_ = np.linalg.lstsq(design, np.asarray(sec), rcond=None)
    beta = 1.0 / inv_beta if inv_beta > 0 else math.inf
    return Network(name, max(float(alpha), 0.0), float(beta), len(sec))


# --------------------------------------------------------------------------- the strategy


def collectives(
    strategy: str, batch: int, hidden: int, itemsize: int, n_params: int, iterations: float
) -> list[tuple[str, float, float]]:
    """(kind, bytes, count) of every collective one step makes, per strategy:

    - every time split: the gradient and the loss, all-reduced once ((n_params + 1) items);
    - DEER / quasi-DEER: the total length (one int64 all-gathered); per iteration the
      stopping rule (2 items all-reduced, once more to stop) and the forward summaries
      (B (H^2 + H) items a rank all-gathered; quasi-DEER's diagonal: 2 B H); the backward
      adjoint's summaries once (B (H^2 + H));
    - ``scan_bptt``: the sequential forward hands its last state on (B H items, N - 1
      sends one after another), the backward adjoint's summaries once.
    """
    dense = batch * (hidden * hidden + hidden) * itemsize
    out: list[tuple[str, float, float]] = [("allreduce", (n_params + 1) * itemsize, 1.0)]
    if strategy in NEWTON:
        forward = dense if strategy == "deer" else 2 * batch * hidden * itemsize
        out += [
            ("allgather", 8, 1.0),
            ("allreduce", 2 * itemsize, iterations + 1),
            ("allgather", forward, iterations),
            ("allgather", dense, 1.0),
        ]
    elif strategy == "scan_bptt":
        out += [("chain", batch * hidden * itemsize, 1.0), ("allgather", dense, 1.0)]
    return out


def comm_time(plan, net: Network, n: int) -> float:
    """Seconds of one step's collectives (:func:`collectives`) on ``net`` over ``n``."""
    total = 0.0
    for kind, nbytes, count in plan:
        if kind == "chain":
            total += count * (n - 1) * net.send(n, nbytes)
        else:
            total += count * getattr(net, kind)(n, nbytes)
    return total


def fold_flops(strategy: str, batch: int, hidden: int, iterations: float) -> float:
    """FLOPs one rank spends composing the other ranks' summaries, per other rank."""
    dense = 2 * batch * hidden * hidden
    if strategy == "deer":
        return dense * (iterations + 1)
    if strategy == "quasi_deer":
        return 2 * batch * hidden * iterations + dense
    return dense if strategy == "scan_bptt" else 0.0


# --------------------------------------------------------------------------- compute


@dataclass(frozen=True)
class Line:
    """y = a + b x (seconds against steps); ``a`` is 0 when only one x was measured."""

    a: float
    b: float

    def __call__(self, x):
        return self.a + self.b * x


def line(x, y) -> Line:
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if len(np.unique(x)) < 2:
        return Line(0.0, float(np.mean(y / x)))
    b, a = np.polyfit(x, y, 1)
    return Line(float(a), float(b))


@dataclass(frozen=True)
class Model:
    """One configuration's calibrated step time against N (seconds)."""

    key: dict
    tau: int
    forward: Line  # per iteration, against the shard length
    backward: Line
    rest: float
    iterations: float
    plan: list
    fold_s: float  # seconds per other rank's summaries

    def compute(self, n, k: float | None = None):
        """Seconds of one step's computation over ``n`` workers (k: iterations)."""
        n = np.asarray(n, dtype=float)
        k = self.iterations if k is None else k
        shard = np.ceil(self.tau / n)
        fwd_len = self.tau if self.key["strategy"] == "scan_bptt" else shard
        return (
            self.forward(fwd_len) * max(k, 1.0)
            + self.backward(shard)
            + self.rest
            + (n - 1) * self.fold_s
        )

    def comm(self, net: Network, n) -> np.ndarray:
        return np.array([comm_time(self.plan, net, int(m)) for m in np.atleast_1d(n)])

    def step(self, net: Network, n, k: float | None = None) -> np.ndarray:
        return self.compute(n, k) + self.comm(net, n)

    def speedup(self, net: Network, n=GRID) -> np.ndarray:
        return self.step(net, 1)[0] / self.step(net, n)


def _num(frame: pd.DataFrame, col: str) -> pd.Series:
    return (
        pd.to_numeric(frame[col], errors="coerce")
        if col in frame
        else pd.Series(np.nan, index=frame.index)
    )


def time_split(rows: pd.DataFrame) -> pd.DataFrame:
    """The ok rows of time-split worker-group cells, with their step times."""
    ok = rows[(rows["status"] == OK) & (rows["split"] == "time")]
    return ok[_num(ok, "step_ms_median").notna()]


def models(rows: pd.DataFrame) -> list[Model]:
    """A model for every (configuration, tau) of the time-split rows whose
    configuration has one-worker rows to calibrate on."""
    rows = time_split(rows)
    out = []
    for key, cfg in rows.groupby(CALIBRATION, dropna=False, sort=True):
        one = cfg[cfg["workers"] == 1]
        if one.empty:
            continue
        key = dict(zip(CALIBRATION, key))
        k_one = _num(one, "iterations").fillna(1).clip(lower=1)
        fwd, bwd = _num(one, "fwd_ms_median") / 1e3, _num(one, "bwd_ms_median") / 1e3
        step = _num(one, "step_ms_median") / 1e3
        tau = _num(one, "tau")  # one worker: the shard is the whole sequence
        forward, backward = line(tau, fwd / k_one), line(tau, bwd)
        left = (step - fwd - bwd).dropna()
        rest = float(left.median()) if len(left) else 0.0
        itemsize = ITEMSIZE.get(str(key["dtype"]), 4)
        n_params = int(_num(one, "n_params").median())
        rate = float(_num(cfg, "gemm_gflops").median()) * 1e9
        for t in sorted(set(cfg["tau"].astype(int))):
            at = one[one["tau"] == t]
            k = float(_num(at if len(at) else one, "iterations").median())
            k = 1.0 if not math.isfinite(k) else k
            flops = fold_flops(str(key["strategy"]), int(key["batch"]), int(key["hidden"]), k)
            out.append(
                Model(
                    key,
                    t,
                    forward,
                    backward,
                    rest,
                    k,
                    collectives(
                        str(key["strategy"]),
                        int(key["batch"]),
                        int(key["hidden"]),
                        itemsize,
                        n_params,
                        k,
                    ),
                    flops / rate if rate > 0 and math.isfinite(rate) else 0.0,
                )
            )
    return out


def label(m: Model) -> str:
    k = m.key
    return (
        f"{k['model']} + {k['strategy_label']}, tau {m.tau}, B {int(k['batch'])}, "
        f"H {int(k['hidden'])}, {int(k['threads'])} thr"
    )


# --------------------------------------------------------------------------- conclusions


def limits(m: Model, net: Network) -> dict:
    """Where communication eats the gain on ``net``: ``n_best``, the N (up to 1,024) of
    the largest predicted speedup -- each worker beyond it costs more in communication
    and folding than its shard saves -- (NaN when the speedup still grows at 1,024);
    ``n_even``, the first N whose communication takes as long as its computation."""
    s = m.speedup(net)
    best = int(GRID[int(np.argmax(s))])
    comm, compute = m.comm(net, GRID), m.compute(GRID)
    even = GRID[comm >= compute]
    return {
        "configuration": label(m),
        "network": net.name,
        "alpha_us": net.alpha * 1e6,
        "beta_GBps": net.beta / 1e9,
        "n_best": best if best < N_MAX else math.nan,
        "speedup_best": float(s.max()),
        "speedup_1024": float(s[-1]),
        "n_even": int(even[0]) if len(even) else math.nan,
    }


def communication_wins(m: Model, net: Network, n: int) -> bool:
    """Whether at ``n`` workers one more worker would slow the step (the predicted
    speedup at n + 1 is below that at n): communication has eaten the gain."""
    s = m.speedup(net, np.array([n, n + 1]))
    return bool(s[1] < s[0])


def check(m: Model, rows: pd.DataFrame, net: Network) -> pd.DataFrame:
    """The model against every measured N > 1 of its configuration and tau: measured
    speedup = geomean of the one-worker steps / geomean of the N-worker steps, with the
    95% interval over replicates (:func:`rnnbench.stats.log_ratio_ci`; none with fewer
    than two a side); predicted at the N rows' own iterations; error = predicted /
    measured, its interval from the measured one's."""
    rows = time_split(rows)
    mine = rows[(rows["tau"] == m.tau)]
    for col, v in m.key.items():
        mine = mine[mine[col].astype(str) == str(v)]
    one = list(_num(mine[mine["workers"] == 1], "step_ms_median"))
    out = []
    for n, at in mine[mine["workers"] > 1].groupby("workers"):
        steps = list(_num(at, "step_ms_median"))
        ci = stats.log_ratio_ci(one, steps)
        measured = (
            ci.estimate if ci else float(np.exp(np.mean(np.log(one)) - np.mean(np.log(steps))))
        )
        k = float(_num(at, "iterations").median())
        k = m.iterations if not math.isfinite(k) else k
        predicted = float(m.step(net, 1)[0] / m.step(net, int(n), k)[0])
        out.append(
            {
                "configuration": label(m),
                "workers": int(n),
                "replicates": len(steps),
                "measured": measured,
                "measured_lo": ci.low if ci else math.nan,
                "measured_hi": ci.high if ci else math.nan,
                "predicted": predicted,
                "error": predicted / measured,
                "error_lo": predicted / ci.high if ci else math.nan,
                "error_hi": predicted / ci.low if ci else math.nan,
            }
        )
    return pd.DataFrame(out)


CHECK = [
    "configuration",
    "workers",
    "replicates",
    "measured",
    "measured_lo",
    "measured_hi",
    "predicted",
    "error",
    "error_lo",
    "error_hi",
]
LIMITS = [
    "configuration",
    "network",
    "alpha_us",
    "beta_GBps",
    "n_best",
    "speedup_best",
    "speedup_1024",
    "n_even",
]


@dataclass(frozen=True)
class Scaling:
    """Everything the report shows of the model: the fitted loopback network, each
    configuration's model, the check against measured N and the limits per network."""

    networks: tuple
    models: tuple
    check: pd.DataFrame
    limits: pd.DataFrame


def scaling(rows: pd.DataFrame) -> Scaling:
    """The model for every time-split configuration of ``rows`` (none: empty tables)."""
    net = loopback(rows)  # None: rows from before the collectives were timed
    nets = tuple(n for n in (net, DATACENTRE) if n is not None)
    ms = tuple(models(rows))
    checks = [check(m, rows, net) for m in ms] if net is not None else []
    checked = pd.concat(
        [c for c in checks if len(c)] or [pd.DataFrame(columns=CHECK)], ignore_index=True
    )
    lim = pd.DataFrame([limits(m, n) for m in ms for n in nets], columns=LIMITS)
    return Scaling(nets, ms, checked.reindex(columns=CHECK), lim)
