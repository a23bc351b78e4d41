"""What a reader pastes from README.md and the docs/ pages works as pasted: every
``rnnbench ...`` line of their fenced shell blocks parses with the command's own argparse
(nothing is run), every ``make`` target named there is one of the Makefile's, and every
relative link points at a file that exists."""

from __future__ import annotations

import importlib
import re
import shlex
from pathlib import Path

import pytest

from rnnbench.cli import COMMANDS, _Parser

ROOT = Path(__file__).resolve().parent.parent
# The pages checked: README and every Markdown page under docs/.
PAGES = ("README.md", *sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "docs").glob("*.md")))
# Pages that show commands (a page of these without one is a mistake of the test's reading).
COMMAND_PAGES = ("README.md", "docs/usage.md", "docs/models.md", "docs/compare.md")
# What README must link: the user docs, the generated claims, the design, and the pages the
# other helpers wrote (cluster, storage, scaling, queries, report, the teaching notebook).
README_LINKS = frozenset(
    {
        "docs/usage.md",
        "docs/models.md",
        "docs/compare.md",
        "docs/claims.md",
        "docs/design.md",
        "docs/cluster.md",
        "docs/storage.md",
        "docs/scaling.md",
        "docs/queries.md",
        "docs/report.md",
        "docs/chapter10.py",
    }
)
# Link targets written on a branch that is not merged here yet: a missing one is a skip
# that names it (shown by `-ra`), never a silent pass; once it exists it is checked like
# any other.  docs/report-screenshot.png: the reporta branch.
IN_FLIGHT = frozenset({"docs/report-screenshot.png"})
SHELL = ("bash", "sh", "shell", "console")
OPERATORS = (">", ">>", "2>", "|", "&&", "||", ";")
FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```", re.S | re.M)
LINK = re.compile(r"\]\(([^)\s]+)\)")


def shell_blocks(text: str) -> list[str]:
    """The bodies of the fenced blocks marked as shell."""
    return [body for lang, body in FENCE.findall(text) if lang in SHELL]


def command_lines(block: str) -> list[list[str]]:
    """Each line of a shell block as its words (continuations joined, comments and
    anything after a redirection or a pipe dropped)."""
    out = []
    for line in block.replace("\\\n", " ").splitlines():
        words = shlex.split(line, comments=True)
        for i, w in enumerate(words):
            if w in OPERATORS:
                words = words[:i]
                break
        if words:
            out.append(words)
    return out


def rnnbench_argv(words: list[str]) -> list[str] | None:
    """The arguments after ``rnnbench`` (also ``.venv/bin/rnnbench``, ``python -m
    rnnbench``), or None for another program."""
    if words and Path(words[0]).name == "rnnbench":
        return words[1:]
    python = words and Path(words[0]).name.startswith("python")
    if python and words[1:3] == ["-m", "rnnbench"]:
        return words[3:]
    return None


def commands(text: str) -> list[list[str]]:
    return [
        argv
        for block in shell_blocks(text)
        for words in command_lines(block)
        if (argv := rnnbench_argv(words)) is not None
    ]


def parse(argv: list[str]):
    """``argv`` parsed exactly as ``rnnbench`` parses it; SystemExit on an error."""
    if not argv or argv[0] not in COMMANDS:
        raise SystemExit(f"unknown command {argv[:1]}; allowed: {', '.join(COMMANDS)}")
    module = importlib.import_module(COMMANDS[argv[0]][0])
    parser = _Parser(prog=f"rnnbench {argv[0]}", description=COMMANDS[argv[0]][1])
    module.configure(parser)
    return parser.parse_args(argv[1:])


def make_targets() -> set[str]:
    text = (ROOT / "Makefile").read_text()
    return set(re.findall(r"^([A-Za-z][\w-]*):", text, re.M))


def links(page: Path, root: Path = ROOT) -> list[str]:
    """Relative link targets of a Markdown page, as paths from ``root``."""
    out = []
    for target in LINK.findall(page.read_text()):
        if re.match(r"^[a-z]+:", target) or target.startswith("#"):
            continue
        path = (page.parent / target.split("#")[0]).resolve()
        out.append(path.relative_to(root.resolve()).as_posix())
    return out


def broken_links(page: Path, root: Path = ROOT) -> list[str]:
    """The page's relative link targets that do not exist."""
    return [t for t in links(page, root) if not (root / t).exists()]


# --------------------------------------------------------------------------- the pages


@pytest.mark.parametrize("page", PAGES)
def test_every_rnnbench_command_on_the_page_parses(page, capsys):
    found = commands((ROOT / page).read_text())
    assert found or page not in COMMAND_PAGES, f"{page}: no rnnbench command in its shell blocks"
    bad = []
    for argv in found:
        try:
            parse(argv)
        except SystemExit as exc:
            bad.append(f"rnnbench {shlex.join(argv)}: {capsys.readouterr().err.strip() or exc}")
    assert not bad, f"{page}: commands that do not parse:\n" + "\n".join(bad)


def test_readme_shows_each_everyday_command():
    used = {argv[0] for argv in commands((ROOT / "README.md").read_text())}
    assert {"bench", "run", "report", "compare"} <= used, used


@pytest.mark.parametrize("page", PAGES)
def test_every_make_target_on_the_page_is_the_makefiles(page):
    named = {
        words[1]
        for block in shell_blocks((ROOT / page).read_text())
        for words in command_lines(block)
        if words[0] == "make" and len(words) > 1
    }
    assert named <= make_targets(), f"{page}: not Makefile targets: {named - make_targets()}"


@pytest.mark.parametrize("page", ("README.md", "docs/usage.md"))
def test_the_job_file_on_the_page_is_a_valid_job(page, tmp_path):
    from rnnbench.job import jobfile

    blocks = [body for lang, body in FENCE.findall((ROOT / page).read_text()) if lang == "yaml"]
    assert blocks, f"{page}: no yaml block"
    for i, body in enumerate(blocks):
        path = tmp_path / f"job{i}.yaml"
        path.write_text(body)
        try:
            job = jobfile.load(path)
        except jobfile.JobError as exc:
            pytest.fail(f"{page}, yaml block {i + 1}: " + "; ".join(exc.problems))
        assert job.cells


def test_readme_links_the_docs():
    linked = set(links(ROOT / "README.md"))
    assert README_LINKS <= linked, f"README.md does not link: {sorted(README_LINKS - linked)}"


@pytest.mark.parametrize("page", PAGES)
def test_every_relative_link_exists(page):
    missing = broken_links(ROOT / page)
    assert not set(missing) - IN_FLIGHT, f"{page}: broken links: {missing}"
    if missing:
        pytest.skip(f"{page}: not merged here yet: {', '.join(missing)}")


# --------------------------------------------------------------------------- the checks can fail


def test_a_command_that_does_not_parse_is_caught(capsys):
    text = "```bash\nrnnbench bench --model elman --tau 64   # no --strategy\n```\n"
    [argv] = commands(text)
    with pytest.raises(SystemExit) as exc:
        parse(argv)
    assert exc.value.code == 2 and "--strategy" in capsys.readouterr().err
    for wrong in (
        ["benchmark", "--tau", "1"],
        ["run"],
        ["run", "jobs/quick.yaml", "--exlusive"],
        ["compare", "a", "b", "--measure", "speed"],
    ):
        with pytest.raises(SystemExit):
            parse(wrong)


def test_commands_are_read_from_shell_blocks_only_and_joined():
    text = (
        "rnnbench bench outside a block\n"
        "```python\nrnnbench = 1\n```\n"
        "```bash\n.venv/bin/rnnbench run jobs/quick.yaml \\\n    --dry-run   # cells\n"
        "make quick\n"
        "rnnbench compare a b > out.txt\n"
        ".venv/bin/python -m rnnbench report results/quick\n```\n"
    )
    assert commands(text) == [
        ["run", "jobs/quick.yaml", "--dry-run"],
        ["compare", "a", "b"],
        ["report", "results/quick"],
    ]
    assert "quick" in make_targets() and "no-such-target" not in make_targets()


def test_a_job_file_with_a_problem_is_caught(tmp_path):
    from rnnbench.job import jobfile

    path = tmp_path / "job.yaml"
    path.write_text(
        "name: x\nseeds: [0]\nparts:\n  - name: a\n    fixed: {model: elman, "
        "strategy: bptt}\n    grid:\n      seed: [0]\n      tau: [4]\n"
    )
    with pytest.raises(jobfile.JobError, match="seed"):
        jobfile.load(path)


def test_a_missing_link_target_is_found(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "here.md").write_text("[back](../README.md#top) [gone](gone.md)\n")
    readme = tmp_path / "README.md"
    readme.write_text(
        "[here](docs/here.md) [there](docs/there.md#part) [web](https://example.org) "
        "[anchor](#findings)\n"
    )
    assert links(readme, tmp_path) == ["docs/here.md", "docs/there.md"]
    assert broken_links(readme, tmp_path) == ["docs/there.md"]
    assert broken_links(tmp_path / "docs" / "here.md", tmp_path) == ["docs/gone.md"]
    (tmp_path / "docs" / "there.md").write_text("")
    assert broken_links(readme, tmp_path) == []
