"""The cell page's "Judge calibration" box: the stored figures of a calibrated judge, or "uncalibrated"
in the warning colour with the command that fixes it; model-controlled text stays escaped."""
from __future__ import annotations

import re

from reports.experiment import build_context, render_html

EVIL = "<script>alert(1)</script>"


def _box(html: str) -> str:
    return re.search(r'<section class="judge-cal[^"]*" id="judge-calibration">.*?</section>', html, re.S).group(0)


def test_a_calibrated_judge_shows_agreement_with_its_interval_flips_and_length_bias():
    metrics = {"judge/agreement_pct": 62.5, "judge/agreement_pct_ci_low": 47.0, "judge/agreement_pct_ci_high": 75.8,
               "judge/position_flip_pct": 12.5, "judge/position_flip_pct_ci_low": 5.0,
               "judge/position_flip_pct_ci_high": 26.0, "judge/longer_pick_pct": 70.0,
               "judge/human_longer_pick_pct": 56.4, "judge/longer_pick_excess_pct": 13.6, "judge/n_pairs": 40.0}
    result = {"metrics": metrics, "config": {"eval": {"judge": {"name": "llm"}}},
              "judge_calibration": {"status": "calibrated", "judge_key": "ab948eaac466", "run_id": "r1",
                                    "labels": f"hh.jsonl.gz {EVIL}"}}
    assert build_context(result)["judge_calibration"]["calibrated"] is True
    box = _box(render_html(result))
    assert 'class="judge-cal "' in box and "uncalibrated" not in box
    assert "62.5% [47.0, 75.8]" in box and "12.5% [5.0, 26.0]" in box
    assert "70.0% vs humans 56.4% (+13.6 points)" in box and "ab948eaac466" in box
    assert EVIL not in box and "&lt;script&gt;" in box


def test_an_uncalibrated_judge_is_flagged_with_the_command_to_calibrate_it():
    result = {"metrics": {"winrate/lc_win_rate_pct": 55.0}, "config": {"eval": {"judge": "rule"}},
              "judge_calibration": {"status": "uncalibrated", "judge_key": "3aa377972a91"}}
    box = _box(render_html(result))
    assert 'class="judge-cal warn"' in box and 'id="judge-uncalibrated"' in box
    assert "harness judge calibrate" in box and "rule" in box
    # a report of a run recorded before calibration existed renders the same warning
    assert 'id="judge-uncalibrated"' in _box(render_html({}))
