"""`harness gate plan` at the size a run actually evaluates: the prompt set is sized as the run sizes it
(a file counted, deduplicated, its limit applied; heldout split by hand; hf assumed and said so), a run's
report simulates the count it judged, and the family-wise rate of an all-equal sweep comes out of one
batch of cells with the value probability says it must have."""
import json
import math
from pathlib import Path

import numpy as np
import pytest

from harness import gate_plan
from harness.config import GateRule, load_config
from harness.gate_plan import Sizes, cached_plan, plan_gate, prompt_count

EXPERIMENTS = Path(__file__).resolve().parents[2] / "experiments"


def _prompts_file(path: Path, n_distinct: int, duplicates: int = 0) -> Path:
    rows = [{"prompt": f"Describe object number {i} in one sentence."} for i in range(n_distinct)]
    rows += [{"prompt": f"describe object number {i} in one sentence"} for i in range(duplicates)]  # same, normalised
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _tiny(**overrides):
    return load_config(EXPERIMENTS / "tiny.yaml", [f"{k}={v}" for k, v in overrides.items()])


def test_a_prompts_file_is_simulated_at_its_own_size_not_n_prompts(tmp_path, monkeypatch):
    """tiny.yaml says eval.n_prompts 16; its prompts file holds 31 rows, one a duplicate (the run dedupes):
    the plan must simulate 30 prompts, and every simulated cell's win rate must rest on 30 verdicts."""
    config = _tiny(**{"eval.prompts": _prompts_file(tmp_path / "eval.jsonl", 30, duplicates=1)})
    assert config.eval.n_prompts == 16
    seen = []
    real = gate_plan.simulate_cell

    def spy(scenario, sizes, rng):
        summary, reference = real(scenario, sizes, rng)
        seen.append(summary["winrate/n"])
        return summary, reference

    monkeypatch.setattr(gate_plan, "simulate_cell", spy)
    plan = plan_gate(config, sims=20, effects_pct=[20], regressions=[], search_sims=0)
    assert plan.sizes["n_prompts"] == 30 and plan.sizes["n_prompts_exact"] is True
    assert "eval.jsonl" in plan.sizes["n_prompts_source"] and "30 prompts" in plan.sizes["n_prompts_source"]
    assert seen and set(seen) == {30.0}


def test_a_file_limit_and_alpaca_eval_outputs_are_counted_as_the_run_reads_them(tmp_path):
    config = _tiny()
    config.eval.prompts = {"name": "file", "path": str(_prompts_file(tmp_path / "p.jsonl", 30)), "limit": 9}
    assert prompt_count(config)[:1] == (9,)
    outputs = [{"instruction": f"Question {i}?", "output": f"Answer {i}.", "generator": "base"} for i in range(7)]
    (tmp_path / "outputs.json").write_text(json.dumps(outputs))
    config.eval.prompts = {"name": "alpaca_eval", "baseline_outputs": str(tmp_path / "outputs.json")}
    n, source, exact = prompt_count(config)
    assert (n, exact) == (7, True) and "alpaca_eval" in source


def test_heldout_of_a_local_data_file_is_counted_by_the_split(tmp_path):
    """40 pairs on 40 distinct prompts, eval_fraction 0.25: round(40 * 0.25) = 10 prompts held out, fewer
    than eval.n_prompts (16), so 10 are evaluated."""
    pairs = [{"prompt": f"Name a fruit, take {i}.", "chosen": "An apple.", "rejected": "No."} for i in range(40)]
    data = tmp_path / "pairs.jsonl"
    data.write_text("".join(json.dumps(p) + "\n" for p in pairs))
    config = _tiny(**{"data.source": data, "data.eval_fraction": 0.25})
    config.eval.prompts = "heldout"  # (the rule judge would refuse these at load: the count is what is tested)
    n, source, exact = prompt_count(config)
    assert (n, exact) == (10, True) and "heldout" in source


def test_heldout_of_builtin_data_and_hub_sets_are_assumed_and_say_so():
    config = _tiny()  # builtin:verifiable, 48 prompts, eval_fraction 0.15: round(7.2) = 7 held out at most
    config.eval.prompts = "heldout"
    n, source, exact = prompt_count(config)
    assert (n, exact) == (7, False) and "assumed" in source
    config.eval.prompts = "hf:someone/prompts"
    n, source, exact = prompt_count(config)
    assert (n, exact) == (16, False) and "assumed" in source and "not downloaded" in source
    config.eval.prompts = {"name": "hf", "dataset": "someone/prompts", "limit": 50}
    assert prompt_count(config)[:1] == (50,)
    plan = plan_gate(config, sims=20, effects_pct=[], regressions=[], search_sims=0)
    assert plan.sizes["n_prompts"] == 50 and any("assumed" in note for note in plan.notes)


def test_the_report_plan_uses_the_count_the_run_evaluated_and_caches_by_it(tmp_path):
    config = _tiny()
    first = cached_plan(config, tmp_path, sims=20, evaluated_prompts=11)
    assert first["sizes"]["n_prompts"] == 11 and "as the run evaluated" in first["sizes"]["n_prompts_source"]
    assert cached_plan(config, tmp_path, sims=20, evaluated_prompts=11) == first  # read back, not recomputed
    other = cached_plan(config, tmp_path, sims=20)  # before a run: the config's own size
    assert other["sizes"]["n_prompts"] == 16
    assert len(list((tmp_path / "gate_plans").glob("*.json"))) == 2


def test_gate_plan_cli_states_the_size_it_simulated(tmp_path, capsys):
    from harness.cli import main

    prompts = _prompts_file(tmp_path / "eval.jsonl", 21)
    args = ["gate", "plan", str(EXPERIMENTS / "tiny.yaml"), "--set", f"eval.prompts={prompts}", "--sims", "20",
            "--effects", "20", "--regressions", ""]
    main([*args, "--json"])
    payload = json.loads(capsys.readouterr().out)
    assert payload["sizes"]["n_prompts"] == 21 and payload["sizes"]["n_prompts_exact"] is True
    main(args)
    assert "simulated at 21 eval prompts" in " ".join(capsys.readouterr().out.split())


def _p_more_wins_than_losses(n: int, p_win: float, p_tie: float) -> float:
    """P(wins > losses) among n prompts with P(win) = P(loss) = p_win: by symmetry half of P(wins != losses)."""
    equal = sum(math.factorial(n) / (math.factorial(k) ** 2 * math.factorial(n - 2 * k))
                * p_win ** (2 * k) * p_tie ** (n - 2 * k) for k in range(n // 2 + 1))
    return (1 - equal) / 2


def test_the_family_wise_rate_from_one_batch_matches_probability():
    """A point rule on the raw win rate (strict min 50) passes an equal-quality cell exactly when it wins
    more prompts than it loses: p = P(W > L) by hand; a sweep of 4 independent such cells ships one with
    probability 1 - (1 - p)^4. Both simulated rates must sit within 4 Monte-Carlo errors of these."""
    config = _tiny()
    config.gate.rules = [GateRule(name="raw_point", metric="winrate/win_rate_pct", min=50, statistic="point",
                                  strict=True)]
    n, sims, family = 12, 300, 4
    ties = gate_plan.Assumptions().tie_share
    p = _p_more_wins_than_losses(n, (1 - ties) / 2, ties)
    plan = plan_gate(config, sims=sims, effects_pct=[], regressions=[], family_size=family, search_sims=0,
                     sizes=Sizes(n, {}))
    equal = next(s for s in plan.scenarios if s.scenario == "equal_quality")
    assert equal.promote_rate == pytest.approx(p, abs=4 * math.sqrt(p * (1 - p) / sims))
    truth = 1 - (1 - p) ** family
    assert plan.family_wise_rate == pytest.approx(truth, abs=4 * math.sqrt(truth * (1 - truth) / sims))
    assert plan.family_wise_mc_stderr == pytest.approx(
        math.sqrt(plan.family_wise_rate * (1 - plan.family_wise_rate) / sims))
    assert (plan.family_size, plan.cell_level) == (family, plan.stated_level / family)


def _sequential_tiny(rules: list[GateRule], **overrides):
    config = _tiny(**{"eval.sequential.batch_prompts": 8, "eval.sequential.batch_items": 16, **overrides})
    config.gate.rules = rules
    return config


def test_a_sequential_plan_judges_batch_by_batch_and_stops_as_a_run_stops():
    """With eval.sequential the plan's cells go through the win-rate eval's own sequential loop, asking a judge
    of known truth 8 prompts at a time: an equal-quality cell still ships at most at the level (optional
    stopping included), a clear 25-point win is promoted after far fewer than the 64 prompts, and a cell that
    changed nothing (every verdict a tie) is blocked (the betting CS of a constant 50 never excludes 50 from
    above, so it is judged to the budget and failed there as undecided)."""
    config = _sequential_tiny([GateRule(name="raw", metric="winrate/win_rate_pct", min=50)])
    sims = 100
    plan = plan_gate(config, sims=sims, effects_pct=[25.0], regressions=[], search_sims=0, sizes=Sizes(64, {}))
    rows = {s.scenario: s for s in plan.scenarios}
    assert plan.sequential["batch_prompts"] == 8
    assert rows["equal_quality"].promote_rate <= 0.05 + 3 * math.sqrt(0.05 * 0.95 / sims)
    assert rows["better_25pt"].promote_rate >= 0.8 and rows["better_25pt"].mean_prompts_judged < 48
    assert rows["no_change"].promote_rate == 0.0 and rows["no_change"].mean_prompts_judged == 64
    # the judge is asked both orders and answers consistently: a simulated cell has no position flips
    cell, _ = gate_plan.simulate_sequential_cell(gate_plan.scenarios([25.0], [])[2], Sizes(64, {}), config,
                                                 {}, np.random.default_rng(0))
    assert cell["winrate/position_flip_rate"] == 0.0 and cell["winrate/sequential_judge_calls"] == 2 * 64


def test_a_sequential_plan_evaluates_domain_documents_until_the_regression_is_decided():
    """eval.sequential.domain in the plan: the sequential domain loop with simulated outcomes. An unchanged
    accuracy is shown non-inferior (10-point margin) before all 120 documents; a 20-point drop is blocked."""
    rule = GateRule(name="arith", metric="domain_arith_mc/acc", max_regression=0.10)
    config = _sequential_tiny([rule])
    plan = plan_gate(config, sims=40, effects_pct=[], regressions=[0.2], search_sims=0,
                     sizes=Sizes(16, {"domain_arith_mc": 120}))
    rows = {s.scenario: s for s in plan.scenarios}
    assert rows["no_change"].promote_rate == 1.0 and rows["no_change"].mean_items_used["domain_arith_mc"] < 120
    assert rows["regressed_20pt"].promote_rate == 0.0


def test_the_gate_plan_cli_shows_what_a_sequential_eval_judged(capsys):
    from harness.cli import main

    args = ["gate", "plan", str(EXPERIMENTS / "tiny.yaml"), "--set", "eval.sequential.batch_prompts=8", "--sims", "20",
            "--effects", "20", "--regressions", ""]
    assert main([*args, "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["sequential"]["batch_prompts"] == 8
    assert all(0 < s["mean_prompts_judged"] <= 16 for s in payload["scenarios"])
    main(args)
    assert "prompts judged" in capsys.readouterr().out


def test_the_plan_simulates_the_assumptions_it_is_given():
    """--assume replaces what the plan cannot know. A judge that ties half the prompts: the point rule's equal-
    quality promote rate is P(wins > losses) at that tie share, computed by hand; answer lengths that track the
    reference's prompt by prompt (correlation 0.8, as a fine-tuned policy's do) come out of the simulation with
    that correlation, and they show a 1.5 length-ratio cap far more often than independent lengths at 24 prompts."""
    config = _tiny()
    config.gate.rules = [GateRule(name="raw_point", metric="winrate/win_rate_pct", min=50, statistic="point",
                                  strict=True)]
    n, sims = 12, 300
    half_ties = gate_plan.Assumptions(tie_share=0.5)
    p = _p_more_wins_than_losses(n, 0.25, 0.5)
    plan = plan_gate(config, sims=sims, effects_pct=[], regressions=[], search_sims=0, sizes=Sizes(n, {}),
                     assumptions=half_ties)
    equal = next(s for s in plan.scenarios if s.scenario == "equal_quality")
    assert equal.promote_rate == pytest.approx(p, abs=4 * math.sqrt(p * (1 - p) / sims))
    assert plan.assumptions["tie_share"] == 0.5 and plan.assumptions["length_correlation"] == 0.0

    rng = np.random.default_rng(0)
    scenario = gate_plan.Scenario("equal", "", "BLOCK", assumptions=gate_plan.Assumptions(length_correlation=0.8))
    _, ref_chars, pol_chars = gate_plan._answers(scenario, 20_000, rng)
    assert np.corrcoef(np.log(ref_chars), np.log(pol_chars))[0, 1] == pytest.approx(0.8, abs=0.02)
    assert np.median(pol_chars) == pytest.approx(250, rel=0.03)  # the same length distribution on both sides

    config.gate.rules = [GateRule(name="length_ratio_cap", metric="length/ratio_tokens", max=1.5)]
    shown = {}
    for rho in (0.0, 0.8):
        plan = plan_gate(config, sims=200, effects_pct=[], regressions=[], search_sims=0, sizes=Sizes(24, {}),
                         assumptions=gate_plan.Assumptions(length_correlation=rho))
        shown[rho] = next(s for s in plan.scenarios if s.scenario == "equal_quality").promote_rate
    assert shown[0.8] > shown[0.0] + 0.2, shown


def test_bad_assumptions_are_named_together_with_exit_2(capsys):
    from harness.cli import main

    code = main(["gate", "plan", str(EXPERIMENTS / "tiny.yaml"), "--assume", "tie_share=1.5", "--assume", "colour=3",
                 "--assume", "kl_mean_nats=nan"])
    err = capsys.readouterr().err
    assert code == 2 and "colour" in err and "tie_share=1.5" not in err  # unknown keys first, then ranges
    code = main(["gate", "plan", str(EXPERIMENTS / "tiny.yaml"), "--assume", "tie_share=1.5",
                 "--assume", "kl_mean_nats=nan", "--assume", "length_correlation=-2"])
    err = capsys.readouterr().err
    assert code == 2 and all(k in err for k in ("tie_share=1.5", "kl_mean_nats=nan", "length_correlation=-2"))
    assert main(["gate", "plan", str(EXPERIMENTS / "tiny.yaml"), "--sims", "20", "--effects", "20", "--json",
                 "--assume", "kl_mean_nats=0.25", "--assume", "length_correlation=0.7"]) == 0
    assumptions = json.loads(capsys.readouterr().out)["assumptions"]
    assert (assumptions["kl_mean_nats"], assumptions["length_correlation"]) == (0.25, 0.7)


@pytest.mark.parametrize("discordant_share", [0.15, 0.05])
def test_a_named_regression_is_the_drop_the_plan_simulates(discordant_share):
    """regressed_20pt must be a 20-point drop, whatever share of items the plan assumes differ between two models
    (it was capped at that share: 15 points under the default 0.15)."""
    rng = np.random.default_rng(1)
    a = gate_plan.Assumptions(discordant_share=discordant_share)
    for drop in (0.10, 0.20):
        scenario = gate_plan.Scenario("regressed", "", "BLOCK", win_shift_pct=25.0, acc_shift=-drop, assumptions=a)
        ref, pol = gate_plan._items(scenario, 200_000, rng)
        assert pol.mean() - ref.mean() == pytest.approx(-drop, abs=0.005)


def test_cut_answers_censor_the_length_ratio_as_often_as_the_binomial_says():
    """--assume truncated_share: each answer is cut with that probability; above eval.max_truncated_pct on either
    side a run drops the length ratios and a rule on them fails closed. At the demo's 24 prompts, 30% loops and a
    35% threshold, that is P(more than 8 of 24 cut) on either of two independent sides, computed by hand; an
    unchanged policy's answers are the reference's, so one side decides."""
    def at_most(k: int, n: int, p: float) -> float:
        return sum(math.comb(n, j) * p ** j * (1 - p) ** (n - j) for j in range(k + 1))

    n, share, sims = 24, 0.3, 3000
    assumptions = gate_plan.Assumptions(truncated_share=share)
    sizes = Sizes(n, {}, max_truncated_pct=35.0)
    changed = gate_plan.Scenario("equal", "", "BLOCK", assumptions=assumptions)
    unchanged = gate_plan.Scenario("same", "", "BLOCK", changed=False, assumptions=assumptions)
    rng = np.random.default_rng(0)
    for scenario, want in ((changed, 1 - at_most(8, n, share) ** 2), (unchanged, 1 - at_most(8, n, share))):
        censored = 0
        for _ in range(sims):
            _, ref_chars, pol_chars = gate_plan._answers(scenario, n, rng)
            out = gate_plan._kl_and_length(scenario, sizes, ref_chars, pol_chars, rng)
            censored += "length/ratio_tokens" not in out
            assert out["length/censored"] == float("length/ratio_tokens" not in out)
        assert censored / sims == pytest.approx(want, abs=4 * math.sqrt(want * (1 - want) / sims)), scenario.name
    # a plan with the demo's length cap shows it far less often once loops are assumed, and says what it assumed
    config = _tiny(**{"eval.max_truncated_pct": 35})
    config.gate.rules = [GateRule(name="length_ratio_cap", metric="length/ratio_tokens", max=1.5)]
    rates = {}
    for assumed in (0.0, share):
        plan = plan_gate(config, sims=200, effects_pct=[], regressions=[], search_sims=0,
                         sizes=gate_plan.eval_sizes(config, evaluated_prompts=200),
                         assumptions=gate_plan.Assumptions(truncated_share=assumed))
        rates[assumed] = next(s for s in plan.scenarios if s.scenario == "equal_quality").promote_rate
        assert plan.assumptions["truncated_share"] == assumed
    assert rates[0.0] > 0.9 and rates[share] < rates[0.0]
    with pytest.raises(Exception, match="truncated_share"):
        gate_plan.parse_assumptions(["truncated_share=1.5"])
