import pytest

from evals.judges import JudgeItem, RuleJudge, position_swapped_verdicts
from evals.length import MAX_TRUNCATED_PCT, length_summary
from evals.pairwise import winrate_eval
from harness.data.verifiable import Instruction, VerifiablePrompt, make_prompts


def test_length_summary_matches_hand_computation():
    out = length_summary([10, 20, 30], [10, 10, 10], [50, 100, 150], [40, 40, 40])
    assert out["length/policy_mean_tokens"] == 20 and out["length/policy_median_tokens"] == 20
    assert out["length/policy_p90_tokens"] == 30
    assert out["length/ratio_tokens"] == 2.0
    assert out["length/ratio_chars"] == pytest.approx(100 / 40)
    assert "length/truncated_pct" not in out  # without the flags nothing is claimed about truncation


def test_truncated_shares_and_censoring_drop_the_ratios():
    tokens, chars = [10] * 10, [40] * 10
    # 1 of 10 policy answers and 1 of 10 reference answers cut: 10%, not above the 10% threshold
    fine = length_summary(tokens, tokens, chars, chars, policy_hit_limit=[True] + [False] * 9,
                          reference_hit_limit=[False] * 9 + [True])
    assert (fine["length/truncated_pct"], fine["length/reference_truncated_pct"]) == (10.0, 10.0)
    assert fine["length/censored"] == 0.0 and fine["length/ratio_tokens"] == 1.0
    assert MAX_TRUNCATED_PCT == 10.0
    # 2 of 10 reference answers cut: censored; the ratios are gone (a rule on them fails closed) and say why
    cut = length_summary(tokens, tokens, chars, chars, policy_hit_limit=[False] * 10,
                         reference_hit_limit=[True, True] + [False] * 8)
    assert cut["length/reference_truncated_pct"] == 20.0 and cut["length/censored"] == 1.0
    assert "length/ratio_tokens" not in cut and "length/ratio_chars" not in cut
    assert "20% of the reference's answers hit max_new_tokens" in cut["length/ratio_tokens_missing_reason"]
    assert cut["length/policy_mean_tokens"] == 10  # the means stay, described as what they are


def _items(reference, policy, prompt=None):
    prompt = prompt or VerifiablePrompt("tea", (Instruction("lowercase"),))
    return [JudgeItem(prompt.text, r, p, prompt) for r, p in zip(reference, policy)]


def test_rule_judge_prefers_the_answer_that_follows_instructions_and_ties_otherwise():
    verdicts = RuleJudge().judge(_items(["HELLO", "hello", "hello"], ["hello", "HELLO", "world"]))
    assert verdicts == [2.0, 1.0, 1.5]


def test_position_swap_is_consistent_for_a_symmetric_judge():
    verdicts, flips = position_swapped_verdicts(RuleJudge(), _items(["HELLO", "hello"], ["hello", "HELLO"]))
    assert verdicts == [2.0, 1.0] and flips == 0.0


def test_identical_outputs_give_fifty_percent_raw_and_lc():
    prompts = make_prompts(12, 0, split="eval")
    answers = [f"answer {i} " * (i + 1) for i in range(12)]
    items = [JudgeItem(p.text, a, a, p) for p, a in zip(prompts, answers)]
    summary, _ = winrate_eval(items, "rule", n_bootstrap=20, seed=0)
    assert summary["winrate/win_rate_pct"] == pytest.approx(50.0, abs=1e-9)
    assert summary["winrate/lc_win_rate_pct"] == pytest.approx(50.0, abs=1.0)


def test_a_policy_that_always_follows_instructions_wins_every_prompt():
    prompts = [VerifiablePrompt(f"topic {i}", (Instruction("lowercase"),)) for i in range(10)]
    items = [JudgeItem(p.text, "SHOUTING ANSWER" + "!" * i, "quiet answer" + "." * (9 - i), p)
             for i, p in enumerate(prompts)]
    summary, verdicts = winrate_eval(items, "rule", n_bootstrap=20, seed=0, hit_limit=([False] * 10, [True] * 2 + [False] * 8))
    assert verdicts == [2.0] * 10
    assert summary["winrate/win_rate_pct"] == pytest.approx(100.0)
    # one verdict everywhere with unequal lengths: LC is not identified (it used to be set to raw: 100 [100, 100])
    assert summary["winrate/lc_identified"] == 0.0 and "winrate/lc_win_rate_pct" not in summary
    assert "every verdict is the same" in summary["winrate/lc_win_rate_pct_missing_reason"]
    assert "winrate/verbosity_alarm" not in summary and "winrate/raw_minus_lc_pct" not in summary
    assert summary["winrate/lengths_censored"] == 1.0  # 2 of 10 policy answers were cut


def test_the_uncut_win_rates_read_only_prompts_whose_two_answers_both_ended(monkeypatch):
    import evals.vs_champion  # noqa: F401  (declares the head-to-head metrics)
    from evals.metrics import METRICS

    prompt = VerifiablePrompt("tea", (Instruction("lowercase"),))
    wins, losses = 6, 4  # the rule judge: the lowercase answer wins
    items = _items(["HELLO " * (i + 1) for i in range(wins)] + ["hello " * (i + 1) for i in range(losses)],
                   ["hello " * (i + 2) for i in range(wins)] + ["HELLO " * (i + 2) for i in range(losses)], prompt)
    reference_cut = [False] * 6 + [True] + [False] * 3  # one loss cut on the reference's side
    policy_cut = [True, True] + [False] * 8  # two wins cut on the policy's side
    summary, verdicts = winrate_eval(items, "rule", n_bootstrap=0, seed=0, hit_limit=(reference_cut, policy_cut))
    assert verdicts == [2.0] * 6 + [1.0] * 4 and summary["winrate/win_rate_pct"] == pytest.approx(60.0)
    # by hand: 7 prompts with neither answer cut, 4 won (prompts 2-5) and 3 lost (7-9)
    assert summary["winrate/uncut_prompts"] == 7.0
    assert summary["winrate/uncut_win_rate_pct"] == pytest.approx(100 * 4 / 7)
    low, high = summary["winrate/uncut_win_rate_pct_ci_low"], summary["winrate/uncut_win_rate_pct_ci_high"]
    assert low < 100 * 4 / 7 < high and summary["winrate/uncut_win_rate_pct_stderr"] > 0
    # the controlled rates are there or missing with a reason, never silently absent
    for key in ("winrate/uncut_lc_win_rate_pct", "winrate/uncut_style_controlled_pct"):
        assert (key in summary) != (f"{key}_missing_reason" in summary)

    assert summary["winrate/uncut_win_rate_pct_n"] == 7.0  # the gate's sample size for them, not winrate/n

    # nothing cut: the same numbers as on every prompt, copied without a second fit
    import evals.pairwise as pairwise

    fits = []
    real = pairwise.winrate_statistics
    monkeypatch.setattr(pairwise, "winrate_statistics", lambda *a, **k: fits.append(1) or real(*a, **k))
    whole, _ = winrate_eval(items, "rule", n_bootstrap=0, seed=0, hit_limit=([False] * 10, [False] * 10))
    assert whole["winrate/uncut_prompts"] == 10.0 and len(fits) == 1
    assert {k.replace("uncut_", ""): v for k, v in whole.items() if "/uncut_" in k and not k.endswith(("prompts", "_n"))
            } == {k: v for k, v in whole.items() if k.startswith(("winrate/win_rate_pct", "winrate/lc_win_rate_pct",
                                                                  "winrate/style_controlled_pct"))}
    # fewer than 5 such prompts: missing, with the count in the reason (a rule on them fails closed)
    few, _ = winrate_eval(items, "rule", n_bootstrap=0, seed=0, hit_limit=([True] * 6 + [False] * 4, [False] * 10))
    assert few["winrate/uncut_prompts"] == 4.0 and "winrate/uncut_win_rate_pct" not in few
    assert few["winrate/uncut_win_rate_pct_missing_reason"].startswith("4 judged prompts with neither answer cut")
    # declared like the headline rates, head to head too
    assert METRICS.get("winrate_vs_champion/uncut_lc_win_rate_pct").higher_is_better is True
