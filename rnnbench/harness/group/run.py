"""One cell timed on a worker group, turned into its row: the steps alone or taking
turns with a baseline's group, per step the slowest rank, then training and evaluation."""

from __future__ import annotations

import json
import math
import time
from contextlib import ExitStack

from rnnbench.core import strategies
from rnnbench.facts import BEST_CHOICES, clip_error
from rnnbench.harness import paired, training
from rnnbench.harness.group.placement import Group, rank_nodes
from rnnbench.harness.group.shard import active_workers, fair_baseline, idle_note, split_kind
from rnnbench.harness.group.worker import Worker
from rnnbench.harness.row import base_row
from rnnbench.harness.training import WARMUP, initial_model
from rnnbench.job.cell import Cell
from rnnbench.pit import diagnostics
from rnnbench.results.rows import NonFiniteLoss, fail


def summarise(cell: Cell, per_rank: list[list[dict]], warmup: int = WARMUP) -> dict:
    """Row fields from every rank's per-step records (seconds): step, fwd and bwd as
    the slowest rank's per step, comm as the least-waiting rank's."""
    steps = list(zip(*per_rank))[warmup:]

    def stat(what: str, pick=max):
        return training.measurement([pick(r[what] for r in s) for s in steps], cell, what)

    faults = [sum(r.get("faults", 0) for r in s) for s in steps]
    return {
        **training.time_fields(stat("step"), stat("fwd"), stat("bwd")),
        "comm_ms_median": stat("comm", min).median * 1e3,
        "minor_faults_per_step": sum(faults) / len(faults) if faults else math.nan,
        **reported(per_rank),
    }


def reported(per_rank: list[list[dict]]) -> dict:
    """iterations, converged, residual of the first step (the initial parameters, as the
    one-process harness reports): the most iterations, converged only if every rank was,
    the largest residual (time-split ranks agree on all three)."""
    first = [steps[0] for steps in per_rank if steps and steps[0].get("iterations") is not None]
    if not first:
        return dict.fromkeys(diagnostics.FIELDS)
    return {
        "iterations": max(r["iterations"] for r in first),
        "converged": all(r["converged"] for r in first),
        "residual": max(r["residual"] for r in first),
    }


def _check_finite(cell: Cell, records: list[list[dict]]) -> None:
    bad = [r["loss"] for r in records[0] if not math.isfinite(r["loss"])]
    if bad:
        raise NonFiniteLoss(f"non-finite loss {bad[0]} ({cell.strategy})")


def _alone(cell: Cell, g: Group) -> dict:
    """The cell's steps alone (``WARMUP`` untimed, then ``repeats`` timed)."""
    g.reset_peak()
    records = g.steps(WARMUP + cell.repeats)
    _check_finite(cell, records)
    out = summarise(cell, records)
    out["peak_rss_bytes"], out["peak_rss_method"] = g.peak()
    return out


class BaselineFailed(RuntimeError):
    """The baseline's group failed while the pair was timed (the cell's did not)."""


def _paired(cell: Cell, a: Group, b: Group) -> dict:
    """Both groups up, taking turns: ``repeats`` pairs of one step each, A B B A ...,
    every rank's threads moved to the next CPUs between pairs."""
    from ray.exceptions import GetTimeoutError

    def steps(group: Group, n: int) -> list[list[dict]]:
        if group is a:
            records = group.steps(n)
            _check_finite(group.cell, records)
            return records
        try:
            records = group.steps(n)
            _check_finite(group.cell, records)
            return records
        except GetTimeoutError:
            raise  # the cell's time-out, not the baseline's failure
        except Exception as err:
            raise BaselineFailed(f"{type(err).__name__}: {err}") from err

    steps(a, WARMUP)
    steps(b, WARMUP)
    a.reset_peak()
    per: dict[str, list[list[list[dict]]]] = {"a": [], "b": []}

    def block(group: Group, side: str) -> float:
        records = steps(group, 1)
        per[side].append(records)
        return max(r[0]["step"] for r in records)

    try:
        result = paired.alternate(
            lambda k: block(a, "a"),
            lambda k: block(b, "b"),
            cell.repeats,
            before=lambda k, side: (a if side == "a" else b).pin(k),
        )
    finally:
        for g in (a, b):
            try:
                g.unpin()
            except Exception:
                pass
    joined: dict[str, list[list[dict]]] = {
        side: [sum((rec[r] for rec in per[side]), []) for r in range(len(per[side][0]))]
        for side in per
    }
    out = summarise(cell, joined["a"], 0)
    out["peak_rss_bytes"], out["peak_rss_method"] = a.peak()
    out.update(paired.row_fields(result))
    out["baseline_minor_faults_per_step"] = summarise(b.cell, joined["b"], 0)[
        "minor_faults_per_step"
    ]
    return out


def run_cell(
    cell: Cell,
    *,
    timeout_s: float | None = None,
    cpus_per_worker: float | None = None,
    group: type = Group,
    worker: type = Worker,
) -> dict:
    """Run a cell as one group of ``cell.workers`` Ray actors; return its row.

    The row is :func:`rnnbench.results.rows.base_row` with the worker-group measures:
    ``split``, step/fwd/bwd times (inside the workers, slowest rank per step),
    ``comm_ms_median``, with more than one worker the collectives' costs timed at
    the group's start (:mod:`.collectives`), minor page faults per step and peak RSS, with a
    ``baseline`` the paired fields (the baseline's failure leaves
    ``baseline_error`` and the cell timed alone), and -- with ``train_steps`` --
    the training curve and the held-out loss and accuracy of the trained
    replica (:func:`rnnbench.harness.training.evaluate`).  Memory and FLOPs are
    per-process measures and stay NaN here (the one-worker row has them).

    Needs Ray: joins the running instance (driver or inside a Ray task), else
    starts an embedded one.  Failure is data (:func:`rnnbench.results.rows.status_of`:
    a dead worker gives ``crashed``, ``oom`` when Ray says it was memory);
    when this returns the actors are killed (Ray ends their processes moments
    later) and the placement groups are removed.  ``group`` and ``worker``: the
    classes used (a subclass may watch the group or inject a fault).
    """
    from ray.exceptions import GetTimeoutError

    t0 = time.perf_counter()
    row = base_row(cell)
    row["split"] = split_kind(cell)
    row["workers_active"] = active_workers(cell)
    row["error"] = idle_note(cell)
    base = None
    if cell.baseline:
        if (choice := dict(cell.baseline).get("strategy")) in BEST_CHOICES:
            row["baseline_error"] = (
                f"{choice}: chosen by timing in one process; not offered beside a worker group"
            )
        else:
            base = fair_baseline(cell, cell.paired_cell())
            row["baseline_config"] = json.dumps(cell.changed(base), sort_keys=True)
    share = cpus_per_worker
    if base is not None and share is None:  # both groups fit where the larger one would
        share = max(cell.workers * cell.n_threads, base.workers * base.n_threads) / (
            cell.workers + base.workers
        )
    try:
        with ExitStack() as stack:
            g = stack.enter_context(
                group(cell, cpus_per_worker=share, timeout_s=timeout_s, worker=worker)
            )
            row.update(rank_nodes(g.infos))  # where each rank runs
            other = None
            if base is not None:
                try:
                    other = stack.enter_context(
                        group(
                            base,
                            cpus_per_worker=share,
                            timeout_s=timeout_s,
                            worker=worker,
                            role="baseline",
                        )
                    )
                except GetTimeoutError:
                    raise
                except Exception as err:
                    row["baseline_error"] = clip_error(f"{type(err).__name__}: {err}")
            if cell.workers > 1:  # what the network costs (rnnbench.report.scaling)
                row.update(g.collectives())
            times = None
            if other is not None:
                try:
                    times = _paired(cell, g, other)
                except BaselineFailed as err:
                    row["baseline_error"] = clip_error(err)
                    other.close()
            row.update(times or _alone(cell, g))
            if row["iterations"] is not None:  # as the one-process harness: measured depth
                row["depth"] = strategies.get(cell.strategy).depth(
                    cell.tau, iterations=row["iterations"], **dict(cell.strategy_options)
                )
            if cell.train_steps:
                g.reset()
                row["train_curve"] = g.train()
                model = initial_model(cell, row["n_in"], row["n_out"])
                model.load_state_dict(g.parameters()[0])
                row.update(training.evaluate(cell, model, cell.make_task()))
    except Exception as err:
        fail(row, err)
    row["wall_s"] = time.perf_counter() - t0
    return row
