"""The gate's rule semantics, each case computed by hand. Statistical validity (error rates by
simulation) lives in test_gate_validity.py."""
import math
from statistics import NormalDist

import pytest

from evals.catalog import known_metrics
from harness.config import ConfigError, GateRule, validate_config
from harness.gate import BLOCK, PROMOTE, gate

SPECS = known_metrics()
REF = {"winrate/lc_win_rate_pct": 50.0, "kl/seq_kl_k3": 0.0, "domain_arith_mc/acc": 0.60, "length/ratio_tokens": 1.0}
Z95 = NormalDist().inv_cdf(0.95)


def decide(summary, *rules, baselines=None, errors=None, **kw):
    baselines = {"reference": REF, "champion": None} if baselines is None else baselines
    return gate(summary, baselines, [GateRule(**r) for r in rules], specs=SPECS, errors=errors or {}, **kw)


@pytest.mark.parametrize("rule, value, verdict", [
    ({"metric": "winrate/lc_win_rate_pct", "min": 50}, 55.0, PROMOTE),
    ({"metric": "winrate/lc_win_rate_pct", "min": 50}, 49.9, BLOCK),
    ({"metric": "kl/seq_kl_k3", "max": 5}, 4.0, PROMOTE),
    ({"metric": "kl/seq_kl_k3", "max": 5}, 5.1, BLOCK),
    ({"metric": "domain_arith_mc/acc", "max_regression": 0.05}, 0.56, PROMOTE),
    ({"metric": "domain_arith_mc/acc", "max_regression": 0.05}, 0.54, BLOCK),
    ({"metric": "domain_arith_mc/acc", "max_regression": 0.1, "relative": True}, 0.545, PROMOTE),
    ({"metric": "domain_arith_mc/acc", "max_regression": 0.1, "relative": True}, 0.53, BLOCK),
    ({"metric": "kl/seq_kl_k3", "max_regression": 1.0}, 0.9, PROMOTE),
    ({"metric": "kl/seq_kl_k3", "max_regression": 1.0}, 1.1, BLOCK),
    ({"metric": "kl/seq_kl_k3", "max_regression": 0.5, "relative": True}, 0.01, BLOCK),
    ({"metric": "kl/seq_kl_k3", "max_regression": 0.5, "relative": True}, 0.0, PROMOTE),
    ({"metric": "winrate/lc_win_rate_pct", "min": 50}, 50.0, PROMOTE),
    ({"metric": "winrate/lc_win_rate_pct", "min": 50, "strict": True}, 50.0, BLOCK),
    ({"metric": "kl/seq_kl_k3", "max": 5, "strict": True}, 5.0, BLOCK),
    ({"metric": "winrate/lc_win_rate_pct", "min": 50}, math.nan, BLOCK),
    ({"metric": "winrate/lc_win_rate_pct", "min": 50}, math.inf, BLOCK),
])
def test_point_rules_compare_the_estimate_and_say_so(rule, value, verdict):
    decision = decide({rule["metric"]: value}, rule | {"statistic": "point"})
    assert decision.verdict == verdict
    assert decision.checks[0].point_estimate_only and decision.to_dict()["checks"][0]["point_estimate_only"]


def test_a_floor_compares_the_one_sided_lower_bound():
    rule = {"metric": "winrate/lc_win_rate_pct", "min": 50}
    # 58 +- 1.645 * 5 = 49.8: the estimate clears 50, the bound does not
    decision = decide({"winrate/lc_win_rate_pct": 58.0, "winrate/lc_win_rate_pct_stderr": 5.0}, rule)
    check = decision.checks[0]
    assert decision.verdict == BLOCK and check.confidence_bound == pytest.approx(58 - Z95 * 5)
    assert check.confidence == 0.95 and check.value == 58.0 and check.bound == 50
    assert decide({"winrate/lc_win_rate_pct": 58.0, "winrate/lc_win_rate_pct_stderr": 4.0}, rule).verdict == PROMOTE
    # at 99% the same 4-point error no longer shows it: 58 - 2.326 * 4 = 48.7
    assert decide({"winrate/lc_win_rate_pct": 58.0, "winrate/lc_win_rate_pct_stderr": 4.0},
                  rule | {"confidence": 0.99}).verdict == BLOCK


def test_a_no_change_cell_sits_on_the_threshold_and_shows_nothing():
    # identical outputs: win rate exactly 50 with no spread; a bound that only touches 50 shows no win
    decision = decide({"winrate/lc_win_rate_pct": 50.0, "winrate/lc_win_rate_pct_stderr": 0.0},
                      {"metric": "winrate/lc_win_rate_pct", "min": 50})
    assert decision.verdict == BLOCK and "<= min 50" in decision.checks[0].reason


def test_a_ceiling_compares_the_upper_bound():
    rule = {"metric": "winrate/raw_minus_lc_pct", "max": 5}
    assert decide({"winrate/raw_minus_lc_pct": 4.0, "winrate/raw_minus_lc_pct_stderr": 0.5}, rule).verdict == PROMOTE  # 4.82 < 5
    assert decide({"winrate/raw_minus_lc_pct": 4.0, "winrate/raw_minus_lc_pct_stderr": 0.7}, rule).verdict == BLOCK  # 5.15 >= 5
    # KL is declared skewed: its bound needs the skewness, and without one there is no bound (not the normal one)
    assert decide({"kl/seq_kl_k3": 4.0, "kl/seq_kl_k3_stderr": 0.5}, {"metric": "kl/seq_kl_k3", "max": 5}).verdict == BLOCK


def test_a_recorded_95_interval_serves_a_one_sided_bound_up_to_97_5_percent_only():
    rule = {"metric": "judge/agreement_pct", "min": 60}
    summary = {"judge/agreement_pct": 70.0, "judge/agreement_pct_ci_low": 61.0}
    assert decide(summary, rule).verdict == PROMOTE
    decision = decide(summary, rule | {"confidence": 0.99})
    assert decision.verdict == BLOCK and "no standard error or interval" in decision.checks[0].reason


def test_a_floor_without_any_interval_fails_closed():
    decision = decide({"winrate/lc_win_rate_pct": 90.0}, {"metric": "winrate/lc_win_rate_pct", "min": 50})
    assert decision.verdict == BLOCK and "statistic: point" in decision.checks[0].reason


def test_non_inferiority_reads_the_paired_drop_and_its_error():
    rule = {"metric": "domain_arith_mc/acc", "max_regression": 0.10}
    # drop 0.02 +- 1.645 * 0.03 = 0.069 < 0.10: shown non-inferior
    ok = {"domain_arith_mc/acc": 0.58, "domain_arith_mc/acc_delta": -0.02, "domain_arith_mc/acc_delta_stderr": 0.03}
    check = decide(ok, rule).checks[0]
    assert check.passed and check.confidence_bound == pytest.approx(0.02 + Z95 * 0.03) and check.margin == 0.10
    # no observed drop at all, but 30 items cannot show a drop below 10 points: absence of evidence blocks
    unsure = {"domain_arith_mc/acc": 0.60, "domain_arith_mc/acc_delta": 0.0, "domain_arith_mc/acc_delta_stderr": 0.07}
    decision = decide(unsure, rule)
    assert decision.verdict == BLOCK and "upper bound" in decision.checks[0].reason
    # no paired error recorded and a measured (champion) baseline without one: fail closed
    bare = decide({"domain_arith_mc/acc": 0.60}, rule | {"against": "champion"},
                  baselines={"reference": REF, "champion": {"domain_arith_mc/acc": 0.6}})
    assert bare.verdict == BLOCK


def test_a_failed_floor_is_never_cleared_by_another_part_of_the_same_rule():
    # issue 16.1: acc 0.30 with min 0.5, reference 0.60: the regression part cannot rescue the floor
    rule = {"metric": "domain_arith_mc/acc", "min": 0.5, "max_regression": 0.5, "statistic": "point"}
    decision = decide({"domain_arith_mc/acc": 0.30, "domain_arith_mc/acc_delta": -0.3}, rule)
    assert decision.verdict == BLOCK and "min 0.5" in decision.checks[0].reason


def test_significance_is_gone_with_the_new_spelling_named():
    with pytest.raises(ConfigError, match="confidence: 0.95"):
        validate_config({"model": {"name": "embedded:tiny"}, "variant": "dpo", "gate": {"rules": [
            {"metric": "domain_arith_mc/acc", "max_regression": 0.1, "significance": 0.05}]}})


@pytest.mark.parametrize("field, value", [
    ("gate.rules.0.max", float("nan")), ("gate.rules.0.max", float("inf")), ("beta", float("nan")),
    ("training.learning_rate", float("inf")), ("variant_params.label_smoothing", float("nan")),
])
def test_every_float_in_the_config_is_finite(field, value):
    raw = {"model": {"name": "embedded:tiny"}, "variant": "dpo", "gate": {"rules": [{"metric": "kl/seq_kl_k3", "max": 5}]}}
    node = raw
    *parents, leaf = field.split(".")
    for part in parents:
        node = node.setdefault(part, {}) if not part.isdigit() else node[int(part)]
    node[leaf] = value
    with pytest.raises(ConfigError) as info:
        validate_config(raw)
    assert field.split(".")[-1] in str(info.value)


def test_rpo_alpha_must_be_finite():
    with pytest.raises(ConfigError, match="alpha"):
        validate_config({"model": {"name": "embedded:tiny"}, "variant": "rpo", "variant_params": {"alpha": float("nan")}})


def test_learning_rate_zero_is_a_valid_no_change_setting():
    config = validate_config({"model": {"name": "embedded:tiny"}, "variant": "dpo", "training": {"learning_rate": 0}})
    assert config.training.learning_rate == 0


def test_missing_metric_blocks():
    decision = decide({}, {"metric": "kl/seq_kl_k3", "max": 5})
    assert decision.verdict == BLOCK and "missing" in decision.checks[0].reason


def test_missing_baseline_blocks():
    decision = decide({"domain_arith_mc/acc": 0.9}, {"metric": "domain_arith_mc/acc", "max_regression": 0.1,
                                                      "against": "champion"})
    assert decision.verdict == BLOCK and "champion" in decision.checks[0].reason


def test_crashed_eval_blocks_even_when_no_rule_reads_it():
    decision = decide({"kl/seq_kl_k3": 0.1, "kl/seq_kl_k3_stderr": 0.0}, {"metric": "kl/seq_kl_k3", "max": 5},
                      errors={"domain": "RuntimeError: boom"})
    assert decision.verdict == BLOCK
    assert any("boom" in c.reason for c in decision.failed)


def test_a_crash_read_by_an_optional_rule_still_blocks():
    # issue 16.2: [lc min 50, {kl max 10, required: false}] with the KL eval raising used to PROMOTE
    summary = {"winrate/lc_win_rate_pct": 70.0, "winrate/lc_win_rate_pct_stderr": 2.0}
    decision = decide(summary, {"metric": "winrate/lc_win_rate_pct", "min": 50},
                      {"metric": "kl/seq_kl_k3", "max": 10, "required": False}, errors={"kl": "RuntimeError: boom"})
    assert decision.verdict == BLOCK
    assert [c.name for c in decision.failed if c.required] == ["kl_ran"]


def test_crashed_eval_fails_the_rule_that_reads_it():
    decision = decide({"kl/seq_kl_k3": 0.1}, {"metric": "kl/seq_kl_k3", "max": 5}, errors={"kl": "ValueError: nan"})
    assert decision.verdict == BLOCK and "eval 'kl' failed" in decision.checks[0].reason


def test_no_rules_cannot_promote_unless_allowed():
    assert decide({}).verdict == BLOCK
    assert decide({}, allow_promote_without_rules=True).verdict == PROMOTE


def test_optional_rule_failure_does_not_block():
    decision = decide({"kl/seq_kl_k3": 9.0, "kl/seq_kl_k3_stderr": 0.1},
                      {"metric": "kl/seq_kl_k3", "max": 5, "required": False})
    assert decision.verdict == PROMOTE and len(decision.failed) == 1


def test_a_sweep_shares_alpha_across_its_cells():
    rule = {"metric": "winrate/lc_win_rate_pct", "min": 50}
    summary = {"winrate/lc_win_rate_pct": 56.0, "winrate/lc_win_rate_pct_stderr": 3.0}  # z = 2.0
    assert decide(summary, rule).verdict == PROMOTE  # one cell: 1.645
    four = decide(summary, rule, family_size=4)  # 1 - 0.05/4 = 98.75%: z = 2.24
    assert four.verdict == BLOCK and four.checks[0].confidence == pytest.approx(0.9875)


def test_direction_comes_from_the_metric_declaration():
    assert SPECS["domain_arith_mc/acc"].higher_is_better is True
    assert SPECS["kl/seq_kl_k3"].higher_is_better is False


def test_default_rules_cover_the_seed_failure_modes_and_a_no_change_cell_is_blocked():
    from harness.gate import default_rules

    rules = default_rules(["harness_arith_mc"])
    assert {r.metric for r in rules} >= {"winrate/lc_win_rate_pct", "kl/seq_kl_k3", "length/ratio_tokens",
                                         "winrate/raw_minus_lc_pct", "chosen_logp/chosen_delta", "domain_arith_mc/acc"}
    zero = 0.0
    # as the evals record it: KL and the length ratio with their skewness and counts (their bounds are skew-aware)
    no_change = {"winrate/lc_win_rate_pct": 50.0, "winrate/lc_win_rate_pct_stderr": zero, "kl/seq_kl_k3": 0.0,
                 "kl/seq_kl_k3_stderr": zero, "kl/seq_kl_k3_skewness": 0.0, "kl/n_samples": 8.0,
                 "length/ratio_tokens": 1.0, "length/ratio_tokens_stderr": zero, "length/ratio_tokens_skewness": 0.0,
                 "length/ratio_tokens_n": 16.0,
                 "winrate/raw_minus_lc_pct": 0.0, "winrate/raw_minus_lc_pct_stderr": zero,
                 "chosen_logp/chosen_delta": 0.0, "chosen_logp/chosen_delta_stderr": zero,
                 "domain_arith_mc/acc": 0.6, "domain_arith_mc/acc_delta": 0.0, "domain_arith_mc/acc_delta_stderr": 0.02}
    decision = gate(no_change, {"reference": REF}, rules, specs=SPECS)
    assert decision.verdict == BLOCK and [c.name for c in decision.failed] == ["lc_win_rate_beats_reference"]
