"""Documentation generated from the code and from committed reports matches them: the
claims' rules (docs/claims.md) and README's findings block (reports/chapter10-cpu)."""

from __future__ import annotations

from pathlib import Path

from rnnbench.report import docs

ROOT = Path(__file__).resolve().parent.parent


def test_docs_claims_md_is_the_catalogue_rendered():
    assert (ROOT / "docs" / "claims.md").read_text() == docs.claims_doc(), (
        "docs/claims.md is out of date: run `make docs`"
    )


def test_readme_findings_are_the_committed_reports():
    readme = (ROOT / "README.md").read_text()
    found = docs.block(readme, "findings")
    assert found is not None, "README.md has no rnnbench:findings block"
    assert found == docs.findings_block(docs.COMMITTED), (
        "README's findings differ from reports/chapter10-cpu: run `make docs`"
    )


def test_a_block_is_rewritten_in_place_and_only_there(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("before\n<!-- rnnbench:x -->\nold\n<!-- /rnnbench:x -->\nafter\n")
    assert docs.update(page, "x", "new\n")
    assert page.read_text() == "before\n<!-- rnnbench:x -->\nnew\n<!-- /rnnbench:x -->\nafter\n"
    assert docs.block(page.read_text(), "x") == "new\n"
    assert not docs.update(page, "y", "z\n") and docs.block(page.read_text(), "y") is None
