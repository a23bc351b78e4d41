"""docs/cluster.md's recipe, run as written (slow), and jobs/kuberay-rayjob.yaml's
entrypoint checked with `rnnbench run`'s own argument parser."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
import yaml
from helpers import ROOT, free_ports, kill_tree, node_ports, subprocess_env, temp_processes

from rnnbench.facts import node_cpus

MANIFEST = ROOT / "jobs" / "kuberay-rayjob.yaml"
RECIPE = ROOT / "docs" / "cluster.md"


def entrypoint_problems(manifest: dict, root: Path = ROOT) -> list[str]:
    """What is wrong with a RayJob's entrypoint as an `rnnbench run` command: it must name
    its interpreter (or the rnnbench script) by an absolute path, run `rnnbench run`,
    parse with the command's own parser, and name a job file of this repository (as the
    image holds it, under its working directory)."""
    from rnnbench.cli import _Parser
    from rnnbench.sweep import command

    if manifest.get("kind") != "RayJob" or "entrypoint" not in manifest.get("spec", {}):
        return ["not a RayJob with spec.entrypoint"]
    words = shlex.split(manifest["spec"]["entrypoint"])
    problems = []
    if not words or not words[0].startswith("/"):
        problems.append(f"the program {words[:1]} is not an absolute path (PATH-dependent)")
    if words[1:3] == ["-m", "rnnbench"]:
        rest = words[3:]
    elif words and words[0].endswith("/rnnbench"):
        rest = words[1:]
    else:
        return problems + ["not `python -m rnnbench` or an rnnbench script"]
    if rest[:1] != ["run"]:
        return problems + [f"not `rnnbench run`: {rest[:1]}"]
    parser = _Parser(prog="rnnbench run")
    command.configure(parser)
    try:
        args = parser.parse_args(rest[1:])
    except SystemExit:
        return problems + [f"`rnnbench run` rejects {rest[1:]}"]
    if not (root / "jobs" / Path(args.job).name).is_file():
        problems.append(f"no job file {args.job} in jobs/")
    if not args.address:
        problems.append("no --address (the driver would start its own Ray in the pod)")
    return problems


def test_the_kuberay_manifest_runs_rnnbench_run_by_an_absolute_path():
    manifest = yaml.safe_load(MANIFEST.read_text())
    assert entrypoint_problems(manifest) == []
    env = yaml.safe_load(manifest["spec"]["runtimeEnvYAML"])["env_vars"]
    assert env["RAY_AUTH_MODE"] == "token"


@pytest.mark.parametrize(
    "entrypoint, problem",
    [
        ("rnnbench run /app/jobs/quick.yaml --address auto", "absolute"),
        ("/opt/venv/bin/python -m rnnbench run /app/jobs/quick.yaml --bogus", "rejects"),
        ("/opt/venv/bin/python -m rnnbench bench --model elman", "not `rnnbench run`"),
        ("/opt/venv/bin/python -m rnnbench run /app/jobs/nope.yaml --address auto", "no job"),
        ("/opt/venv/bin/python -m rnnbench run /app/jobs/quick.yaml", "no --address"),
    ],
)
def test_the_manifest_check_finds_a_bad_entrypoint(entrypoint, problem):
    manifest = yaml.safe_load(MANIFEST.read_text())
    manifest["spec"]["entrypoint"] = entrypoint
    assert any(problem in p for p in entrypoint_problems(manifest)), entrypoint_problems(manifest)


def recipe_blocks() -> list[str]:
    """The bash blocks of docs/cluster.md, in order."""
    return re.findall(r"```bash\n(.*?)```", RECIPE.read_text(), flags=re.S)


def test_the_recipe_has_its_three_steps():
    start, drive, submit = recipe_blocks()
    assert "RAY_AUTH_MODE=token" in start and "ray start --head" in start
    assert "ray start --address=$HEAD" in start
    assert "rnnbench run" in drive and "--address $HEAD" in drive
    assert "rnnbench bench" in drive and "--address $HEAD" in drive.split("rnnbench bench")[1]
    assert submit.startswith("ray job submit") and '"$PWD/.venv/bin/python" -m rnnbench' in submit


def node_cpus_of(start: str) -> list[int]:
    """The CPUs each `ray start` line of the recipe's first block offers (Ray counts this
    machine's where the line gives no --num-cpus)."""
    found = []
    for line in start.splitlines():
        if line.startswith("ray start"):
            m = re.search(r"--num-cpus[= ](\d+)", line)
            found.append(int(m.group(1)) if m else node_cpus())
    return found


def unplaceable(job: Path, nodes: list[int]) -> list[str]:
    """The cells of ``job`` that no node offering ``nodes`` CPUs could ever run (as the
    driver's own check, :func:`rnnbench.sweep.driver.resources`, asks)."""
    from rnnbench.job import jobfile
    from rnnbench.sweep import driver

    cells = list(jobfile.load(job).cells)
    shared = driver.alone_somewhere(cells)
    return [
        f"{c.cell_id} ({c.strategy}, threads={c.threads})"
        for c in cells
        if driver.resources(c, False, shared)["num_cpus"] > max(nodes)
    ]


def test_every_cell_of_the_recipes_job_fits_a_node_it_starts():
    """The recipe runs jobs/quick.yaml on the nodes it starts: every cell must fit one
    (its chain on all cores once failed there as infeasible, exit 1).  The opposite: two
    one-CPU nodes cannot hold a cell on all cores of a machine with more than one."""
    start, drive, _ = recipe_blocks()
    job = ROOT / "jobs" / "quick.yaml"
    assert "jobs/quick.yaml" in drive
    assert unplaceable(job, node_cpus_of(start)) == []
    if node_cpus() > 1:
        assert unplaceable(job, [1, 1]) != []


TINY_JOB = """\
name: recipe
fixed: {hidden: 8, repeats: 2, task: running_parity, tau: 8, model: elman, strategy: bptt}
grid:
  seed: [0, 1]
"""


@pytest.mark.slow
def test_the_recipe_runs_as_written(tmp_path):
    """Each block of docs/cluster.md in bash, from the repository root, with a fresh
    HOME: only ports, a temporary folder for the nodes, a two-cell job and the output
    folder are put in."""
    import pandas as pd

    temp = tempfile.mkdtemp(prefix="rb")
    gcs, dash = free_ports(2)
    job = tmp_path / "job.yaml"
    job.write_text(TINY_JOB)

    def local(block: str) -> str:
        block = block.replace("6379", str(gcs)).replace("8265", str(dash))
        block = block.replace("jobs/quick.yaml", str(job))
        block = block.replace("$PWD/results/", f"{tmp_path}/results/")
        lines = []
        for line in block.splitlines():
            if line.startswith("ray start --head"):
                flags = [f for f in node_ports(head=True) if "dashboard-port" not in f]
                line += f" --temp-dir={temp} --dashboard-port={dash} " + " ".join(flags)
            elif line.startswith("ray start --address"):
                line += f" --temp-dir={temp} " + " ".join(node_ports(head=False))
            lines.append(line)
        return "\n".join(lines)

    home = tmp_path / "home"
    home.mkdir()
    env = subprocess_env(HOME=str(home))
    # the session's embedded Ray set its loopback-only switch in this process's
    # environment; `ray start` of a multi-node cluster refuses it
    env.pop("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", None)
    env.pop("RAY_AUTH_MODE", None)
    start, drive, submit = (local(b) for b in recipe_blocks())
    exports = "\n".join(x for x in start.splitlines() if x.startswith("export "))
    said = []
    try:
        for script in (start, exports + "\n" + drive, exports + "\n" + submit):
            done = subprocess.run(
                ["bash", "-euo", "pipefail", "-c", script],
                cwd=ROOT,
                env=env,
                capture_output=True,
                text=True,
                timeout=600,
            )
            said.append(done.stdout + done.stderr)
            assert done.returncode == 0, script + "\n" + said[-1][-4000:]
    finally:
        for pid in temp_processes(temp):
            kill_tree(pid)
        shutil.rmtree(temp, ignore_errors=True)
    token = home / ".ray" / "auth_token"
    assert token.stat().st_mode & 0o077 == 0
    for name in ("cluster-quick", "cluster-job"):
        df = pd.read_parquet(tmp_path / "results" / name / "results.parquet")
        assert len(df) == 2 and set(df["status"]) == {"ok"}, name
    assert "step_ms_median" in said[1]  # bench's row
    assert "succeeded" in said[2].lower()
