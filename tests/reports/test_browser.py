"""The reports opened in a real browser (headless Chromium over the DevTools protocol).

The tiny sweep (two real cells, rebuilt from MLflow) is rendered with XSS payloads in a
prompt, a model answer, a config value, a check and the sweep's name; the browser must
show them as text, run none of them, log no console error and fetch nothing from the
network. A negative control proves the harness does catch each of those.

`make test` installs Debian's chromium when run as root (CI); elsewhere these tests skip
with a message when no chromium is on the machine.
"""
from __future__ import annotations

import copy
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest

from tests.reports.browser import Browser, find_chromium, png_stats

CHROMIUM = find_chromium()
pytestmark = pytest.mark.skipif(
    CHROMIUM is None,
    reason="chromium is not installed (`make test` installs Debian's chromium when run as root; "
           "or: apt-get install chromium)",
)

SCRIPT = "<script>window.__xss=1</script>"
IMG = '<img src=x onerror="window.__xss=1">'
ALERT = "<img src=y onerror=alert(1)>"
PAYLOAD = f"{SCRIPT} {IMG} {ALERT}"


@pytest.fixture(scope="module")
def browser():
    with Browser(CHROMIUM, width=1400, height=1000) as b:
        yield b


@pytest.fixture(scope="module")
def rendered(recorded_sweep, tmp_path_factory):
    """The tiny sweep's report and cell pages, with payloads in every kind of untrusted text."""
    from harness.tracking import Tracker
    from reports.experiment import render_experiment_report
    from reports.from_mlflow import load_sweep_result
    from reports.sweep import render_sweep_report

    tracker = Tracker(recorded_sweep.output_dir, "harness-admin", create=False)
    sweep = copy.deepcopy(load_sweep_result(tracker, recorded_sweep.parent))
    sweep["sweep"] = f"tiny_sweep {PAYLOAD}"
    evil = sweep["cells"][0]
    evil["samples"][0]["prompt"] = f"Summarize this. {PAYLOAD}"
    evil["samples"][1]["policy"] = f"Sure! {PAYLOAD}"
    evil["config"]["variant"] = f"dpo {PAYLOAD}"
    evil["experiment"] = f"tiny {PAYLOAD}"
    evil["checks"].append({"name": f"injected {SCRIPT}", "metric": "x", "passed": False, "required": True,
                           "reason": f"reason {IMG}", "value": 1.0, "bound": 0.0})
    evil["verdict"] = "BLOCK"

    root = tmp_path_factory.mktemp("browser-reports")
    pages = {c["cell"]: str(render_experiment_report(c, root / "cells" / c["cell"] / "report.html"))
             for c in sweep["cells"]}
    report = render_sweep_report(sweep, root / "report.html", pages)
    return {"report": report, "pages": pages, "evil_page": Path(pages[evil["cell"]]), "sweep": sweep}


def _clean(page) -> None:
    assert page.console_errors == [], page.console_errors
    assert page.network_requests == [], page.network_requests
    assert page.dialogs == [], page.dialogs


def _assert_not_blank(png: bytes) -> None:
    stats = png_stats(png)
    assert stats["width"] >= 1000 and stats["height"] >= 800, stats
    assert stats["distinct_colors"] > 50, stats  # text, pills, plots: many colours
    assert stats["dominant_share"] < 0.95, stats  # not one flat background


def test_sweep_report_in_the_browser(browser, rendered) -> None:
    page = browser.open(rendered["report"])
    _clean(page)
    assert browser.evaluate("typeof window.__xss") == "undefined"
    # one row per cell, each linking to its page, which exists on disk
    assert browser.evaluate("document.querySelectorAll('#verdict-table tbody tr').length") == 2
    hrefs = browser.evaluate("Array.from(document.querySelectorAll('#verdict-table a.cell-link')).map(a => a.href)")
    assert len(hrefs) == 2
    assert all(Path(unquote(urlparse(h).path)).is_file() for h in hrefs), hrefs
    # every figure drawn by plotly (an svg inside each plot div); lengths and training always have data
    plots = browser.evaluate("Array.from(document.querySelectorAll('.plot .plotly-graph-div'))"
                             ".map(d => [d.id, d.querySelectorAll('.main-svg').length])")
    assert {"plot-sweep-lengths", "plot-sweep-training"} <= {p for p, _ in plots}
    assert all(n >= 1 for _, n in plots), plots
    if any("winrate/lc_win_rate_pct" in c["metrics"] for c in rendered["sweep"]["cells"]):
        assert "plot-frontier" in {p for p, _ in plots}
    # the payload is visible as text
    text = browser.evaluate("document.body.innerText")
    assert SCRIPT in text and IMG in text
    assert browser.evaluate("document.querySelectorAll('main img').length") == 0
    _assert_not_blank(browser.screenshot())


def test_sorting_by_clicking_a_header(browser, rendered) -> None:
    browser.open(rendered["report"])
    order = "Array.from(document.querySelectorAll('#verdict-table tbody tr')).map(r => r.dataset.cell)"
    keys = [c["cell"] for c in rendered["sweep"]["cells"]]
    lc = {c["cell"]: c["metrics"].get("winrate/lc_win_rate_pct", float("-inf")) for c in rendered["sweep"]["cells"]}
    col = browser.evaluate("Array.from(document.querySelectorAll('#verdict-table thead th'))"
                           ".findIndex(th => th.textContent.startsWith('LC win rate'))")
    assert col >= 0
    browser.evaluate(f"document.querySelectorAll('#verdict-table thead th')[{col}].click()")
    first = browser.evaluate(order)
    assert sorted(first) == sorted(keys)
    assert [lc[k] for k in first] == sorted((lc[k] for k in keys), reverse=True)  # numbers: descending first
    browser.evaluate(f"document.querySelectorAll('#verdict-table thead th')[{col}].click()")
    second = browser.evaluate(order)
    assert [lc[k] for k in second] == sorted(lc[k] for k in keys)
    assert browser.evaluate(f"document.querySelectorAll('#verdict-table thead th')[{col}]"
                            ".getAttribute('aria-sort')") == "ascending"
    browser.evaluate("document.querySelectorAll('#verdict-table thead th')[0].click()")
    assert browser.evaluate(order) == sorted(keys)


def test_cell_page_with_payloads_runs_nothing(browser, rendered) -> None:
    page = browser.open(rendered["evil_page"])
    _clean(page)
    assert browser.evaluate("typeof window.__xss") == "undefined"
    text = browser.evaluate("document.body.innerText")
    assert f"Summarize this. {SCRIPT}" in text and f"Sure! {SCRIPT}" in text and IMG in text
    assert browser.evaluate("document.querySelectorAll('main img').length") == 0
    # the failed check is at the top of the gate table
    assert browser.evaluate("document.querySelector('#checks-table tbody tr').dataset.passed") == "false"
    _assert_not_blank(browser.screenshot())


def test_every_cell_page_is_clean(browser, rendered) -> None:
    for path in rendered["pages"].values():
        page = browser.open(Path(path))
        _clean(page)
        assert browser.evaluate("document.querySelectorAll('.plot .plotly-graph-div .main-svg').length") >= 2


def test_the_harness_catches_what_it_checks(browser, tmp_path) -> None:
    """Negative control: a page that does run a payload, logs an error and fetches from the network."""
    bad = tmp_path / "bad.html"
    bad.write_text(f"<!DOCTYPE html><html><body><p>hi</p>{SCRIPT}{IMG}"
                   "<script>console.error('broken')</script><img src='http://192.0.2.1/x.png'></body></html>")
    page = browser.open(bad, settle=0.3)
    assert browser.evaluate("window.__xss") == 1
    assert any("broken" in e for e in page.console_errors)
    assert page.network_requests == ["http://192.0.2.1/x.png"]
    blank = tmp_path / "blank.html"
    blank.write_text("<!DOCTYPE html><html><body></body></html>")
    browser.open(blank)
    with pytest.raises(AssertionError):
        _assert_not_blank(browser.screenshot())
