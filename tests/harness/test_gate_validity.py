"""The gate's stated error rates, checked by simulation against a known truth at the sizes the shipped
configs use. Each rate is compared with its level plus three Monte-Carlo standard errors, so a test
fails only when the statistic is wrong, not by chance (about 1 in 700 per check). The large-sample
version of this study is `python -m bench.gate_validity` (figures in docs/gate_validity.md)."""
import json
import math
from pathlib import Path

import numpy as np
import pytest

from evals.catalog import known_metrics
from evals.kl import KLEstimate
from evals.paired_accuracy import paired_summary
from harness.config import GateRule, load_config
from harness.gate import confidence_limit, gate
from harness.gate_plan import Scenario, Sizes, plan_gate, simulate_cell

EXPERIMENTS = Path(__file__).resolve().parents[2] / "experiments"
SPECS = known_metrics()
SINGLE_CELL = sorted(p for p in EXPERIMENTS.glob("*.yaml") if "sweep" not in p.name and p.name != "quickstart.yaml")


def _mc_slack(level: float, sims: int) -> float:
    return 3 * math.sqrt(level * (1 - level) / sims)


@pytest.mark.parametrize("n_items", [30, 42, 120])
@pytest.mark.parametrize("true_drop, discordant", [(0.0, 0.0), (0.0, 0.1), (0.10, 0.2), (0.05, 0.3), (0.10, 0.10),
                                                   (0.05, 0.05)])
def test_paired_accuracy_drop_upper_bound_covers_at_95_percent(n_items, true_drop, discordant):
    """What a non-inferiority rule reads (through gate()): the one-sided 95% upper bound of the paired
    drop must lie at or above the true drop in at least 95% of experiments, including when no item
    changed or every change went the same way (where a Wald bound covers only ~92%)."""
    rng = np.random.default_rng(n_items)
    sims = 1500
    counts = rng.multinomial(n_items, [(discordant + true_drop) / 2, (discordant - true_drop) / 2,
                                       1 - discordant], size=sims)
    rule = GateRule(metric="domain_arith_mc/acc", max_regression=true_drop + 1e-9)
    covered = 0
    for ref_only, pol_only, _ in counts:
        summary = {"domain_arith_mc/acc": 0.5, "domain_arith_mc/acc_n": float(n_items),
                   "domain_arith_mc/acc_delta": (pol_only - ref_only) / n_items,
                   "domain_arith_mc/acc_delta_reference_only": float(ref_only),
                   "domain_arith_mc/acc_delta_policy_only": float(pol_only)}
        check = gate(summary, {"reference": {"domain_arith_mc/acc": 0.5}}, [rule], specs=SPECS).checks[0]
        covered += check.confidence_bound >= true_drop - 1e-9
    assert covered / sims >= 0.95 - _mc_slack(0.95, sims)


def test_the_recorded_counts_reproduce_the_items():
    pol = [1, 1, 0, 0, 1, 0]
    ref = [1, 0, 1, 1, 1, 0]
    s = paired_summary("domain_x", pol, {"": ref})
    assert (s["domain_x/acc_delta_reference_only"], s["domain_x/acc_delta_policy_only"], s["domain_x/acc_n"]) == (2, 1, 6)
    assert s["domain_x/acc_delta"] == pytest.approx(-1 / 6)


def _kl_sample_sizes() -> list[int]:
    """Every `kl: {n_prompts: N}` in the shipped configs (cells of sweeps included) and the default."""
    import yaml

    from harness.config import KLConfig

    def walk(node):
        if isinstance(node, dict):
            kl = node.get("kl")
            if isinstance(kl, dict) and "n_prompts" in kl:
                yield int(kl["n_prompts"])
            for child in node.values():
                yield from walk(child)
        elif isinstance(node, list):
            for child in node:
                yield from walk(child)

    sizes = {n for path in EXPERIMENTS.glob("*.yaml") for n in walk(yaml.safe_load(path.read_text()))}
    return sorted(sizes | {KLConfig().n_prompts})


KL_SIZES = _kl_sample_sizes()
# A single cell decides at 95%; the four-cell sweeps at 95% / 4 (Bonferroni).
KL_LEVELS = [0.95, 0.9875]


def _mixture(rng, shape):
    """Per-sequence KL where a tenth of the responses drift far: 5x the typical KL."""
    big = rng.random(shape) < 0.1
    return np.where(big, rng.gamma(2.0, 2.5, shape), rng.gamma(2.0, 0.5, shape))


# Right-skewed per-sequence KL (skewness 2.8, 2.0, 1.4, 6.2, 4.4), each with its true mean.
KL_SHAPES = {
    "gamma_0.5": (lambda rng, shape: rng.gamma(0.5, 2.0, shape), 1.0),
    "gamma_1": (lambda rng, shape: rng.gamma(1.0, 1.0, shape), 1.0),
    "gamma_2": (lambda rng, shape: rng.gamma(2.0, 0.5, shape), 1.0),
    "lognormal_1": (lambda rng, shape: rng.lognormal(0.0, 1.0, shape), math.exp(0.5)),
    "mixture_10pct_x5": (_mixture, 1.4),
}


def _kl_bounds(draws: np.ndarray, side: str, confidence: float, skew_aware: bool = True) -> np.ndarray:
    """The bound the gate reads for each simulated eval: KLEstimate.summary, then confidence_limit."""
    out = []
    for row in draws:
        summary = KLEstimate(seq_k1=row.tolist(), seq_k3=row.tolist(), n_tokens=10 * len(row)).summary()
        if not skew_aware:
            del summary["kl/seq_kl_k3_skewness"]
        out.append(confidence_limit("kl/seq_kl_k3", side, confidence, summary))
    return np.array(out, dtype=float)


def test_the_kl_sample_sizes_are_read_from_the_shipped_configs():
    assert {6, 8, 12, 16} <= set(KL_SIZES) and all(n >= 2 for n in KL_SIZES)


@pytest.mark.parametrize("confidence", KL_LEVELS)
@pytest.mark.parametrize("n", KL_SIZES)
def test_kl_upper_bound_covers_the_true_kl_at_the_shipped_sample_counts(n, confidence):
    """What a KL ceiling reads: the upper bound of the mean per-sequence KL must lie at or above the true
    mean at least `confidence` of the time for right-skewed KL, at every sample count a shipped config
    draws. The normal bound it replaces covered 69-90% at 95% here (docs/gate_validity.md), and is
    checked to fail this test, so the test can tell the two apart."""
    rng = np.random.default_rng(n)
    sims = 1500
    for name, (draw, true_kl) in KL_SHAPES.items():
        draws = draw(rng, (sims, n))
        coverage = np.mean(_kl_bounds(draws, "high", confidence) >= true_kl)
        assert coverage >= confidence - _mc_slack(confidence, sims), (name, coverage)
    normal = np.mean(_kl_bounds(draws, "high", confidence, skew_aware=False) >= true_kl)
    assert normal < confidence - _mc_slack(confidence, sims)  # the mixture: the old bound misses its level


@pytest.mark.parametrize("n", [8, 16])
def test_an_allowed_kl_increase_at_its_margin_passes_at_most_at_the_level(n):
    """`max_regression` on KL against the reference (an exact 0): the drop's upper bound is KL's own
    skew-aware bound, so a policy whose true KL equals the allowed increase passes at most 5% of the time.
    With the normal bound the same cells would pass beyond the level; without its skewness (KL is declared
    skewed) a cell gets no bound at all and is blocked."""
    rng = np.random.default_rng(100 + n)
    draw, true_kl = KL_SHAPES["mixture_10pct_x5"]
    rule = GateRule(name="kl_not_worse", metric="kl/seq_kl_k3", max_regression=true_kl, against="reference")
    sims, passed, normal_passed = 1500, 0, 0
    for row in draw(rng, (sims, n)):
        summary = KLEstimate(seq_k1=row.tolist(), seq_k3=row.tolist(), n_tokens=10 * n).summary()
        decide = lambda s: gate(s, {"reference": {"kl/seq_kl_k3": 0.0}}, [rule], specs=known_metrics())  # noqa: E731
        passed += decide(summary).verdict == "PROMOTE"
        normal_passed += summary["kl/seq_kl_k3"] + 1.6448536269514722 * summary["kl/seq_kl_k3_stderr"] < true_kl
        assert decide({k: v for k, v in summary.items() if not k.endswith("_skewness")}).verdict == "BLOCK"
    assert passed / sims <= 0.05 + _mc_slack(0.95, sims)
    assert normal_passed / sims > 0.05 + _mc_slack(0.95, sims)


@pytest.mark.parametrize("n", [6, 12, 16])
def test_kl_lower_bound_still_covers_for_right_and_left_skewed_values(n):
    """The low side (a rule `min` on a skew-aware metric) is the high side of the negated values: it
    must cover for right-skewed values (where the normal lower bound already did) and for left-skewed
    ones (k1 can be negative; a left-skewed metric opting in has the long tail on this side)."""
    rng = np.random.default_rng(100 + n)
    sims, confidence = 1500, 0.95
    right = rng.gamma(1.0, 1.0, (sims, n))
    assert np.mean(_kl_bounds(right, "low", confidence) <= 1.0) >= confidence - _mc_slack(confidence, sims)
    left = 5.0 - rng.gamma(0.5, 2.0, (sims, n))
    assert np.mean(_kl_bounds(left, "low", confidence) <= 4.0) >= confidence - _mc_slack(confidence, sims)


def test_a_no_change_cell_has_a_kl_upper_bound_of_zero_and_passes_a_kl_ceiling():
    summary = KLEstimate(seq_k1=[0.0] * 8, seq_k3=[0.0] * 8, n_tokens=80).summary()
    assert summary["kl/seq_kl_k3_skewness"] == 0.0 and summary["kl/seq_kl_k3_stderr"] == 0.0
    for confidence in (0.5, 0.95, 0.9875, 0.999):
        assert confidence_limit("kl/seq_kl_k3", "high", confidence, summary) == 0.0
    check = gate(summary, {"reference": {}}, [GateRule(metric="kl/seq_kl_k3", max=20)], specs=SPECS).checks[0]
    assert check.passed and check.confidence_bound == 0.0


def test_the_skew_aware_bound_fails_closed_and_leaves_other_metrics_alone():
    base = {"kl/seq_kl_k3": 2.0, "kl/seq_kl_k3_stderr": 0.5, "kl/n_samples": 16.0}
    z95 = 1.6448536269514722
    # KL is declared skewed: no skewness recorded, no bound (never the narrower normal one)
    assert confidence_limit("kl/seq_kl_k3", "high", 0.95, base) is None
    # a metric neither declared skewed nor recording a skewness keeps the normal bound, exactly
    gap = {"winrate/raw_minus_lc_pct": 2.0, "winrate/raw_minus_lc_pct_stderr": 0.5}
    assert confidence_limit("winrate/raw_minus_lc_pct", "high", 0.95, gap) == pytest.approx(2.0 + z95 * 0.5, rel=1e-12)
    # recorded but not finite, or the count missing: no bound, and the ceiling fails
    for bad in (math.nan, math.inf):
        assert confidence_limit("kl/seq_kl_k3", "high", 0.95, base | {"kl/seq_kl_k3_skewness": bad}) is None
    no_n = {k: v for k, v in base.items() if k != "kl/n_samples"} | {"kl/seq_kl_k3_skewness": 1.0}
    assert confidence_limit("kl/seq_kl_k3", "high", 0.95, no_n) is None
    check = gate(base | {"kl/seq_kl_k3_skewness": math.nan}, {"reference": {}},
                 [GateRule(metric="kl/seq_kl_k3", max=1000)], specs=SPECS).checks[0]
    assert not check.passed and "skewed and bounded by its skewness, which is nan from 16 samples" in check.reason


def test_the_skew_aware_bound_widens_with_skewness_and_mirrors_for_the_low_side():
    """Never narrower than the normal bound, non-decreasing in the skewness (Hall's cubic alone would
    pull the quantile back toward zero for large skewness), and low(x) = -high(-x)."""
    z = 2.2414027276049446  # 98.75%
    for n in (6, 16, 64):
        highs = []
        for skewness in np.linspace(-10, 20, 61):
            summary = {"kl/seq_kl_k3": 3.0, "kl/seq_kl_k3_stderr": 0.4, "kl/seq_kl_k3_skewness": float(skewness),
                       "kl/n_samples": float(n)}
            high = confidence_limit("kl/seq_kl_k3", "high", 0.9875, summary)
            mirrored = {**summary, "kl/seq_kl_k3": -3.0, "kl/seq_kl_k3_skewness": -float(skewness)}
            assert confidence_limit("kl/seq_kl_k3", "low", 0.9875, mirrored) == pytest.approx(-high, rel=1e-12)
            highs.append(high)
        assert min(highs) >= 3.0 + z * 0.4 - 1e-12
        assert all(b >= a - 1e-12 for a, b in zip(highs, highs[1:]))
        assert highs[-1] > highs[0]


@pytest.mark.parametrize("n", [12, 16, 24, 32])
def test_length_ratio_upper_bound_covers_at_the_shipped_prompt_counts(n):
    """What a length-ratio ceiling reads, at the shipped eval.n_prompts: right-skewed (lognormal) lengths,
    policy 1.5x the reference. The delta-method normal bound covered 87-93% here; the length eval now
    records the influence values' skewness and count, and the gate widens the bound by it."""
    from evals.length import length_summary

    rng = np.random.default_rng(200 + n)
    sims, confidence, truth = 1500, 0.95, 1.5  # equal sigma: E[policy] / E[reference] = 90 / 60
    pol = np.exp(rng.normal(math.log(90.0), 0.8, (sims, n)))
    ref = np.exp(rng.normal(math.log(60.0), 0.8, (sims, n)))
    covered = 0
    for p, q in zip(pol, ref):
        summary = length_summary(p.tolist(), q.tolist(), p.tolist(), q.tolist())
        covered += confidence_limit("length/ratio_tokens", "high", confidence, summary) >= truth
    assert covered / sims >= confidence - _mc_slack(confidence, sims)


def test_simulated_domain_accuracy_shift_is_what_the_scenario_plants():
    rng = np.random.default_rng(0)
    deltas = [simulate_cell(Scenario("r", "", "BLOCK", win_shift_pct=0.0, acc_shift=-0.05),
                            Sizes(12, {"domain_x": 400}), rng)[0]["domain_x/acc_delta"] for _ in range(60)]
    assert np.mean(deltas) == pytest.approx(-0.05, abs=0.01)


@pytest.mark.parametrize("path", SINGLE_CELL, ids=lambda p: p.name)
def test_every_shipped_config_blocks_a_no_change_cell_and_holds_its_level_for_equal_quality(path):
    config = load_config(path)
    plan = plan_gate(config, sims=200, effects_pct=[], regressions=[], search_sims=20)
    rates = {s.scenario: s for s in plan.scenarios}
    assert rates["no_change"].promote_rate == 0.0
    level = max(1 - r.confidence for r in config.gate.rules if r.statistic == "bound")
    assert rates["equal_quality"].promote_rate <= level + _mc_slack(level, 200)


def test_an_all_equal_four_cell_sweep_ships_any_cell_at_most_at_the_level():
    config = load_config(EXPERIMENTS / "tiny.yaml")
    plan = plan_gate(config, sims=150, effects_pct=[], regressions=[], family_size=4, search_sims=20)
    assert plan.family_wise_rate is not None and plan.family_wise_rate <= 0.05 + _mc_slack(0.05, 150)


def test_power_grows_with_the_effect_and_a_real_regression_is_blocked():
    config = load_config(EXPERIMENTS / "smollm_dpo.yaml")
    plan = plan_gate(config, sims=120, effects_pct=[10.0, 30.0], regressions=[0.3], search_sims=60)
    rates = {s.scenario: s.promote_rate for s in plan.scenarios}
    lc_pass = {s.scenario: s.rule_pass_rates["lc_beats_reference"] for s in plan.scenarios}
    assert rates["better_30pt"] > rates["better_10pt"] and lc_pass["better_30pt"] > lc_pass["better_10pt"]
    assert lc_pass["better_30pt"] >= 0.8  # 32 prompts show a 30-point win...
    assert 1 - rates["regressed_30pt"] >= 0.8  # ...and a 30-point domain drop is blocked
    assert plan.sizes_for_power["better_10pt"] > plan.sizes_for_power["better_30pt"]


def test_a_point_rule_has_no_stated_level_and_the_plan_says_so():
    config = load_config(EXPERIMENTS / "tiny.yaml")
    config.gate.rules = [GateRule(metric="winrate/lc_win_rate_pct", min=50, statistic="point")]
    plan = plan_gate(config, sims=100, effects_pct=[], regressions=[], search_sims=20)
    rates = {s.scenario: s.promote_rate for s in plan.scenarios}
    assert rates["equal_quality"] > 0.2  # the old semantics: an equal cell ships about half the time
    assert plan.rules[0]["statistic"] == "point" and plan.rules[0]["confidence"] is None


def test_gate_plan_cli_on_the_demo_sweep_states_its_family_wise_rate(capsys):
    import json

    from harness.cli import main

    code = main(["gate", "plan", str(EXPERIMENTS / "quickstart.yaml"), "--json", "--sims", "80", "--effects", "20"])
    payload = json.loads(capsys.readouterr().out)
    assert payload["family_size"] == 4 and payload["cell_level"] == pytest.approx(0.05 / 4)
    assert payload["family_wise_rate"] <= 0.05 + _mc_slack(0.05, 80)
    assert code == (0 if payload["within_level"] else 1) == 0
    scenario = {s["scenario"]: s for s in payload["scenarios"]}
    assert scenario["no_change"]["promote_rate"] == 0.0 and "better_20pt" in scenario


def test_gate_plan_cli_prints_the_table_and_rejects_bad_flags(capsys):
    from harness.cli import main

    assert main(["gate", "plan", str(EXPERIMENTS / "tiny.yaml"), "--sims", "40", "--effects", "20"]) == 0
    out = capsys.readouterr().out
    assert "equal_quality" in out and "P(promote)" in out
    # every tiny.yaml rule is simulated, KL and the length ratio included, on stated assumptions
    assert "not simulated" not in out and "kl_mean_nats" in "".join(out.split())
    assert main(["gate", "plan", str(EXPERIMENTS / "tiny.yaml"), "--sims", "20", "--effects", "20", "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["not_simulated"] == [] and {"kl_budget", "length_ratio_cap"} <= {
        r["name"] for r in payload["rules"] if r["simulated"]}
    assert payload["assumptions"]["kl_mean_nats"] > 0 and payload["assumptions"]["chars_per_token"] > 0
    assert main(["gate", "plan", str(EXPERIMENTS / "tiny.yaml"), "--effects", "ten"]) == 2
    assert main(["gate", "plan", "no-such.yaml"]) == 2
