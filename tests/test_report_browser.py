"""What a reader sees in a browser (issue 24.6): headless Chromium lays index.html out at a
laptop's 1366 × 768 and the tests check the first screen holds the tally, every plot loads
and is drawn at least MIN_PLOT_PX wide, and nothing scrolls sideways. Each check has its
opposite: a page built to break it is caught."""

from __future__ import annotations

import pandas as pd
import pytest
import report_synthetic as rs
from helpers import CHROMIUM, LAPTOP, NO_CHROMIUM, screenshot, what_a_reader_sees

from rnnbench.report import build_report

MIN_PLOT_PX = 400
TALL = '<div style="height:2000px"></div>'
WIDE = '<div style="width:3000px">x</div>'
NARROW = 'style="width:200px"'

pytestmark = [
    pytest.mark.xdist_group("browser"),
    pytest.mark.chromium,
    pytest.mark.skipif(CHROMIUM is None, reason=NO_CHROMIUM),
]


@pytest.fixture(scope="session")  # once per test process: xdist may interleave modules
def index(tmp_path_factory):
    out = tmp_path_factory.mktemp("browser") / "report"
    frame = pd.DataFrame(rs.busy_rows() + rs.claims_rows())
    build_report(frame, out)
    return out / "index.html"


def problems(seen: dict) -> list[str]:
    """What a reader would miss: tally below the first screen, a plot not loaded, hidden or
    narrower than MIN_PLOT_PX, a page wider than the window."""
    out = []
    tally = seen["tally"]
    if tally is None or tally["bottom"] > seen["vh"] or tally["top"] < 0:
        out.append(f"tally not in the first screen: {tally}")
    if seen["scroll_width"] > seen["vw"]:
        out.append(f"sideways scroll: page {seen['scroll_width']} px in {seen['vw']} px")
    for im in seen["images"]:
        if not (im["loaded"] and im["visible"]) or im["width"] < MIN_PLOT_PX:
            out.append(f"plot {im['src']}: loaded {im['loaded']}, width {im['width']:.0f}")
        if im["right"] > seen["vw"] + 1:
            out.append(f"plot {im['src']} runs past the window ({im['right']:.0f} px)")
    return out


def test_the_first_screen_holds_the_tally_and_every_plot_is_readable(index):
    seen = what_a_reader_sees(index)
    assert seen["vw"] == LAPTOP[0]
    assert len(seen["images"]) >= 7
    assert problems(seen) == []


def test_a_screenshot_of_the_first_screen_is_drawn(index, tmp_path):
    png = screenshot(index, tmp_path / "first.png")
    assert png.stat().st_size > 20_000  # a drawn page, not a blank one


def test_the_checks_see_a_page_a_reader_could_not_read(index, tmp_path):
    """The opposite cases: the tally pushed below the fold, a table too wide to fit, a
    plot shrunk to 200 px and one that does not load."""
    text = index.read_text()
    bad = tmp_path / "bad.html"
    bad.write_text(
        text.replace('<section id="claims">', f'{TALL}<section id="claims">')
        .replace("</body>", f"{WIDE}</body>")
        .replace('<img src="plots/time_vs_tau.png"', f'<img {NARROW} src="plots/time_vs_tau.png"')
        .replace('src="plots/capacity.png"', 'src="plots/missing.png"')
    )
    (tmp_path / "plots").symlink_to(index.parent / "plots")
    found = "\n".join(problems(what_a_reader_sees(bad)))
    assert "tally not in the first screen" in found
    assert "sideways scroll" in found
    assert "time_vs_tau.png: loaded True, width 20" in found  # 200 px and its border
    assert "missing.png: loaded False" in found
