"""The cell report shows raw, LC and style-controlled win rates side by side, says which one a gate
rule read, and why a controlled one is missing (the reason as evals.winrate_stats gave it)."""
from __future__ import annotations

import numpy as np

from evals.pairwise import winrate_statistics
from reports.experiment import render_html, winrate_rows


def _result(metrics: dict, checks: list[dict]) -> dict:
    return {"experiment": "x", "cell": "dpo-b0.1-s0", "verdict": "BLOCK", "metrics": metrics, "checks": checks}


def test_lc_not_identified_is_shown_with_its_reason_next_to_raw_and_style():
    rng = np.random.default_rng(0)
    reference = np.round(np.exp(rng.normal(6, 0.5, 24)))
    policy = reference + rng.integers(5, 400, 24)  # always longer: LC and style are not identified
    stats = winrate_statistics(rng.choice([1.0, 2.0], 24), reference, policy)
    metrics = stats.summary_with_reasons() | {"winrate/lengths_censored": 1.0}
    checks = [{"name": "lc_floor", "metric": "winrate/lc_win_rate_pct", "passed": False, "required": True,
               "reason": "metric 'winrate/lc_win_rate_pct' is missing"}]
    rows = {row["key"]: row for row in winrate_rows(_result(metrics, checks))["rows"]}
    assert not rows["winrate/win_rate_pct"]["missing"] and rows["winrate/lc_win_rate_pct"]["missing"]
    assert rows["winrate/lc_win_rate_pct"]["gated"] and not rows["winrate/win_rate_pct"]["gated"]
    assert "extrapolation" in rows["winrate/lc_win_rate_pct"]["reason"].text
    html = render_html(_result(metrics, checks))
    assert 'id="winrates-table"' in html and 'id="winrate-style_controlled_pct"' in html
    assert "read by a rule" in html and "positive on 24, negative on 0" in html
    assert 'id="winrates-censored"' in html and "eval.max_truncated_pct admits" in html  # no config: no number
    # the warning quotes the run's own threshold (the SmolLM2 configs admit 35%), never a fixed 10%
    html = render_html(_result(metrics, checks) | {"config": {"eval": {"max_truncated_pct": 35.0}}})
    assert "More than 35% (eval.max_truncated_pct)" in html and "More than 10%" not in html


def test_identified_rates_show_their_intervals_and_an_old_run_without_reasons_still_renders():
    rng = np.random.default_rng(1)
    reference = np.round(np.exp(rng.normal(6, 0.5, 40)))
    policy = np.round(reference * np.exp(rng.normal(0, 0.4, 40)))
    summary = winrate_statistics(rng.choice([1.0, 1.5, 2.0], 40), reference, policy).summary
    rows = winrate_rows(_result(summary, []))
    assert rows["gate_reads_none"] and all(not row["missing"] for row in rows["rows"])
    lc = rows["rows"][1]
    assert float(lc["lo"].text) < float(lc["value"].text) < float(lc["hi"].text)
    # read back from MLflow: no reason strings, only the flag
    old = {"winrate/win_rate_pct": 60.0, "winrate/lc_identified": 0.0}
    assert "lc_identified = 0" in winrate_rows(_result(old, []))["rows"][1]["reason"].text
    assert winrate_rows(_result({}, [])) is None


def test_the_rates_on_whole_answers_are_shown_beside_the_headline_when_answers_were_cut():
    from evals.judges import JudgeItem
    from evals.pairwise import winrate_eval
    from harness.data.verifiable import Instruction, VerifiablePrompt

    prompt = VerifiablePrompt("tea", (Instruction("lowercase"),))
    rng = np.random.default_rng(2)
    lower = rng.random(30) < 0.6  # the rule judge: the lowercase answer wins; two capitalised answers tie
    items = [JudgeItem(prompt.text, "Answer " * int(rng.integers(1, 9)),
                       ("answer " if low else "ANSWER ") * int(rng.integers(1, 9)), prompt) for low in lower]
    cut = list(rng.random(30) < 0.3)
    metrics, _ = winrate_eval(items, "rule", n_bootstrap=0, seed=0, hit_limit=([False] * 30, cut))
    kept = 30 - sum(cut)
    html = render_html(_result(metrics, []))
    assert f"{kept} of 30 judged prompts" in html and 'id="winrates-uncut-table"' in html
    assert 'id="uncut-uncut_win_rate_pct"' in html
    uncut = winrate_rows(_result(metrics, []))["uncut"]
    by_hand = 100 * float(np.mean(np.where(lower, 1.0, 0.5)[~np.array(cut)]))
    assert float(uncut["rows"][0]["value"].text) == round(by_hand, 4)
    whole, _ = winrate_eval(items, "rule", n_bootstrap=0, seed=0, hit_limit=([False] * 30, [False] * 30))
    html = render_html(_result(whole, []))
    assert "these are the rates on whole answers" in html and 'id="winrates-uncut-table"' not in html
