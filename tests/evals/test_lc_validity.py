"""The recovery study (bench/lc_validity.py) at test size: synthetic judges with a known quality
effect and a known length effect, the policy always longer, always shorter or straddling the
reference, n = 24, 100 and 805, 200 simulations a cell.

Stated tolerance: among simulations where LC is identified, its mean is within 1.5 pp of the
judge's win rate at equal length (or 3 Monte-Carlo SE of the mean, if larger), and the 95% interval
`LC -/+ z * stderr` (what the gate computes) covers that truth in at least 95% minus 3 binomial
Monte-Carlo SE of the simulations. Where the lengths never cross (always longer / shorter), LC must
be flagged not identified every time. The full table: `python -m bench.lc_validity`, in docs/lc_validity.md.
"""
from __future__ import annotations

import pytest

from bench.lc_validity import SIZES, Judge, coverage_floor, recovery, style_recovery

SIMS = 200
BIAS_TOLERANCE_PP = 1.5
JUDGES = {
    "length only": Judge(quality_pct=50, length_effect=1.5),  # true LC 50, raw ~55 (straddling) to ~66 (longer)
    "quality and length": Judge(quality_pct=65, length_effect=1.5),
}


@pytest.mark.parametrize("judge", list(JUDGES), ids=list(JUDGES))
@pytest.mark.parametrize("regime", ["longer", "shorter"])
def test_lengths_that_never_cross_leave_lc_not_identified(regime, judge):
    for n in SIZES:
        cell = recovery(regime, n, JUDGES[judge], SIMS)
        assert cell.identified_pct == 0.0 and cell.style_identified_pct == 0.0, (regime, n)
        # the raw win rate still moves with length, which is why a missing LC must block, not pass
        assert abs(cell.raw_mean - JUDGES[judge].quality_pct) > 8


@pytest.mark.parametrize("judge", list(JUDGES), ids=list(JUDGES))
@pytest.mark.parametrize("n", SIZES)
def test_straddling_lengths_recover_the_quality_win_rate_with_honest_intervals(n, judge):
    cell = recovery("straddling", n, JUDGES[judge], SIMS)
    assert cell.identified_pct >= 95
    assert abs(cell.lc_bias) <= cell.bias_tolerance(BIAS_TOLERANCE_PP), cell
    floor = coverage_floor(0.95, cell.n_identified)
    assert cell.lc_coverage >= floor, cell
    assert cell.raw_coverage >= coverage_floor(0.95, SIMS), cell
    assert cell.gap_coverage >= floor, cell
    # one-sided: the lower 95% bound (what a `min` rule reads) rarely sits above the truth
    assert cell.lc_low_miss <= 0.05 + 3 * (0.05 * 0.95 / cell.n_identified) ** 0.5, cell


def test_style_control_removes_a_markdown_preference_that_lc_cannot():
    cell = style_recovery(100, SIMS)
    assert cell.lc_coverage < 0.8  # LC controls length only: the list preference biases it
    assert cell.style_identified_pct >= 95
    assert abs(cell.style_mean - cell.truth_pct) <= 3.0, cell
    assert cell.style_coverage >= coverage_floor(0.95, cell.n_style_identified), cell
