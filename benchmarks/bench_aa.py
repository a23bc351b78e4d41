"""An A/A test of ``rnnbench compare``: the same small job run K times at the same commit
on this machine, every ordered pair of runs compared; how often does the gate flag a
configuration (slower or faster) or fail (exit 1) on identical code?

Each run is a real ``rnnbench run`` (embedded Ray, every replicate a fresh process) into
its own folder; the runs come one after another, as a CI gate's would.  The rule compare
uses now (replicates, the run's shift, Welch) is printed beside the rule it replaced
(one run's raw samples, the interval from both sides' quartiles), on the same rows.

    .venv/bin/python benchmarks/bench_aa.py [--runs 4] [--replicates 3] [--keep DIR]

Take it on a quiet machine: anything else running is exactly the drift the test is about,
but a helper or a build beside it makes every run differ by far more than a gate should
forgive.
"""

from __future__ import annotations

import argparse
import itertools
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from rnnbench.report import compare
from rnnbench.report import runs as runs_mod

JOB = """name: aa
description: an A/A test job - small cells of every kind of timing the claims use
fixed: {{threads: 1, hidden: 32, repeats: 5, train_steps: 0, task: text, batch: 1,
        replicates: {replicates}}}
grid:
  tau: [64, 256, 1024]
  run:
    - {{model: elman, strategy: bptt}}
    - {{model: elman, strategy: bptt_compiled}}
    - {{model: jordan, strategy: teacher_forcing}}
"""


def quartile_marks(base: Path, new: Path, threshold: float) -> list[str]:
    """The rule compare used before: per configuration, every raw sample of one run pooled,
    the interval [Q1(NEW)/Q3(BASE), Q3(NEW)/Q1(BASE)]; slower/faster when it lies beyond T."""
    rows = runs_mod.load_sides(base, new, ("base", "new"))
    keys = runs_mod.config_keys(rows)
    marks = []
    for _, g in rows[rows["status"] == "ok"].groupby(keys, dropna=False):
        sides = [
            np.concatenate([np.asarray(s, float) for s in g[g["run"] == lab]["step_ms_samples"]])
            for lab in ("base", "new")
        ]
        if any(len(s) < 3 for s in sides):
            continue
        (b1, b3), (n1, n3) = (np.quantile(s, [0.25, 0.75]) for s in sides)
        lo, hi = n1 / b3, n3 / b1
        marks.append("slower" if lo > threshold else "faster" if hi < 1 / threshold else "same")
    return marks


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=4)
    p.add_argument("--replicates", type=int, default=3)
    p.add_argument("--threshold", type=float, default=compare.THRESHOLD)
    p.add_argument("--keep", type=Path, help="keep the runs' folders here")
    args = p.parse_args()
    root = args.keep or Path(tempfile.mkdtemp(prefix="rnnbench-aa-"))
    root.mkdir(parents=True, exist_ok=True)
    job = root / "aa.yaml"
    job.write_text(JOB.format(replicates=args.replicates))
    folders = []
    for i in range(args.runs):
        out = root / f"run{i}"
        print(f"run {i + 1} of {args.runs} -> {out}", flush=True)
        subprocess.run(
            [sys.executable, "-m", "rnnbench", "run", str(job), "--out", str(out), "--no-progress"],
            check=False,
            stdout=subprocess.DEVNULL,
        )
        folders.append(out)
    new_flags = new_total = new_fail = old_flags = old_total = old_fail = pairs = 0
    for a, b in itertools.permutations(folders, 2):
        pairs += 1
        c = compare.compare(a, b, threshold=args.threshold)
        marks = c.matched["mark"]
        new_flags += int(marks.isin(["slower", "faster"]).sum())
        new_total += len(marks)
        new_fail += c.exit_code
        old = quartile_marks(a, b, args.threshold)
        old_flags += sum(m != "same" for m in old)
        old_total += len(old)
        old_fail += int("slower" in old)
    print(
        f"\n{args.runs} runs of the same job, {pairs} ordered pairs compared, "
        f"threshold {args.threshold:g}:"
    )
    print(
        f"  before (one run's raw samples, quartile interval): {old_flags}/{old_total} "
        f"configurations flagged ({old_flags / max(old_total, 1):.1%}), "
        f"{old_fail}/{pairs} compares exit 1"
    )
    print(
        f"  now (replicates, the run's shift, Welch):           {new_flags}/{new_total} "
        f"configurations flagged ({new_flags / max(new_total, 1):.1%}), "
        f"{new_fail}/{pairs} compares exit 1"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
