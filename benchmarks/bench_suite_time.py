"""`make test` of two commits, side by side on this machine: the whole suite of each, and
the tests the two have in common (by test name, module paths may differ), each run with its
own commit's `make test` command.  Prints pytest's own times and the ratios new / old.

    python benchmarks/bench_suite_time.py --old 5f03263 --new HEAD

Each commit is cloned fresh into --work and set up with its own `make setup`; the runs take
turns (old, new, old, new).  Run it with nothing else on the machine: the suite is
CPU-bound, and a neighbour's load lands in the figures.
"""

from __future__ import annotations

import argparse
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PASSED = re.compile(r"(\d+) passed.* in ([0-9.]+)s")


def sh(cmd: list[str], cwd: Path, log: Path | None = None) -> str:
    done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if log is not None:
        log.write_text(done.stdout + done.stderr)
    if done.returncode != 0:
        sys.exit(f"{shlex.join(cmd)} in {cwd}: exit {done.returncode}\n{done.stderr[-2000:]}")
    return done.stdout


def checkout(commit: str, where: Path) -> Path:
    shutil.rmtree(where, ignore_errors=True)
    sh(["git", "clone", "-q", str(ROOT), str(where)], ROOT)
    sh(["git", "checkout", "-q", commit], where)
    sh(["make", "setup"], where)
    return where


def test_command(clone: Path) -> list[str]:
    """The pytest command of the clone's `make test` recipe, its venv spelled out."""
    after = (clone / "Makefile").read_text().split("\ntest:", 1)[1]
    recipe = next(x for x in after.splitlines() if "pytest" in x)
    return shlex.split(recipe.strip().replace("$(BIN)", ".venv/bin"))


def names(clone: Path) -> dict[str, str]:
    """Test node ids of the clone by their name (function and parameters)."""
    out = sh([".venv/bin/pytest", "--collect-only", "-q", "-p", "no:cacheprovider"], clone)
    ids = [x.strip() for x in out.splitlines() if "::" in x]
    return {i.split("::", 1)[1]: i for i in ids}


def timed(clone: Path, extra: list[str], log: Path) -> tuple[int, float]:
    """(tests passed, pytest's own seconds) of one run; any failure stops the script."""
    out = sh([*test_command(clone), "-p", "no:cacheprovider", *extra], clone, log)
    found = PASSED.findall(out)
    if not found:
        sys.exit(f"no pytest summary in {log}")
    return int(found[-1][0]), float(found[-1][1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--old", required=True, help="the commit to compare against")
    parser.add_argument("--new", default="HEAD")
    parser.add_argument("--work", default="/tmp/suite-ab", type=Path)
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    new_commit = sh(["git", "rev-parse", args.new], ROOT).strip()
    old = checkout(args.old, args.work / "old")
    new = checkout(new_commit, args.work / "new")
    old_names, new_names = names(old), names(new)
    common = sorted(set(old_names) & set(new_names))
    lists = {}
    for side, by_name in (("old", old_names), ("new", new_names)):
        lists[side] = args.work / f"common-{side}.txt"
        lists[side].write_text("\n".join(by_name[n] for n in common) + "\n")
    print(f"old {args.old}: {len(old_names)} tests; new {new_commit[:7]}: {len(new_names)}")
    print(f"in common by name: {len(common)}")
    results = {}
    for what in ("whole suite", "tests in common"):
        for side, clone in (("old", old), ("new", new)):
            extra = [] if what == "whole suite" else [f"@{lists[side]}"]
            log = args.work / f"{side}-{what.replace(' ', '-')}.log"
            results[side, what] = timed(clone, extra, log)
            n, s = results[side, what]
            print(f"  {what:16s} {side}: {n:4d} passed in {s:7.1f} s   ({shlex.join(extra)})")
    for what in ("whole suite", "tests in common"):
        ratio = results["new", what][1] / results["old", what][1]
        print(f"{what}: new / old = {ratio:.2f}")


if __name__ == "__main__":
    main()
