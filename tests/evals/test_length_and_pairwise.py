import pytest

from evals.judges import JudgeItem, RuleJudge, position_swapped_verdicts
from evals.length import length_summary
from evals.pairwise import winrate_eval
from harness.verifiable_prompts import Instruction, VerifiablePrompt, make_prompts


def test_length_summary_matches_hand_computation():
    out = length_summary([10, 20, 30], [10, 10, 10], [50, 100, 150], [40, 40, 40])
    assert out["length/policy_mean_tokens"] == 20 and out["length/policy_median_tokens"] == 20
    assert out["length/policy_p90_tokens"] == 30
    assert out["length/ratio_tokens"] == 2.0
    assert out["length/ratio_chars"] == pytest.approx(100 / 40)


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
    summary, verdicts = winrate_eval(items, "rule", n_bootstrap=20, seed=0)
    assert verdicts == [2.0] * 10
    assert summary["winrate/win_rate_pct"] == pytest.approx(100.0)
