"""evals.winrate_stats: hand-computed raw figures, the identification rules, the fit against an
independent Newton solve and a jackknife, style features, the bootstrap, speed."""
from __future__ import annotations

import math
import time

import numpy as np
import pytest

from evals.metrics import METRICS
from evals.winrate_stats import GAP, LC, RAW, STYLE, Z95, markdown_counts, min_side, winrate_statistics


def _wilson_stderr(p: float, n: int) -> float:
    z2 = Z95**2
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = Z95 * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    return max(p - (centre - half), centre + half - p) / Z95


def _straddling_lengths(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    reference = np.round(np.exp(rng.normal(6, 0.5, n)))
    return reference, np.round(reference * np.exp(rng.normal(0.0, 0.4, n)))


def test_raw_win_rate_and_its_stderr_by_hand():
    # y = 1, 0, .5, 1, 1: mean .7; SEM = sqrt(.8 / 4) / sqrt(5) = .2. The decisive verdicts are 3 wins
    # of 4 (share 4/5): Wilson for 3/4 spans [.3006, .9544], wider side .4494 / 1.96 = .2293, times
    # 4/5 = .1834 < .2: the SEM stands
    stats = winrate_statistics([2, 1, 1.5, 2, 2], [10, 10, 10, 10, 10], [12, 8, 10, 14, 9])
    s = stats.summary
    assert s[RAW] == pytest.approx(70.0)
    assert _wilson_stderr(0.75, 4) == pytest.approx(0.2293, abs=1e-4)
    assert s[f"{RAW}_stderr"] == pytest.approx(20.0)
    assert s[f"{RAW}_ci_low"] == pytest.approx(70 - Z95 * s[f"{RAW}_stderr"])
    assert s[f"{RAW}_ci_high"] == 100.0  # clipped
    assert s["winrate/n"] == 5.0
    # in the middle of the range alpaca-eval's SEM is kept: 24 prompts, 12 wins, 12 losses
    half = winrate_statistics([2.0, 1.0] * 12, [100] * 24, [100] * 24).summary
    assert half[f"{RAW}_stderr"] == pytest.approx(100 * math.sqrt(0.25 * 24 / 23 / 24))


def test_a_policy_that_wins_everything_has_no_zero_width_interval_and_no_lc():
    reference, policy = _straddling_lengths(24)
    s = winrate_statistics([2.0] * 24, reference, policy)
    assert s.summary[RAW] == 100.0
    # the SEM is 0 here; Wilson's lower bound 24 / (24 + z^2) is what an honest interval gives
    assert s.summary[f"{RAW}_stderr"] == pytest.approx(100 * Z95 / (24 + Z95**2))
    assert s.summary["winrate/lc_identified"] == 0.0
    assert LC not in s.summary and GAP not in s.summary and STYLE not in s.summary
    assert "every verdict is the same" in s.lc_reason


def test_draws_count_half_zero_is_a_draw_and_nan_is_left_out():
    a = winrate_statistics([2, 0, float("nan"), 1], [5, 5, 5, 5], [5, 5, 5, 5]).summary
    b = winrate_statistics([2, 1.5, 1], [5, 5, 5], [5, 5, 5]).summary
    assert a == b and a[RAW] == 50.0 and a["winrate/n"] == 3.0
    with pytest.raises(ValueError, match="outside alpaca-eval's scale"):
        winrate_statistics([2, 3], [1, 1], [1, 1])
    with pytest.raises(ValueError, match="one entry per prompt"):
        winrate_statistics([2, 1], [1, 1], [1])


def test_identical_outputs_give_lc_equal_to_raw_with_a_zero_gap():
    reference, _ = _straddling_lengths(24)
    texts = [f"answer {i}" for i in range(24)]
    s = winrate_statistics([1.5] * 24, reference, reference, reference_texts=texts, policy_texts=texts).summary
    assert s["winrate/lc_identified"] == 1.0 and s["winrate/style_identified"] == 1.0
    assert s[LC] == s[RAW] == s[STYLE] == 50.0
    assert s[f"{LC}_stderr"] == s[f"{RAW}_stderr"] == 0.0  # draws by construction: nothing binomial to floor
    assert (s[GAP], s[f"{GAP}_stderr"]) == (0.0, 0.0)


@pytest.mark.parametrize(("n_shorter", "identified"), [(14, False), (15, True)])
def test_each_side_needs_fifteen_percent_of_the_prompts(n_shorter, identified):
    rng = np.random.default_rng(3)
    n = 100
    assert min_side(n) == 15
    reference = np.round(np.exp(rng.normal(6, 0.5, n)))
    ratio = np.where(np.arange(n) < n_shorter, rng.uniform(0.6, 0.95, n), rng.uniform(1.05, 1.6, n))
    verdicts = rng.choice([1.0, 1.5, 2.0], n)
    s = winrate_statistics(verdicts, reference, np.round(reference * ratio))
    assert s.summary["winrate/lc_identified"] == float(identified)
    assert (LC in s.summary) is identified
    if not identified:
        assert f"negative on {n_shorter}" in s.lc_reason and "at least 15" in s.lc_reason


def test_equal_lengths_count_on_both_sides():
    rng = np.random.default_rng(4)
    reference = np.round(np.exp(rng.normal(6, 0.5, 24)))
    policy = reference.copy()
    policy[4:] += rng.integers(5, 300, 20)  # 20 longer, 4 equal: 4 = min_side(24) on the short side
    s = winrate_statistics(rng.choice([1.0, 2.0], 24), reference, policy)
    assert min_side(24) == 4 and s.summary["winrate/lc_identified"] == 1.0
    policy[3] += 1  # 21 longer, 3 equal
    s = winrate_statistics(rng.choice([1.0, 2.0], 24), reference, policy)
    assert s.summary["winrate/lc_identified"] == 0.0


def test_verdicts_perfectly_predicted_by_length_are_not_identified():
    reference, policy = _straddling_lengths(40, seed=5)
    verdicts = np.where(policy > reference, 2.0, 1.0)  # the judge picks the longer answer, always
    verdicts[policy == reference] = 1.5
    s = winrate_statistics(verdicts, reference, policy)
    assert s.summary["winrate/lc_identified"] == 0.0 and "separation" in s.lc_reason


def _newton_logit(features: np.ndarray, y: np.ndarray) -> np.ndarray:
    """An independent maximum-likelihood solve (plain Newton) for the test only."""
    design = np.column_stack([np.ones(len(y)), features])
    beta = np.zeros(design.shape[1])
    for _ in range(50):
        p = 1 / (1 + np.exp(-design @ beta))
        beta += np.linalg.solve((design * (p * (1 - p))[:, None]).T @ design, design.T @ (y - p))
    return beta


def test_lc_is_the_unpenalised_fit_at_equal_length_and_its_stderr_matches_a_jackknife():
    rng = np.random.default_rng(6)
    n = 120
    reference, policy = _straddling_lengths(n, seed=6)
    d = policy - reference
    x = np.tanh(d / d.std(ddof=1))
    p = 0.05 + 0.9 / (1 + np.exp(-(0.3 + 1.2 * x)))
    verdicts = np.where(rng.random(n) < 0.1, 1.5, np.where(rng.random(n) < p, 2.0, 1.0))
    y = verdicts - 1
    s = winrate_statistics(verdicts, reference, policy).summary
    beta = _newton_logit(x, y)
    assert s[LC] == pytest.approx(100 / (1 + math.exp(-beta[0])), abs=1e-6)  # x = 0 at equal length

    # leave-one-out jackknife of LC on the logit scale, refitting each time
    logits = []
    for i in range(n):
        keep = np.arange(n) != i
        xi = np.tanh(d[keep] / d[keep].std(ddof=1))
        logits.append(_newton_logit(xi, y[keep])[0])
    logits = np.array(logits)
    jackknife_se_logit = math.sqrt((n - 1) / n * np.sum((logits - logits.mean()) ** 2))
    p0 = s[LC] / 100
    reported_se_logit = s[f"{LC}_stderr"] / (100 * p0 * (1 - p0))
    # HC3 approximates the jackknife (the reported stderr is the wider side of the logit interval, mapped back)
    assert reported_se_logit == pytest.approx(jackknife_se_logit, rel=0.08)  # measured: within 1-3%


def test_the_gap_stderr_is_paired():
    # length does not matter to this judge: raw and LC move together, the gap's stderr is far below
    # what treating them as independent would give
    rng = np.random.default_rng(7)
    reference, policy = _straddling_lengths(200, seed=7)
    verdicts = rng.choice([1.0, 1.5, 2.0], 200, p=[0.4, 0.1, 0.5])
    s = winrate_statistics(verdicts, reference, policy).summary
    independent = math.hypot(s[f"{RAW}_stderr"], s[f"{LC}_stderr"])
    assert 0 < s[f"{GAP}_stderr"] < 0.3 * independent
    assert s[GAP] == pytest.approx(s[RAW] - s[LC])


def test_markdown_counts_follow_arena_hard():
    text = "# Title\n## Part\n- one\n* two\n1. three\n**bold** and __also__\n```\n# not a header\n- not a list\n```\n"
    assert markdown_counts(text) == (2, 3, 2)
    assert markdown_counts("plain prose, no markdown at all") == (0, 0, 0)


def test_style_without_texts_equals_lc_and_rare_markdown_is_left_out_with_a_note():
    rng = np.random.default_rng(8)
    reference, policy = _straddling_lengths(30, seed=8)
    verdicts = rng.choice([1.0, 1.5, 2.0], 30)
    plain = winrate_statistics(verdicts, reference, policy)
    assert plain.summary[STYLE] == plain.summary[LC] and plain.style_features == ("length",)
    ref_texts = ["x" * int(c) for c in reference]
    pol_texts = ["x" * int(c) for c in policy]
    pol_texts[0] = "# header\n" + pol_texts[0][9:]  # a header on one prompt only: cannot be estimated
    styled = winrate_statistics(verdicts, reference, policy, reference_texts=ref_texts, policy_texts=pol_texts)
    assert styled.style_features == ("length",)
    assert any("headers differ on 1 of 30" in note for note in styled.notes)


def test_style_control_needs_both_sides_for_each_markdown_feature():
    rng = np.random.default_rng(9)
    reference, policy = _straddling_lengths(30, seed=9)
    ref_texts = ["x" * int(c) for c in reference]
    pol_texts = ["- a\n- b\n" + "x" * int(c) for c in policy]  # the policy always adds a list
    s = winrate_statistics(rng.choice([1.0, 2.0], 30), reference, policy + 8, reference_texts=ref_texts,
                           policy_texts=pol_texts)
    assert s.summary["winrate/style_identified"] == 0.0 and STYLE not in s.summary
    assert "list_items difference" in s.style_reason and "extrapolation" in s.style_reason


def test_bootstrap_only_widens_and_is_seeded():
    rng = np.random.default_rng(10)
    reference, policy = _straddling_lengths(40, seed=10)
    verdicts = rng.choice([1.0, 1.5, 2.0], 40)
    analytic = winrate_statistics(verdicts, reference, policy).summary
    booted = winrate_statistics(verdicts, reference, policy, n_bootstrap=100, seed=1).summary
    for key in (RAW, LC, GAP, STYLE):
        assert booted[key] == analytic[key]
        assert booted[f"{key}_stderr"] >= analytic[f"{key}_stderr"]
    assert winrate_statistics(verdicts, reference, policy, n_bootstrap=100, seed=1).summary == booted


def test_fast_enough_for_the_gate_planner():
    rng = np.random.default_rng(11)
    reference, policy = _straddling_lengths(100, seed=11)
    verdicts = rng.choice([1.0, 1.5, 2.0], 100)
    winrate_statistics(verdicts, reference, policy)  # imports and first-call costs
    times = []
    for _ in range(20):
        start = time.perf_counter()
        winrate_statistics(verdicts, reference, policy)
        times.append(time.perf_counter() - start)
    assert float(np.median(times)) < 0.020


def test_metrics_are_declared_with_their_direction():
    for key, higher in ((RAW, True), (LC, True), (STYLE, True), ("winrate/lc_identified", True),
                        ("winrate/style_identified", True), (GAP, False)):
        assert METRICS.get(key).higher_is_better is higher
    assert "not identified" in METRICS.get(LC).missing_reason
