"""Anytime-valid sequential statistics (evals.sequential): bounds computed by hand, the confidence
sequence's coverage under looks after every batch, the false-promote rate of a floor rule under optional
stopping (and the fixed-n bound's, which the same simulation shows inflated), and the decision semantics."""
import math
import zlib

import numpy as np
import pytest

from bench.sequential_validity import fixed_n_normal_pass, sequential_design, win_scores
from evals.sequential import (
    CONTINUE,
    FAIL,
    PASS,
    SequentialRule,
    bets,
    bounds_at_looks,
    ever_excludes,
    log_capital,
    lower_upper,
    paired_differences,
    sequential_decision,
    simulate_decisions,
)
from evals.sequential import win_scores as verdict_scores

SIMS = 3000  # MC standard error at 5%: 0.4 points
LOOKS = np.arange(8, 401, 8)


def _mc_limit(level: float, sims: int = SIMS) -> float:
    return level + 3 * math.sqrt(level * (1 - level) / sims)


# ---------------------------------------------------------------------------------- by hand


def test_all_wins_lower_bound_matches_the_closed_form():
    """Ten wins: every bet is capped at 1/2 (the plug-in rate is larger), so K+(m) = (1 + (1 - m)/2)^10 and
    the lower bound solves 10 log(1 + (1 - L)/2) = log(1/alpha): L = 1 - 2 (20^(1/10) - 1) = 0.30139."""
    x = np.ones(10)
    assert np.all(bets(x, 0.05) == 0.5)
    expected = 1 - 2 * (20 ** (1 / 10) - 1)
    low = bounds_at_looks(x, 0.05, sides=("low",))["low"]
    assert low[-1] == pytest.approx(expected, abs=1e-9)
    assert np.all(np.diff(low) >= 0)  # a running intersection: never falls
    assert log_capital(x, 0.5, bets(x, 0.05), "low")[-1] == pytest.approx(10 * math.log(1.25))


def test_plug_in_bet_by_hand():
    """Once the plug-in rate is below the cap: lambda_t = sqrt(2 log(1/alpha) / (var_{t-1} t log(1 + t)))
    with WSR's var_{t-1} = (1/4 + sum_{i<t} (x_i - mu_i)^2) / t, mu_i = (1/2 + x_1 + ... + x_i) / (i + 1)."""
    x = np.array([1.0, 0.0] * 40)
    lam = bets(x, 0.05)
    t = 60  # the bet on item 60 (0-based 59) uses items 0..58
    mu = [0.5]
    for i in range(t - 1):
        mu.append((0.5 + x[: i + 1].sum()) / (i + 2))
    var = (0.25 + sum((x[i] - mu[i + 1]) ** 2 for i in range(t - 1))) / t  # mu[i + 1]: mean after item i
    expected = math.sqrt(2 * math.log(20) / (var * t * math.log(1 + t)))
    assert expected < 0.5 and lam[t - 1] == pytest.approx(expected, rel=1e-12)
    floor = math.sqrt(2 * math.log(20) / (var * 120))  # tuned to a horizon of 120 items: above the plug-in rate
    assert expected < floor < 0.5 and bets(x, 0.05, horizon=120)[t - 1] == pytest.approx(floor, rel=1e-12)


def test_scores_outside_the_range_are_refused():
    with pytest.raises(ValueError, match="within"):
        lower_upper([0.2, 1.3])
    with pytest.raises(ValueError, match="within"):
        lower_upper([0.2, float("nan")])
    assert lower_upper([-1.0, 1.0, 0.0], lo=-1, hi=1)[0] >= -1


def test_lower_upper_is_a_two_sided_interval_in_the_scores_units():
    rng = np.random.default_rng(3)
    diffs = rng.choice([-1.0, 0.0, 1.0], p=[0.1, 0.7, 0.2], size=300)
    low, high = lower_upper(diffs, 0.05, lo=-1, hi=1)
    assert -1 <= low < diffs.mean() < high <= 1
    # two-sided at alpha: each side at alpha / 2, so wider than the one-sided bounds at alpha
    one_sided = bounds_at_looks(diffs, 0.05, lo=-1, hi=1)
    assert low < one_sided["low"][-1] and high > one_sided["high"][-1]


def test_bounds_and_the_capital_test_agree():
    """The bisection bounds and `ever_excludes` (capital at the truth) are two readings of one CS."""
    rng = np.random.default_rng(5)
    x = win_scores(rng, 40, 400, 0.55, 0.2)
    by_capital = ever_excludes(x, 0.55, 0.05, looks=LOOKS, horizon=200)
    for row, excluded in zip(x, by_capital):
        b = bounds_at_looks(row, 0.025, looks=LOOKS, horizon=200)
        assert excluded == bool(b["low"][-1] > 0.55 or b["high"][-1] < 0.55)


# ---------------------------------------------------------------------------------- coverage under looks


@pytest.mark.parametrize("name, truth, make", [
    ("equal, no ties", 0.5, lambda rng: win_scores(rng, SIMS, 400, 0.5, 0.0)),
    ("equal, 30% ties", 0.5, lambda rng: win_scores(rng, SIMS, 400, 0.5, 0.3)),
    ("30, with ties", 0.3, lambda rng: win_scores(rng, SIMS, 400, 0.3, 0.3)),
    ("70, with ties", 0.7, lambda rng: win_scores(rng, SIMS, 400, 0.7, 0.3)),
    ("70, no ties", 0.7, lambda rng: win_scores(rng, SIMS, 400, 0.7, 0.0)),
    ("accuracy 90%", 0.9, lambda rng: (rng.random((SIMS, 400)) < 0.9).astype(float)),
    ("position-swapped verdicts", 0.5, lambda rng: rng.choice([0, 0.25, 0.5, 0.75, 1.0], size=(SIMS, 400))),
])
@pytest.mark.parametrize("horizon", [200, None])
def test_the_sequence_ever_excludes_the_truth_at_most_alpha(name, truth, make, horizon):
    x = make(np.random.default_rng(zlib.crc32(name.encode())))  # str hash() is salted per process
    miss = ever_excludes(x, truth, 0.05, looks=LOOKS, horizon=horizon).mean()
    assert miss <= _mc_limit(0.05), f"{name}: excluded the truth in {100 * miss:.2f}% of sequences"


def test_one_sided_bounds_each_hold_at_alpha():
    x = win_scores(np.random.default_rng(11), SIMS, 400, 0.6, 0.1)
    miss = ever_excludes(x, 0.6, 0.05, looks=LOOKS, horizon=200, two_sided=False).mean()
    assert miss <= _mc_limit(0.05)


# ---------------------------------------------------------------------------------- the gate's error rates


@pytest.mark.parametrize("tie", [0.0, 0.3, 0.6])
def test_a_floor_rule_under_equal_quality_promotes_at_most_the_level_with_optional_stopping(tie):
    rng = np.random.default_rng(int(tie * 100) + 1)
    x = win_scores(rng, SIMS, 400, 0.5, tie)
    status, used = simulate_decisions(x, SequentialRule("min", 0.5, 0.95), batch=8, max_n=400)
    assert (status == 1).mean() <= _mc_limit(0.05)
    # the simulation can see a broken method: the fixed-n normal bound read at the same looks ships far
    # more often than its nominal 5% (about 28% with 50 looks)
    assert fixed_n_normal_pass(x, 0.5, LOOKS).any(axis=1).mean() > 0.15


def test_a_no_change_cell_never_promotes_and_runs_to_the_budget():
    x = np.full((10, 400), 0.5)  # every verdict a tie
    status, used = simulate_decisions(x, SequentialRule("min", 0.5), batch=8, max_n=400)
    assert np.all(status == 0) and np.all(used == 400)
    decision = sequential_decision([row for row in x[0].reshape(50, 8)], SequentialRule("min", 0.5), max_n=400)
    assert decision.status == FAIL and not decision.stopped_early and "not shown" in decision.reason


def test_large_effects_stop_early_with_fewer_prompts_than_a_fixed_design():
    """The study's figures at test size: 20 points decided in ~50 prompts where the matched fixed design
    needs 138 (no ties); 10 points in ~165 of a 400 budget at ~94% power, a fixed design 250+."""
    rng = np.random.default_rng(7)
    big = sequential_design(rng, 2000, 0.7, 0.0, 400)
    assert big["power"] > 0.99 and big["mean_prompts"] < 70 and big["ratio"] < 0.5
    small = sequential_design(rng, 2000, 0.6, 0.0, 400)
    assert 0.9 < small["power"] and small["mean_prompts"] < 190 and small["ratio"] < 0.8


# ---------------------------------------------------------------------------------- decisions


def _batches(x, size=8):
    return [x[i : i + size] for i in range(0, len(x), size)]


def test_decision_passes_early_and_agrees_with_the_vectorised_simulation():
    x = win_scores(np.random.default_rng(2), 1, 400, 0.75, 0.1)[0]
    rule = SequentialRule("min", 0.5, 0.95)
    decision = sequential_decision(_batches(x), rule, max_n=400)
    status, used = simulate_decisions(x[None, :], rule, batch=8, max_n=400)
    assert decision.status == PASS and decision.stopped_early and decision.n == used[0] < 400 and status[0] == 1
    assert decision.low > 0.5 and all(look.low <= 0.5 for look in decision.looks[:-1])  # the first look to clear
    assert decision.n % 8 == 0 and [look.n for look in decision.looks] == list(range(8, decision.n + 1, 8))


def test_decision_continues_then_resumes_to_the_same_verdict():
    x = win_scores(np.random.default_rng(4), 1, 400, 0.7, 0.0)[0]
    rule = SequentialRule("min", 0.5)
    full = sequential_decision(_batches(x), rule, max_n=400)
    early = sequential_decision(_batches(x)[:1], rule, max_n=400)
    assert early.status == CONTINUE and early.n == 8 and not early.stopped_early
    resumed = sequential_decision(_batches(x)[: full.n // 8], rule, max_n=400)
    assert (resumed.status, resumed.n, resumed.low) == (full.status, full.n, full.low)


def test_a_clear_loser_fails_early_and_a_ceiling_mirrors_a_floor():
    x = win_scores(np.random.default_rng(6), 1, 400, 0.25, 0.0)[0]
    floor = sequential_decision(_batches(x), SequentialRule("min", 0.5), max_n=400)
    assert floor.status == FAIL and floor.stopped_early and floor.high <= 0.5
    ceiling = sequential_decision(_batches(x), SequentialRule("max", 0.5), max_n=400)
    assert ceiling.status == PASS and ceiling.high < 0.5 and ceiling.n == floor.n  # the same capital, mirrored


def test_non_inferiority_on_paired_differences():
    rng = np.random.default_rng(8)
    baseline = (rng.random(400) < 0.8).astype(float)
    same = sequential_decision(_batches(paired_differences(baseline, baseline)),
                               SequentialRule("max_regression", 0.10), max_n=400)
    assert same.status == PASS and same.low > -0.10  # identical answers: shown within 10 points
    worse = baseline * (rng.random(400) > 0.3)  # loses 30% of the items it had right: a 24-point drop
    dropped = sequential_decision(_batches(paired_differences(worse, baseline)),
                                  SequentialRule("max_regression", 0.10), max_n=400)
    assert dropped.status == FAIL and dropped.stopped_early and dropped.high <= -0.10


def test_a_batch_straddling_the_budget_is_read_at_the_budget():
    x = np.full(30, 0.5)
    decision = sequential_decision([x[:16], x[16:]], SequentialRule("min", 0.5), max_n=20)
    assert decision.n == 20 and decision.status == FAIL and [look.n for look in decision.looks] == [16, 20]


def test_verdicts_become_win_scores():
    assert verdict_scores([1, 2, 1.5, 0, 1.25]).tolist() == [0.0, 1.0, 0.5, 0.5, 0.25]
