"""The pieces of iterative training that need no model: ranking by a judge, rules against the start."""
import pytest

from harness.config import GateRule
from harness.data.rounds import rank_by_judge
from harness.gate import rules_vs_start
from harness.iterative import round_hooks


class LongerWins:
    """A judge that prefers the longer answer, in either order (preference 1: first wins, 2: second)."""
    name = "longer_wins"

    def judge(self, items):
        return [1.0 if len(i.output_1) > len(i.output_2) else 2.0 if len(i.output_2) > len(i.output_1) else 1.5
                for i in items]


def test_round_robin_ranks_best_against_worst_and_counts_ties():
    prompts = [("p1", None), ("p2", None), ("p3", None)]
    candidates = [["aa", "aaaa", "a"], ["same", "same", "same"], ["bb", "b", "bbb"]]
    pairs, dropped = rank_by_judge(prompts, candidates, LongerWins())
    assert pairs == [{"prompt": "p1", "chosen": "aaaa", "rejected": "a"},
                     {"prompt": "p3", "chosen": "bbb", "rejected": "b"}]
    assert dropped == {"tie": 1}


def test_rules_vs_start_cover_comparisons_and_regressions():
    rules = [GateRule(name="lc", metric="winrate/lc_win_rate_pct", min=50, strict=True),
             GateRule(name="kl", metric="kl/seq_kl_k3", max=10),
             GateRule(name="arith", metric="domain_arith_mc/acc", max_regression=0.05),
             GateRule(name="len", metric="length/ratio_tokens", max=1.5)]
    extra = {r.label: r for r in rules_vs_start(rules)}
    assert set(extra) == {"lc_vs_start", "kl_vs_start", "arith_vs_start", "len_vs_start"}
    assert extra["len_vs_start"].metric == "length_vs_start/ratio_tokens" and extra["len_vs_start"].max == 1.5
    assert extra["lc_vs_start"].metric == "winrate_vs_start/lc_win_rate_pct" and extra["lc_vs_start"].strict
    assert extra["kl_vs_start"].metric == "kl_vs_start/seq_kl_k3" and extra["kl_vs_start"].max == 10
    assert extra["arith_vs_start"].against == "start" and extra["arith_vs_start"].metric == "domain_arith_mc/acc"


def test_a_start_regression_blocks_even_when_the_previous_round_was_fine():
    from evals.catalog import known_metrics
    from harness.gate import gate

    rules = [GateRule(name="arith", metric="domain_arith_mc/acc", max_regression=0.05)]
    rules += rules_vs_start(rules)
    # each round dropped 0.04 (shown within 0.05), two rounds dropped 0.08 from the start (not allowed)
    summary = {"domain_arith_mc/acc": 0.52,
               "domain_arith_mc/acc_delta": -0.04, "domain_arith_mc/acc_delta_stderr": 0.004,
               "domain_arith_mc/acc_delta_vs_start": -0.08, "domain_arith_mc/acc_delta_vs_start_stderr": 0.004}
    decision = gate(summary, {"reference": {"domain_arith_mc/acc": 0.56}, "start": {"domain_arith_mc/acc": 0.60}},
                    rules, specs=known_metrics())
    assert decision.verdict == "BLOCK"
    assert [c.name for c in decision.failed] == ["arith_vs_start"]


def test_the_start_rule_reads_the_paired_drop_against_the_start_not_against_the_last_round():
    from evals.catalog import known_metrics
    from harness.gate import gate

    rules = [GateRule(name="arith", metric="domain_arith_mc/acc", max_regression=0.10)]
    rules += rules_vs_start(rules)
    summary = {"domain_arith_mc/acc": 0.52,
               "domain_arith_mc/acc_delta": -0.04, "domain_arith_mc/acc_delta_stderr": 0.02,   # vs round k-1
               "domain_arith_mc/acc_delta_vs_start": -0.08, "domain_arith_mc/acc_delta_vs_start_stderr": 0.02}
    baselines = {"reference": {"domain_arith_mc/acc": 0.56}, "start": {"domain_arith_mc/acc": 0.60}}
    decision = gate(summary, baselines, rules, specs=known_metrics())
    # vs the start: 0.08 + 1.645 * 0.02 = 0.113 >= 0.10; vs round k-1: 0.073 < 0.10
    assert [c.name for c in decision.failed] == ["arith_vs_start"]
    assert decision.failed[0].confidence_bound == pytest.approx(0.08 + 1.6449 * 0.02, abs=1e-3)


def test_round_hooks_select_their_round():
    f, g = object(), object()
    hooks = {"gate": f, "round2:eval:kl": g}
    assert round_hooks(hooks, 1) == {"gate": f}
    assert round_hooks(hooks, 2) == {"gate": f, "eval:kl": g}


def _fake_round(index, verdict, lc, first_failure=None):
    from types import SimpleNamespace

    result = SimpleNamespace(run_id=f"run{index}", verdict=verdict, report="",
                             metrics={"winrate/lc_win_rate_pct": lc, "kl/seq_kl_k3": 0.1 * index},
                             decision=SimpleNamespace(first_failure=first_failure))
    return SimpleNamespace(index=index, result=result, reference={"round": index - 1}, data={"pairs": 10 + index})


def test_report_says_why_the_loop_ended_and_escapes_it(tmp_path):
    from types import SimpleNamespace

    from reports.iterative import render_iterative_report

    config = SimpleNamespace(name="it", iterations=3)
    early = SimpleNamespace(rounds=[_fake_round(1, "PROMOTE", 55.0)], cell="c", run_id="p", verdict="PROMOTE",
                            promoted_round=1, stop_reason="round 2 not run: <b>no usable pairs</b> (tie: 48)")
    html = render_iterative_report(early, config, tmp_path / "a.html").read_text()
    assert "Ended after 1 of 3 rounds" in html and "&lt;b&gt;no usable pairs" in html and "<b>no usable" not in html
    blocked = SimpleNamespace(rounds=[_fake_round(1, "PROMOTE", 55.0), _fake_round(2, "BLOCK", 41.0, "lc: 41 < 50")],
                              cell="c", run_id="p", verdict="BLOCK", promoted_round=1, stop_reason="round 2 blocked")
    html = render_iterative_report(blocked, config, tmp_path / "b.html").read_text()
    assert "Stopped at round 2" in html and "lc: 41 &lt; 50" in html and "nothing past round 1 was promoted" in html


def test_a_sweep_refuses_iterative_cells():
    import pytest

    from harness.errors import ConfigError
    from harness.sweep import load_sweep
    from tests.conftest import REPO

    with pytest.raises(ConfigError, match="iterations > 1 runs through `harness run`"):
        load_sweep(REPO / "experiments" / "tiny_sweep.yaml", ["iterations=2"])


def test_an_unknown_builtin_pool_is_a_config_error():
    import pytest

    from harness.config import validate_config
    from harness.errors import ConfigError

    with pytest.raises(ConfigError) as info:
        validate_config({"model": {"name": "embedded:tiny"}, "variant": "dpo", "iterations": 2,
                         "iteration": {"prompt_pool": "builtin:verifyable"}})
    assert "unknown built-in pool 'builtin:verifyable'" in str(info.value) + str(getattr(info.value, "problems", ""))


def test_a_regression_against_the_champion_is_kept_against_the_start_in_later_rounds():
    """Round 2 with a champion from round 1: `max_regression against: champion` on the LC win rate reads the
    head-to-head; its vs-start copy is a floor at 50 minus the margin on the win rate over the start (the
    start sits at 50), not a comparison with the champion's `winrate_vs_start` values (it has none)."""
    from evals.catalog import known_metrics
    from harness.gate import REGISTERED_VERSION, gate
    from harness.recording import start_values

    rules = [GateRule(name="lc_vs_champ", metric="winrate/lc_win_rate_pct", max_regression=5, against="champion")]
    rules += rules_vs_start(rules)
    assert rules[1].against == "start" and rules[1].metric == "winrate_vs_start/lc_win_rate_pct"
    summary = {"winrate_vs_champion/lc_win_rate_pct": 55.0, "winrate_vs_champion/lc_win_rate_pct_stderr": 2.0,
               "winrate_vs_champion/champion_version": 1.0,
               "winrate_vs_start/lc_win_rate_pct": 52.0, "winrate_vs_start/lc_win_rate_pct_stderr": 2.0}
    baselines = {"reference": {}, "start": start_values(summary, {}),
                 "champion": {REGISTERED_VERSION: 1.0, "winrate/lc_win_rate_pct": 60.0}}
    decision = gate(summary, baselines, rules, specs=known_metrics())
    assert decision.verdict == "PROMOTE", decision.first_failure
    start_check = decision.checks[1]
    assert start_check.baseline == 50.0 and start_check.bound == 45.0
    # a drift past the margin from the start blocks, whatever the champion says
    worse = summary | {"winrate_vs_start/lc_win_rate_pct": 44.0}
    assert [c.name for c in gate(worse, baselines, rules, specs=known_metrics()).failed] == ["lc_vs_champ_vs_start"]
