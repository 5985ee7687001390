import math

import pytest

from evals.catalog import known_metrics
from harness.config import GateRule
from harness.gate import BLOCK, PROMOTE, gate

SPECS = known_metrics()
REF = {"winrate/lc_win_rate_pct": 50.0, "kl/seq_kl_k3": 0.0, "domain_arith_mc/acc": 0.60, "length/ratio_tokens": 1.0}


def decide(summary, *rules, baselines=None, errors=None, **kw):
    baselines = {"reference": REF, "champion": None} if baselines is None else baselines
    return gate(summary, baselines, [GateRule(**r) for r in rules], specs=SPECS, errors=errors or {}, **kw)


@pytest.mark.parametrize("rule, value, verdict", [
    ({"metric": "winrate/lc_win_rate_pct", "min": 50}, 55.0, PROMOTE),
    ({"metric": "winrate/lc_win_rate_pct", "min": 50}, 49.9, BLOCK),
    ({"metric": "kl/seq_kl_k3", "max": 5}, 4.0, PROMOTE),
    ({"metric": "kl/seq_kl_k3", "max": 5}, 5.1, BLOCK),
    # higher is better: may drop by at most 0.05
    ({"metric": "domain_arith_mc/acc", "max_regression": 0.05}, 0.56, PROMOTE),
    ({"metric": "domain_arith_mc/acc", "max_regression": 0.05}, 0.54, BLOCK),
    # relative: 10% of 0.60 = 0.06
    ({"metric": "domain_arith_mc/acc", "max_regression": 0.1, "relative": True}, 0.545, PROMOTE),
    ({"metric": "domain_arith_mc/acc", "max_regression": 0.1, "relative": True}, 0.53, BLOCK),
    # lower is better: may rise by at most 1 nat
    ({"metric": "kl/seq_kl_k3", "max_regression": 1.0}, 0.9, PROMOTE),
    ({"metric": "kl/seq_kl_k3", "max_regression": 1.0}, 1.1, BLOCK),
    # relative change on a zero baseline allows no change at all
    ({"metric": "kl/seq_kl_k3", "max_regression": 0.5, "relative": True}, 0.01, BLOCK),
    ({"metric": "kl/seq_kl_k3", "max_regression": 0.5, "relative": True}, 0.0, PROMOTE),
    ({"metric": "winrate/lc_win_rate_pct", "min": 50}, 50.0, PROMOTE),
    ({"metric": "winrate/lc_win_rate_pct", "min": 50, "strict": True}, 50.0, BLOCK),
    ({"metric": "kl/seq_kl_k3", "max": 5, "strict": True}, 5.0, BLOCK),
    ({"metric": "winrate/lc_win_rate_pct", "min": 50}, math.nan, BLOCK),
    ({"metric": "winrate/lc_win_rate_pct", "min": 50}, math.inf, BLOCK),
])
def test_rule_table(rule, value, verdict):
    assert decide({rule["metric"]: value}, rule).verdict == verdict


def test_confidence_bound_statistic_reads_the_interval_not_the_point():
    rule = {"metric": "winrate/lc_win_rate_pct", "min": 50, "statistic": "ci_low"}
    summary = {"winrate/lc_win_rate_pct": 58.0, "winrate/lc_win_rate_pct_ci_low": 47.0}
    decision = decide(summary, rule)
    assert decision.verdict == BLOCK and decision.checks[0].value == 47.0


def test_missing_metric_blocks():
    decision = decide({}, {"metric": "kl/seq_kl_k3", "max": 5})
    assert decision.verdict == BLOCK and "missing" in decision.checks[0].reason


def test_missing_baseline_blocks():
    decision = decide({"domain_arith_mc/acc": 0.9}, {"metric": "domain_arith_mc/acc", "max_regression": 0.1,
                                                      "against": "champion"})
    assert decision.verdict == BLOCK and "champion" in decision.checks[0].reason


def test_crashed_eval_blocks_even_when_no_rule_reads_it():
    decision = decide({"kl/seq_kl_k3": 0.1}, {"metric": "kl/seq_kl_k3", "max": 5},
                      errors={"domain": "RuntimeError: boom"})
    assert decision.verdict == BLOCK
    assert any("boom" in c.reason for c in decision.failed)


def test_crashed_eval_fails_the_rule_that_reads_it():
    decision = decide({"kl/seq_kl_k3": 0.1}, {"metric": "kl/seq_kl_k3", "max": 5}, errors={"kl": "ValueError: nan"})
    assert decision.verdict == BLOCK and "eval 'kl' failed" in decision.checks[0].reason


def test_no_rules_cannot_promote_unless_allowed():
    assert decide({}).verdict == BLOCK
    assert decide({}, allow_promote_without_rules=True).verdict == PROMOTE


def test_optional_rule_failure_does_not_block():
    decision = decide({"kl/seq_kl_k3": 9.0}, {"metric": "kl/seq_kl_k3", "max": 5, "required": False})
    assert decision.verdict == PROMOTE and len(decision.failed) == 1


def test_direction_comes_from_the_metric_declaration():
    # the same max_regression rule means "may drop" for accuracy and "may rise" for KL
    assert SPECS["domain_arith_mc/acc"].higher_is_better is True
    assert SPECS["kl/seq_kl_k3"].higher_is_better is False


def test_noise_aware_domain_rule_blocks_only_a_significant_regression():
    rule = {"metric": "domain_arith_mc/acc", "max_regression": 0.05, "significance": 0.05}
    noisy = {"domain_arith_mc/acc": 0.50, "domain_arith_mc/acc_delta_pvalue": 0.40}
    real = {"domain_arith_mc/acc": 0.50, "domain_arith_mc/acc_delta_pvalue": 0.01}
    untested = {"domain_arith_mc/acc": 0.50}
    assert decide(noisy, rule).verdict == PROMOTE
    assert decide(real, rule).verdict == BLOCK
    assert decide(untested, rule).verdict == BLOCK  # no test to clear it: fail closed


def test_default_rules_cover_the_seed_failure_modes_and_a_no_change_cell_is_blocked():
    from harness.gate import default_rules

    rules = default_rules(["harness_arith_mc"])
    assert {r.metric for r in rules} >= {"winrate/lc_win_rate_pct", "kl/seq_kl_k3", "length/ratio_tokens",
                                         "winrate/raw_minus_lc_pct", "chosen_logp/chosen_delta", "domain_arith_mc/acc"}
    no_change = {"winrate/lc_win_rate_pct": 50.0, "winrate/lc_win_rate_pct_ci_low": 50.0, "kl/seq_kl_k3": 0.0,
                 "length/ratio_tokens": 1.0, "winrate/raw_minus_lc_pct": 0.0, "chosen_logp/chosen_delta": 0.0,
                 "domain_arith_mc/acc": 0.6, "domain_arith_mc/acc_delta_pvalue": 1.0}
    decision = gate(no_change, {"reference": REF}, rules, specs=SPECS)
    assert decision.verdict == BLOCK and [c.name for c in decision.failed] == ["lc_win_rate_beats_reference"]
