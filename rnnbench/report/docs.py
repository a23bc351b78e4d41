"""Text the documentation takes from the code and from committed reports, never typed by
hand: the claims' rules (``docs/claims.md``, rendered from :mod:`.claims.catalogue`) and
the findings of a committed report (a marked block of README.md, rendered from its
``tables/claims.csv``).  A block sits between ``<!-- rnnbench:NAME -->`` and
``<!-- /rnnbench:NAME -->``; :func:`update` rewrites it, the tests check that it matches."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from rnnbench.facts import VERDICTS
from rnnbench.report.claims import RULES, Rules


def claims_doc(rules: Rules | None = None) -> str:
    """docs/claims.md: every claim, its source, the rule that decides it and the evidence
    it needs, with the thresholds in force."""
    r = rules or Rules()
    lines = [
        "# The claims and the rules that decide them",
        "",
        "Generated from `rnnbench/report/claims/catalogue.py` (`make docs`; a test checks "
        "that this page matches the code). Every claims page prints the same rule and gate "
        "beside its verdict. A verdict is *holds*, *does not hold*, *not measured* (below the "
        "gate, or an interval across the threshold: the evidence says which, and a timing "
        "rule says how often it would decide at the run's own noise) or *by construction*.",
        "",
    ]
    for rule in RULES:
        lines += [
            f"## `{rule.key}` — {rule.source}",
            "",
            f"> {rule.text}",
            "",
            f"**Rule.** {rule.how(r)}.",
            "",
            f"**Evidence needed.** {rule.gate(r)}.",
            "",
        ]
    lines += ["## Thresholds", "", "| name | value |", "|---|---|"]
    lines += [f"| `{k}` | {v:g} |" for k, v in vars(r).items()]
    return "\n".join(lines) + "\n"


def findings_block(report: Path, run: str | None = None) -> str:
    """README's findings of a committed report: the tally, then each claim's verdict and
    plain sentence (from ``report/tables/claims.csv``), linked to the claims page."""
    claims = pd.read_csv(report / "tables" / "claims.csv")
    verdict = "verdict" if "verdict" in claims else f"verdict: {run}"
    finding = "finding" if "finding" in claims else f"finding: {run}"
    counts = claims[verdict].value_counts()
    tally = ", ".join(f"{counts.get(v, 0)} {v}" for v in VERDICTS if counts.get(v, 0))
    lines = [
        f"From [`{report.as_posix()}/`]({report.as_posix()}/claims.md): {tally}.",
        "",
        "| claim | verdict | what was found |",
        "|---|---|---|",
    ]
    for _, c in claims.iterrows():
        text = str(c.get(finding, "")).replace("|", "\\|")
        lines.append(f"| `{c['key']}` | {c[verdict]} | {text} |")
    return "\n".join(lines) + "\n"


def marked(name: str) -> re.Pattern[str]:
    return re.compile(
        rf"(<!-- rnnbench:{re.escape(name)} -->\n)(.*?)(<!-- /rnnbench:"
        rf"{re.escape(name)} -->)",
        re.S,
    )


def block(text: str, name: str) -> str | None:
    """The content of block ``name`` in ``text`` (None when there is none)."""
    m = marked(name).search(text)
    return m.group(2) if m else None


def update(path: Path, name: str, content: str) -> bool:
    """Rewrite block ``name`` of the file at ``path`` with ``content``; whether it had one."""
    text = path.read_text()
    pattern = marked(name)
    if not pattern.search(text):
        return False
    path.write_text(pattern.sub(lambda m: m.group(1) + content + m.group(3), text))
    return True


COMMITTED = Path("reports/chapter10-cpu")  # the report README's findings come from


def main() -> int:
    """``python -m rnnbench.report.docs`` (``make docs``): docs/claims.md from the code,
    README's findings block from the committed report."""
    Path("docs/claims.md").write_text(claims_doc())
    print("docs/claims.md written")
    if (COMMITTED / "tables" / "claims.csv").exists() and update(
        Path("README.md"), "findings", findings_block(COMMITTED)
    ):
        print(f"README.md: findings from {COMMITTED}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
