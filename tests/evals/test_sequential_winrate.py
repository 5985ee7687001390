"""eval.sequential through the win-rate eval itself (evals.pairwise.sequential_winrate): simulated cells of
known truth judged batch by batch, decided by the gate on what the eval recorded. The error rate must hold
under the optional stopping the eval does (it looks after every batch), which is what the fixed-n bound
read after stopping would not give (docs/sequential.md)."""
from __future__ import annotations

import hashlib
import math
from types import SimpleNamespace

import numpy as np
import pytest

from evals.catalog import known_metrics
from evals.generation import Completion
from evals.pairwise import winrate_vs_reference
from harness.config import GateRule, SequentialConfig
from harness.gate import PROMOTE, confidence_limit, gate, sequential_targets


class CoinJudge:
    """Prefers the policy's answer (the one ending in '~') with probability `p_policy`, consistently in
    both orders (each prompt's outcome is fixed by a hash of its text): a judge with no position bias
    and a known true win rate, 100 * p_policy."""

    name, fingerprint = "coin", "coin:test"

    def __init__(self, p_policy: float, salt: str):
        self.p, self.salt = p_policy, salt

    def judge(self, items):
        out = []
        for i in items:
            u = int(hashlib.sha256(f"{self.salt}|{i.prompt}".encode()).hexdigest()[:12], 16) / 16 ** 12
            policy_first = i.output_1.endswith("~")
            policy_wins = u < self.p
            out.append(1.0 if policy_wins == policy_first else 2.0)
        return out


def _cell(n: int, p_policy: float, seed: int, *, batch: int = 8, max_prompts: int | None = None):
    """A context with n prompts whose answers' lengths straddle (so LC is identified) and carry no
    information: the judge alone decides."""
    rng = np.random.default_rng(seed)
    prompts = [SimpleNamespace(text=f"prompt {seed} {k}") for k in range(n)]
    ref = [Completion(p.text, "r" * int(rng.integers(20, 60)), []) for p in prompts]
    pol = [Completion(p.text, "p" * int(rng.integers(20, 60)) + "~", []) for p in prompts]
    e = SimpleNamespace(judge=CoinJudge(p_policy, str(seed)), n_bootstrap=0, verbosity_gap_pct=10.0,
                        max_truncated_pct=100.0, sequential=SequentialConfig(batch_prompts=batch, max_prompts=max_prompts))
    return SimpleNamespace(eval=e, config=SimpleNamespace(seed=seed, eval=e), prompts=prompts, policy_out=pol,
                           reference_out=ref, baseline_out=None, cache_dir=None, sequential_targets={})


RULES = [GateRule(name="raw_beats_reference", metric="winrate/win_rate_pct", min=50.0),
         GateRule(name="lc_beats_reference", metric="winrate/lc_win_rate_pct", min=50.0)]


def _run(ctx, rules=RULES, family_size: int = 1):
    ctx.sequential_targets = sequential_targets(rules, known_metrics(), family_size)
    out = winrate_vs_reference(ctx)  # the registered eval: sequential because eval.sequential is set
    decision = gate(out.metrics, {"reference": {"winrate/win_rate_pct": 50.0, "winrate/lc_win_rate_pct": 50.0}},
                    rules, specs=known_metrics(), family_size=family_size)
    return out, decision


def test_equal_quality_cells_promote_at_most_at_the_level_under_optional_stopping():
    """300 equal-quality cells (true win rate 50), 64 prompts judged 8 at a time (8 looks), both rules
    read at every look: the share promoted stays within 5% plus three Monte-Carlo errors."""
    sims = 300
    promoted = sum(_run(_cell(64, 0.5, seed))[1].verdict == PROMOTE for seed in range(sims))
    rate = promoted / sims
    assert rate <= 0.05 + 3 * math.sqrt(0.05 * 0.95 / sims), rate


def test_a_clear_win_stops_early_and_says_so():
    """True win rate 85%: both rules are shown after a few batches; the eval records the stop, the judge
    calls used and the anytime bounds, and the gate reads those bounds (never the fixed-n stderr)."""
    out, decision = _run(_cell(96, 0.85, 1))
    m = out.metrics
    assert decision.verdict == PROMOTE
    assert m["winrate/sequential_stopped_early"] == 1.0
    assert m["winrate/sequential_prompts_used"] < 96 and m["winrate/sequential_prompts_used"] % 8 == 0
    assert m["winrate/sequential_judge_calls"] == 2 * m["winrate/sequential_prompts_used"]
    assert m["winrate/n"] == m["winrate/sequential_prompts_used"]
    assert confidence_limit("winrate/win_rate_pct", "low", 0.95, m) == m["winrate/win_rate_pct_anytime_low"]
    # the anytime bound is wider than the fixed-n bound read at the same n: that width is the price of looking
    fixed = m["winrate/win_rate_pct"] - 1.6449 * m["winrate/win_rate_pct_stderr"]
    assert m["winrate/win_rate_pct_anytime_low"] < fixed
    trail = out.extras["sequential"]["winrate"]
    assert [look["n"] for look in trail[0]["looks"]] == list(range(8, int(m["winrate/sequential_prompts_used"]) + 1, 8))


def test_a_clear_loss_stops_early_as_a_block():
    out, decision = _run(_cell(96, 0.15, 2))
    assert decision.verdict != PROMOTE
    assert out.metrics["winrate/sequential_stopped_early"] == 1.0
    raw = decision.checks[0]
    assert not raw.passed and "anytime-valid" in raw.reason and raw.confidence_bound <= 50


def test_undecided_at_the_budget_is_a_block_that_used_the_whole_budget():
    out, decision = _run(_cell(32, 0.5, 3, max_prompts=24))
    assert out.metrics["winrate/sequential_prompts_used"] == 24
    assert out.metrics["winrate/sequential_stopped_early"] == 0.0
    assert decision.verdict != PROMOTE


def test_no_rule_on_the_win_rate_judges_the_whole_budget():
    out, _ = _run(_cell(40, 0.85, 4), rules=[])
    assert out.metrics["winrate/sequential_prompts_used"] == 40
    assert out.metrics["winrate/win_rate_pct_anytime_confidence"] == 0.95


def test_a_stricter_regate_of_sequential_evidence_fails_closed():
    """The bounds were recorded at 95%: a re-gate asking 99% cannot read them, and must not fall back to the
    fixed-n stderr bound (its level does not hold after a data-dependent stop)."""
    out, _ = _run(_cell(96, 0.85, 1))
    m = out.metrics
    assert confidence_limit("winrate/win_rate_pct", "low", 0.99, m) is None
    strict = [GateRule(name="raw", metric="winrate/win_rate_pct", min=50.0, confidence=0.99)]
    decision = gate(m, {"reference": {}}, strict, specs=known_metrics())
    assert decision.verdict != PROMOTE
    # and a metric whose anytime bound is missing is not read from its stderr either
    stripped = {k: v for k, v in m.items() if not k.startswith("winrate/win_rate_pct_anytime")}
    assert confidence_limit("winrate/win_rate_pct", "low", 0.95, stripped) is None


def test_the_sweep_share_of_the_level_reaches_the_sequential_rules():
    targets = sequential_targets(RULES, known_metrics(), family_size=4)
    assert targets["winrate/win_rate_pct"][0].confidence == pytest.approx(1 - 0.05 / 4)


def test_an_allowed_regression_on_a_win_rate_is_a_floor_at_fifty_minus_the_margin():
    rule = GateRule(name="not_worse", metric="winrate/lc_win_rate_pct", max_regression=10.0)
    (target,) = sequential_targets([rule], known_metrics())["winrate/lc_win_rate_pct"]
    assert (target.kind, target.threshold) == ("min", 40.0)


def test_a_raised_budget_judges_only_the_new_prompts(tmp_path):
    """Verdicts are cached by content (evals.judges.CachedJudge, as build_judge wraps model judges): an
    equal-quality cell undecided at a budget of 16, rerun at 32, asks the judge only about prompts 17-32."""
    from evals.judges import CachedJudge

    class Counting(CoinJudge):
        asked = 0

        def judge(self, items):
            Counting.asked += len(items)
            return super().judge(items)

    ctx = _cell(32, 0.5, 5, max_prompts=16)
    ctx.eval.judge, ctx.cache_dir = CachedJudge(Counting(0.5, "5"), tmp_path), tmp_path
    first, _ = _run(ctx)
    assert first.metrics["winrate/sequential_prompts_used"] == 16 and Counting.asked == 2 * 16
    ctx.eval.sequential = SequentialConfig(batch_prompts=8, max_prompts=32)
    second, _ = _run(ctx)
    assert second.metrics["winrate/sequential_prompts_used"] == 32
    assert Counting.asked == 2 * 32  # 16 new prompts, both orders; the first 16 came from the cache
    # ...and it continues the first run's test (evals.sequential.recorded_plan): the bets and the spending stay
    # tuned to the budget of 16, so the looks the first run took are the second's first looks, bound for bound
    assert first.metrics["winrate/sequential_planned_prompts"] == second.metrics["winrate/sequential_planned_prompts"] == 16
    for before, after in zip(first.extras["sequential"]["winrate"], second.extras["sequential"]["winrate"]):
        bounds = [(look["n"], look["low"], look["high"]) for look in before["looks"]]
        assert [(look["n"], look["low"], look["high"]) for look in after["looks"]][: len(bounds)] == bounds
        if after["method"] == "spending":  # LC: its alpha was spent by prompt 16; later looks keep those bounds
            assert {(look["low"], look["high"]) for look in after["looks"][1:]} == {(before["looks"][-1]["low"],
                                                                                     before["looks"][-1]["high"])}
    # without the record (another cache) the same prompts would be a new test, tuned to 32: other bounds
    fresh, _ = _run(_cell(32, 0.5, 5, max_prompts=32))
    assert fresh.metrics["winrate/sequential_planned_prompts"] == 32
    def lc_at_16(out):  # spent alpha at 16 of a 16-prompt plan: all of it; of a 32-prompt plan: an eighth
        (lc,) = [s for s in out.extras["sequential"]["winrate"] if s["metric"] == "winrate/lc_win_rate_pct"]
        return lc["looks"][1]["low"]
    assert lc_at_16(fresh) < lc_at_16(first)


def test_a_continued_test_looks_where_the_first_run_looked_even_off_its_batch_grid(tmp_path):
    """A first run with a budget of 20 judged in batches of 8 looked at 8, 16 and 20. A rerun with 64 (and another
    batch size) must look at 8, 16 and 20 too, before its own grid: a look at 24 instead of 20 would spend the
    alpha the first run spent at 20 a second time, on another estimate (a second test for LC)."""
    ctx = _cell(64, 0.5, 11, max_prompts=20)
    ctx.cache_dir = tmp_path
    first, _ = _run(ctx)
    ctx.eval.sequential = SequentialConfig(batch_prompts=16, max_prompts=64)
    second, _ = _run(ctx)
    for before, after in zip(first.extras["sequential"]["winrate"], second.extras["sequential"]["winrate"]):
        assert [look["n"] for look in before["looks"]] == [8, 16, 20]
        assert [look["n"] for look in after["looks"]][:4] == [8, 16, 20, 36]  # then every 16 of its own
        assert [(look["low"], look["high"]) for look in after["looks"][:3]] == [
            (look["low"], look["high"]) for look in before["looks"]]
        if after["method"] == "spending":  # nothing left to spend after 20: the bounds stay
            assert all((look["low"], look["high"]) == (before["looks"][-1]["low"], before["looks"][-1]["high"])
                       for look in after["looks"][3:])


def test_a_plan_record_that_is_not_a_plan_stops_the_eval_naming_the_file(tmp_path):
    """A hand-edited or broken record must not silently start a new test (that is a second chance to pass): the
    eval fails naming the file, and the gate blocks on the failed eval. Two runs racing to record keep one plan."""
    from evals.sequential import recorded_plan
    from harness.errors import HarnessInputError

    first = recorded_plan(tmp_path, {"eval": "winrate"}, 16, 8)
    assert (first.budget, first.batch) == (16, 8)
    assert recorded_plan(tmp_path, {"eval": "winrate"}, 64, 4) == first  # the second writer reads the first's
    (record,) = (tmp_path / "sequential_plans").iterdir()
    for broken in ("{not json", '{"budget": true, "batch": 8}', '{"budget": "16", "batch": 8}', '{"budget": 0}'):
        record.write_text(broken)
        with pytest.raises(HarnessInputError, match=str(record.name)):
            recorded_plan(tmp_path, {"eval": "winrate"}, 64, 8)
        assert record.read_text() == broken  # never overwritten


def _against_champion(p_policy: float, seed: int, rules: list[GateRule], n: int = 96):
    """The candidate judged head to head against the champion's answers (the reference seat holds the
    champion), with the rules re-pointed to the head-to-head as the pipeline does before the eval runs."""
    from evals.vs_champion import winrate_vs_champion
    from harness.gate import REGISTERED_VERSION, rules_vs_champion

    ctx = _cell(n, p_policy, seed)
    ctx.champion, ctx.champion_out = (3, "champion-run"), ctx.reference_out
    ctx.sequential_targets = sequential_targets(rules_vs_champion(rules, {}), known_metrics())
    out = winrate_vs_champion(ctx)
    baselines = {"reference": {}, "champion": {REGISTERED_VERSION: 3.0}}
    return out, gate(out.metrics, baselines, rules, specs=known_metrics())


def test_a_head_to_head_with_the_champion_stops_once_its_rule_is_decided():
    rule = GateRule(name="not_worse_than_champion", metric="winrate/win_rate_pct", max_regression=10.0,
                    against="champion")
    out, decision = _against_champion(0.85, 7, [rule])
    m = out.metrics
    assert decision.verdict == PROMOTE, decision.first_failure
    assert m["winrate_vs_champion/sequential_stopped_early"] == 1.0
    assert m["winrate_vs_champion/sequential_prompts_used"] < 96 == m["winrate_vs_champion/sequential_max_prompts"]
    (check,) = decision.checks
    assert check.metric == "winrate_vs_champion/win_rate_pct" and "anytime-valid" in check.reason
    assert check.confidence_bound == m["winrate_vs_champion/win_rate_pct_anytime_low"]
    # the report's champion column: a verdict for each judged prompt, none for the rest
    verdicts = [s["champion_verdict"] for s in out.extras["champion_samples"]]
    assert verdicts.count(None) == 96 - m["winrate_vs_champion/sequential_prompts_used"]
    assert out.extras["sequential"]["winrate_vs_champion"][0]["metric"] == "winrate_vs_champion/win_rate_pct"
