"""The sweep page: verdict table, links, front, plots; renders anything, escapes everything."""
from __future__ import annotations

import html
import json
import re
from pathlib import Path

import pytest

from reports import sweep as sw
from reports.sweep import pareto_front, plot_label, render_sweep_report

SCRIPT = "<script>window.__xss=1</script>"
IMG = '<img src=x onerror="window.__xss=1">'
EVIL = f"{SCRIPT} {IMG}"
_PLOTLY_LIB = re.compile(r'<script type="text/javascript" id="plotly-js">.*?</script>', re.S)


def cell(key: str, variant: str, beta: float, lc: float, kl: float, verdict: str = "PROMOTE", *,
         ratio: float = 1.0, evil: str = "", domain: dict | None = None, failed: tuple = ()) -> dict:
    metrics = {
        "winrate/lc_win_rate_pct": lc, "winrate/lc_win_rate_pct_ci_low": lc - 5, "winrate/lc_win_rate_pct_ci_high": lc + 5,
        "winrate/win_rate_pct": lc + 3, "winrate/raw_minus_lc_pct": 3.0,
        "kl/seq_kl_k3": kl, "kl/seq_kl_k3_stderr": kl / 10, "length/ratio_tokens": ratio,
        "chosen_logp/chosen_delta": -1.5, "chosen_logp/chosen_delta_stderr": 0.3,
    }
    for task, (delta, p) in (domain or {}).items():
        metrics[f"{task}/acc_delta"] = delta
        metrics[f"{task}/acc_delta_pvalue"] = p
    checks = [{"name": "kl_budget", "metric": "kl/seq_kl_k3", "value": kl, "bound": 20.0, "passed": True,
               "required": True, "reason": "ok"}]
    checks += [{"name": f"{name}{evil}", "metric": "x", "value": 1.0, "bound": 0.0, "passed": False,
                "required": True, "reason": f"too big {evil}"} for name in failed]
    history = [{"step": s, "loss": 0.7 - 0.02 * s, "rewards/margins": 0.1 * s, "logps/chosen": -40 - s,
                "logps/rejected": -45 - 2 * s} for s in range(1, 9)]
    samples = [{"prompt": f"p{i} {evil}", "reference": "r", "policy": "p", "verdict": 2.0,
                "reference_tokens": 20 + i, "policy_tokens": int((20 + i) * ratio)} for i in range(8)]
    return {"experiment": "tiny", "run_id": f"run-{key}", "cell": key, "verdict": verdict,
            "config": {"variant": f"{variant}{evil}", "beta": beta, "seed": 0}, "metrics": metrics,
            "metric_specs": {}, "checks": checks, "training": {"history": history}, "samples": samples,
            "data": {"pairs": 10}, "errors": {}}


def sweep(evil: str = "") -> dict:
    dom = {"domain_arith_mc": (0.05, 0.01), "domain_facts_mc": (-0.02, 0.6)}
    return {
        "sweep": f"grid {evil}", "run_id": "parent123",
        "cells": [
            cell("dpo-b0.1-s0-aaa", "dpo", 0.1, 60.0, 2.0, domain=dom, evil=evil),
            cell("dpo-b0.5-s0-bbb", "dpo", 0.5, 55.0, 0.5, domain=dom, evil=evil),
            cell("ipo-b0.3-s0-ccc", "ipo", 0.3, 52.0, 3.0, "BLOCK", ratio=1.7, failed=("length_ratio_cap",),
                 domain=dom, evil=evil),
        ],
        "champion": {"cell": "dpo-b0.1-s0-aaa", "run_id": "run-dpo-b0.1-s0-aaa"},
        "pareto": None,
    }


def _body(html: str) -> str:
    stripped, n = _PLOTLY_LIB.subn("", html)
    assert n <= 1
    return stripped


def test_table_plots_and_links(tmp_path: Path) -> None:
    pages = {}
    for c in sweep()["cells"]:
        page = tmp_path / "cells" / c["cell"] / "report.html"
        page.parent.mkdir(parents=True)
        page.write_text("cell page")
        pages[c["cell"]] = str(page)
    out = render_sweep_report(sweep(), tmp_path / "sweeps" / "grid" / "report.html", pages)
    html = out.read_text(encoding="utf-8")
    assert html.count('id="plotly-js"') == 1
    body = _body(html)
    for plot in ("plot-frontier", "plot-sweep-lengths", "plot-sweep-training", "plot-domain"):
        assert f'id="{plot}"' in body
    rows = re.findall(r'<tr class="cell-row([^"]*)" data-cell="([^"]+)"', body)
    assert [k for _, k in rows] == ["dpo-b0.1-s0-aaa", "dpo-b0.5-s0-bbb", "ipo-b0.3-s0-ccc"]
    assert "champion" in rows[0][0] and "blocked" in rows[2][0]
    # relative links from the sweep report's folder to each cell page
    assert 'href="../../cells/dpo-b0.1-s0-aaa/report.html"' in body
    # numbers with their intervals and significance; the failed check named in its row
    assert '<span class="good">60</span> <span class="ci">[55, 65]</span>' in body
    assert "+0.05 <span class=\"ci\">p=0.01</span><strong>*</strong>" in body
    assert "length_ratio_cap" in body and "×1.70" in body
    # the headline answers "which cell, and is the win real"
    assert "Champion:" in body and "the win survives length control" in body
    # sortable: numeric keys for every number column
    assert 'class="sortable" id="verdict-table"' in body and 'data-sort="60.0"' in body


def test_pareto_front() -> None:
    cells = sweep()["cells"]
    assert pareto_front(cells) == ["dpo-b0.1-s0-aaa", "dpo-b0.5-s0-bbb"]  # ccc: less LC, more KL than aaa
    cells.append({"cell": "nan", "metrics": {"winrate/lc_win_rate_pct": float("nan"), "kl/seq_kl_k3": 0.1}})
    # below 50 at tiny KL: dominated by the reference itself (KL 0, 50)
    cells.append({"cell": "worse", "metrics": {"winrate/lc_win_rate_pct": 49.0, "kl/seq_kl_k3": 0.01}})
    assert pareto_front(cells) == ["dpo-b0.1-s0-aaa", "dpo-b0.5-s0-bbb"]


def test_default_links_follow_the_standard_layout(tmp_path: Path) -> None:
    page = tmp_path / "cells" / "dpo-b0.5-s0-bbb" / "report.html"
    page.parent.mkdir(parents=True)
    page.write_text("x")
    html = render_sweep_report(sweep(), tmp_path / "report.html").read_text(encoding="utf-8")
    assert 'href="cells/dpo-b0.5-s0-bbb/report.html"' in html
    assert html.count('class="mono cell-link"') == 1  # the others have no page: no dead link


def test_no_champion_names_the_failures(tmp_path: Path) -> None:
    s = sweep()
    s["champion"] = None
    for c in s["cells"]:
        c["verdict"] = "BLOCK"
        c["checks"].append({"name": "lc_beats_reference", "passed": False, "required": True, "reason": "no"})
    body = _body(render_sweep_report(s, tmp_path / "r.html").read_text(encoding="utf-8"))
    assert "No champion" in body and "lc_beats_reference</span> — 3 cells" in body


def test_untrusted_text_is_escaped(tmp_path: Path) -> None:
    s = sweep(EVIL)
    s["cells"][0]["cell"] = f"cell {EVIL}"
    s["champion"] = {"cell": f"cell {EVIL}", "run_id": None}
    body = _body(render_sweep_report(s, tmp_path / "r.html").read_text(encoding="utf-8"))
    assert "<script>window" not in body and "<img" not in body
    assert "&lt;script&gt;window.__xss=1&lt;/script&gt;" in body
    # plot labels are reduced to a safe character set before they reach plotly
    assert "\\u003cscript" not in body and "\\u003cimg" not in body


def test_no_external_resources(tmp_path: Path) -> None:
    html = render_sweep_report(sweep(EVIL), tmp_path / "r.html").read_text(encoding="utf-8")
    body = _body(html)
    attrs = re.findall(r"""\b(?:src|href)\s*=\s*["']?\s*([^"'\s>]+)""", body, re.I)
    assert [a for a in attrs if re.match(r"(?:https?:)?//", a, re.I)] == []
    assert "<link" not in body.lower() and "@import" not in body and "url(" not in body
    assert not re.search(r"<script[^>]*\bsrc\s*=", html, re.I)


@pytest.mark.parametrize("data", [
    None, {}, {"cells": None}, {"cells": [None, {}, {"cell": "x", "metrics": None, "checks": [None]}]},
    {"cells": [{"cell": "a", "verdict": "FAILED", "errors": {"run": "boom"}, "metrics": {"kl/seq_kl_k3": "x"}}],
     "champion": {"cell": "zzz"}, "pareto": ["a"]},
])
def test_mostly_empty_sweeps_render(tmp_path: Path, data) -> None:
    html = render_sweep_report(data, tmp_path / "r.html").read_text(encoding="utf-8")
    assert html.rstrip().endswith("</html>")


def test_short_plot_labels() -> None:
    assert sw.short_labels(["dpo-b0.1-s0-1a2b3c4d5e", "ipo-b0.1-s0-0f0f0f0f0f"]) == {
        "dpo-b0.1-s0-1a2b3c4d5e": "dpo-b0.1-s0", "ipo-b0.1-s0-0f0f0f0f0f": "ipo-b0.1-s0"}
    # the same settings but another hash (e.g. another learning rate): keep the full keys apart
    assert sw.short_labels(["dpo-b0.1-s0-1a2b3c4d5e", "dpo-b0.1-s0-0f0f0f0f0f"])["dpo-b0.1-s0-0f0f0f0f0f"] == \
        "dpo-b0.1-s0-0f0f0f0f0f"


def test_plot_label() -> None:
    assert plot_label("dpo-b0.1-s0-abc") == "dpo-b0.1-s0-abc"
    assert plot_label("<b>x</b>&") == "?b?x?/b??"
    assert plot_label("a" * 60).endswith("…")


def test_pages_share_one_base_template() -> None:
    root = Path(sw.__file__).parent / "templates"
    for page in ("experiment.html", "sweep.html"):
        source = (root / page).read_text(encoding="utf-8")
        assert '{% extends "base.html" %}' in source
        assert "<style>" not in source and ":root" not in source and "<!DOCTYPE" not in source
    assert ":root" in (root / "base.html").read_text(encoding="utf-8")


def test_the_sweep_page_says_whether_its_judge_is_calibrated(tmp_path: Path) -> None:
    data = sweep()
    for c in data["cells"]:
        c["config"]["eval"] = {"judge": {"name": "rule"}}
    html = render_sweep_report(data, tmp_path / "u.html").read_text(encoding="utf-8")
    assert "UNCALIBRATED".lower() in html.lower() and "harness judge calibrate" in html and "(3 cells)" in html
    for c in data["cells"]:  # calibrated: the cells carry judge/* metrics from the stored calibration
        c["metrics"].update({"judge/agreement_pct": 71.25, "judge/agreement_pct_ci_low": 60.0,
                             "judge/agreement_pct_ci_high": 80.0, "judge/position_flip_pct": 12.5})
        c["judge_calibration"] = {"labels": "hh-rlhf sample", "judge_key": "abc123"}
    html = render_sweep_report(data, tmp_path / "c.html").read_text(encoding="utf-8")
    assert "calibrated against human labels (hh-rlhf sample)" in html and "71.2" in html
    assert "judge-uncalibrated" not in html and "uncalibrated</strong>" not in html


def _plan_section(html: str) -> str:
    found = re.search(r'<section id="gate-plan">(.*?)</section>', html, re.S)
    assert found, "the sweep page has no gate-plan section"
    return " ".join(found.group(1).split())


@pytest.fixture(scope="module")
def tiny_sweep_plan(tmp_path_factory) -> dict:
    """harness.gate_plan's plan for experiments/tiny_sweep.yaml (4 cells: each at 5%/4), as every cell of that
    sweep records it, simulated at 20 evaluated prompts (not the config's 12)."""
    from harness.gate_plan import cached_plan
    from harness.plan_command import load_plan_target

    config = load_plan_target(str(Path(__file__).resolve().parents[2] / "experiments" / "tiny_sweep.yaml"), [])
    return cached_plan(config, tmp_path_factory.mktemp("plans"), sims=60, evaluated_prompts=20)


def test_the_sweep_page_shows_its_gate_plan_with_the_family_wise_rate(tmp_path: Path, tiny_sweep_plan) -> None:
    plan = tiny_sweep_plan
    assert plan["family_size"] == 4 and plan["sizes"]["n_prompts"] == 20 and plan["family_wise_rate"] is not None
    data = sweep()
    data["selection"] = {"rule": "highest lower 95% confidence bound of winrate/lc_win_rate_pct",
                         "winner_cell": "dpo-b0.5-s0-bbb", "promotion": "promoted as version 1", "passed": []}
    for c in data["cells"]:
        c["gate_plan"] = plan
    section = _plan_section(render_sweep_report(data, tmp_path / "r.html").read_text(encoding="utf-8"))
    assert "60 simulated cells per row, at 20 eval prompts" in section and "20 prompts, as the run evaluated" in section
    for s in plan["scenarios"]:  # every row of the plan, its promote rate and Monte-Carlo error
        row = re.search(rf"{s['scenario']}: .*?</tr>", section)
        assert row and f"{100 * s['promote_rate']:.1f}%" in row.group(0) and f"±{100 * s['mc_stderr']:.1f}" in row.group(0)
    family = re.search(r'<tr id="family-wise">.*?</tr>', section).group(0)
    assert f"{100 * plan['family_wise_rate']:.1f}%" in family and f"±{100 * plan['family_wise_mc_stderr']:.1f}" in family
    assert "1.25% of 5%, 4 cells" in section  # each cell's share of the stated level
    # one sentence on what it means for the selected champion (the selection's winner, not the star)
    meaning = html.unescape(re.search(r'<p class="note" id="gate-plan-meaning">(.*?)</p>', section).group(1))
    assert f"{100 * plan['family_wise_rate']:.1f}% (± {100 * plan['family_wise_mc_stderr']:.1f}) of the time" in meaning
    assert "stated level 5%" in meaning and "dpo-b0.5-s0-bbb's promotion" in meaning and "winner's curse" in meaning
    assert 'href="#gate-plan"' in render_sweep_report(data, tmp_path / "r.html").read_text(encoding="utf-8")
    # the assumptions the simulated cells rest on are on the page, as the plan printed them
    assumed = html.unescape(re.search(r'<p class="note" id="plan-assumptions">(.*?)</p>', section, re.S).group(1))
    assert "tie_share 0.25" in assumed and "length_correlation 0" in assumed and "--assume" in assumed
    # the selection reads as a sentence (a formatted value's repr once leaked into it: "Val(text=...")
    page = render_sweep_report(data, tmp_path / "r.html").read_text(encoding="utf-8")
    sentence = html.unescape(re.sub(r"<[^>]+>", "", re.search(r'<p class="note" id="selection">(.*?)</p>', page,
                                                               re.S).group(1)))
    assert "Val(" not in sentence
    assert ("selects the highest lower 95% confidence bound of winrate/lc_win_rate_pct: dpo-b0.5-s0-bbb"
            in " ".join(sentence.split())) and "promoted as version 1" in sentence


def test_the_sweep_plan_prefers_its_own_then_the_selected_cells(tmp_path: Path, tiny_sweep_plan) -> None:
    data = sweep()  # no selection: the champion (aaa) is the selected cell
    small = json.loads(json.dumps(tiny_sweep_plan))
    small["sizes"] |= {"n_prompts": 18, "n_prompts_source": "18 prompts, as the run evaluated"}
    data["cells"][0]["gate_plan"] = small
    data["cells"][1]["gate_plan"] = tiny_sweep_plan
    section = _plan_section(render_sweep_report(data, tmp_path / "a.html").read_text(encoding="utf-8"))
    assert "at 18 eval prompts" in section and "dpo-b0.1-s0-aaa" in section and "evaluated 18-20 prompts" in section
    assert "dpo-b0.1-s0-aaa&#39;s promotion" in section
    data["gate_plan"] = tiny_sweep_plan  # the sweep's own plan wins, and names no cell
    section = _plan_section(render_sweep_report(data, tmp_path / "b.html").read_text(encoding="utf-8"))
    assert "at 20 eval prompts" in section and "the plan of cell" not in section
    data["champion"] = None
    section = _plan_section(render_sweep_report(data, tmp_path / "c.html").read_text(encoding="utf-8"))
    assert "this sweep selected none" in section


def test_no_plan_no_section_and_a_hostile_cell_key_stays_text(tmp_path: Path, tiny_sweep_plan) -> None:
    html = render_sweep_report(sweep(), tmp_path / "none.html").read_text(encoding="utf-8")
    assert 'id="gate-plan"' not in html and 'href="#gate-plan"' not in html
    data = sweep(EVIL)
    data["cells"][0]["cell"] = f"cell {EVIL}"
    data["champion"] = {"cell": f"cell {EVIL}", "run_id": None}
    data["cells"][0]["gate_plan"] = tiny_sweep_plan
    section = _plan_section(_body(render_sweep_report(data, tmp_path / "e.html").read_text(encoding="utf-8")))
    assert "<script>window" not in section and "&lt;script&gt;window.__xss=1&lt;/script&gt;" in section


def test_a_sequential_plan_shows_what_its_cells_judged(tmp_path: Path, tiny_sweep_plan) -> None:
    """A plan of a sequential config (cells judged batch by batch, harness.gate_plan) adds the mean prompts
    judged and documents used to every row; a fixed-size plan has no such column."""
    from harness.gate_plan import cached_plan
    from harness.plan_command import load_plan_target

    config = load_plan_target(str(Path(__file__).resolve().parents[2] / "experiments" / "tiny_sweep.yaml"),
                              ["eval.sequential.batch_prompts=4"])
    plan = cached_plan(config, tmp_path / "plans", sims=20)
    data = sweep()
    for c in data["cells"]:
        c["gate_plan"] = plan
    section = _plan_section(render_sweep_report(data, tmp_path / "s.html").read_text(encoding="utf-8"))
    assert "mean judged (sequential stops)" in section
    for s in plan["scenarios"]:
        row = re.search(rf"{s['scenario']}: .*?</tr>", section).group(0)
        assert f"{s['mean_prompts_judged']:.0f} of {plan['sizes']['n_prompts']} prompts" in row
        for task, used in s["mean_items_used"].items():
            assert f"{task} {used:.0f} of {plan['sizes']['domain_items'][task]}" in row
    for c in data["cells"]:
        c["gate_plan"] = tiny_sweep_plan
    section = _plan_section(render_sweep_report(data, tmp_path / "f.html").read_text(encoding="utf-8"))
    assert "mean judged" not in section and " of 20 prompts" not in section
