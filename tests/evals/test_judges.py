"""Judges behind one interface: rule (lm-eval's IFEval checkers), LLM (alpaca-eval annotators against a
real OpenAI-compatible server: llama.cpp's, started on loopback here), reward model; verdict cache;
position swap; a judge that cannot answer fails the eval."""
import json
import logging
import time
import warnings
from pathlib import Path

import pytest

from evals.judges import CachedJudge, JudgeError, JudgeItem, RewardModelJudge, build_judge, position_swap
from evals.pairwise import winrate_eval
from harness.data.verifiable import Instruction, VerifiablePrompt, make_prompts
from tests.evals.conftest import VERDICT_GRAMMAR, free_port

SECRET = "sk-test-never-log-me-0123456789"
KEY_ENV = "PO_HARNESS_TEST_JUDGE_KEY"


# ---------------------------------------------------------------- rule judge, cache, position swap


def test_rule_judge_uses_ifeval_checkers():
    import evals.ifeval_offline as ifo

    bullets = VerifiablePrompt("tea", (Instruction("bullets", 2),))
    words = VerifiablePrompt("tea", (Instruction("max_words", 3),))
    # IFEval counts '*' bullets too, and words as \w+ runs ("don't" is two words)
    items = [JudgeItem(bullets.text, "* one\n* two", "- one", bullets),
             JudgeItem(words.text, "don't stop now", "go on now", words)]
    assert build_judge("rule").judge(items) == [1.0, 2.0]
    assert ifo.load_ifeval_registry.cache_info().currsize == 1  # really went through lm-eval's registry


class _Counting:
    name, fingerprint, cache_verdicts = "counting", "counting:v1", True

    def __init__(self, verdict=2.0, fail=False):
        self.calls, self.verdict, self.fail = 0, verdict, fail

    def judge(self, items):
        self.calls += 1
        if self.fail:
            raise JudgeError("down")
        return [self.verdict] * len(items)


def test_verdict_cache_is_keyed_by_content_and_written_atomically(tmp_path):
    items = [JudgeItem("p", "a", "b"), JudgeItem("p", "a", "c")]
    inner = _Counting()
    judge = CachedJudge(inner, tmp_path)
    assert judge.judge(items) == [2.0, 2.0] and inner.calls == 1
    assert judge.judge(items + [items[0]]) == [2.0, 2.0, 2.0] and inner.calls == 1  # all served from disk
    files = list((tmp_path / "judge_verdicts").rglob("*.json"))
    assert len(files) == 2 and all(json.loads(f.read_text())["preference"] == 2.0 for f in files)
    assert not list((tmp_path / "judge_verdicts").rglob("*.tmp"))
    other = _Counting(verdict=1.0)
    other.fingerprint = "counting:v2"  # another judge (model, endpoint, annotator config) never reads these
    assert CachedJudge(other, tmp_path).judge(items) == [1.0, 1.0] and other.calls == 1


def test_a_failing_judge_caches_nothing_and_raises(tmp_path):
    with pytest.raises(JudgeError):
        CachedJudge(_Counting(fail=True), tmp_path).judge([JudgeItem("p", "a", "b")])
    assert not (tmp_path / "judge_verdicts").exists() or not list((tmp_path / "judge_verdicts").rglob("*.json"))


def test_position_swap_reports_a_judge_that_always_picks_the_first_slot():
    class FirstSlot:
        name = "first"

        def judge(self, items):
            return [1.0] * len(items)

    swap = position_swap(FirstSlot(), [JudgeItem("p", "a", "b"), JudgeItem("q", "c", "d")])
    assert swap.forward == [1.0, 1.0] and swap.swapped == [2.0, 2.0]
    assert swap.verdicts == [1.5, 1.5] and swap.flip_rate == 1.0 and swap.first_position_rate == 1.0


def test_verbosity_alarm_follows_the_configured_gap():
    prompts = [VerifiablePrompt(f"topic {i}", (Instruction("lowercase"),)) for i in range(10)]
    # the policy follows the instruction on 6 prompts and ties on 4 (a verdict that never varies would
    # leave LC unidentified, and the alarm with it)
    items = [JudgeItem(p.text, "SHOUTING ANSWER" + "!" * i, ("LOUD ANSWER" if i % 3 == 0 else "quiet answer") + "." * (9 - i), p)
             for i, p in enumerate(prompts)]
    summary, _ = winrate_eval(items, "rule", n_bootstrap=10, seed=0, verbosity_gap_pct=10.0)
    gap = summary["winrate/raw_minus_lc_pct"]
    assert summary["winrate/verbosity_alarm"] == float(gap > 10.0)
    strict, _ = winrate_eval(items, "rule", n_bootstrap=10, seed=0, verbosity_gap_pct=gap - 1e-6)
    assert strict["winrate/verbosity_alarm"] == 1.0
    lenient, _ = winrate_eval(items, "rule", n_bootstrap=10, seed=0, verbosity_gap_pct=gap + 1.0)
    assert lenient["winrate/verbosity_alarm"] == 0.0


def test_judge_config_shorthand_and_options():
    from harness.config import load_config, validate_config

    repo = Path(__file__).resolve().parents[2]
    assert load_config(repo / "experiments" / "tiny.yaml").eval.judge.name == "rule"
    config = validate_config({"model": {"name": "embedded:tiny"}, "variant": "dpo", "eval": {"judge": {
        "name": "llm", "base_url": "http://127.0.0.1:1/v1", "model": "m", "api_key_env": "MY_KEY"}}})
    assert config.eval.judge.annotator_config == "chatgpt" and config.eval.judge.api_key_env == "MY_KEY"


# ---------------------------------------------------------------- LLM judge against llama.cpp on loopback


def _llm_spec(base_url: str, **extra) -> dict:
    spec = {"name": "llm", "base_url": base_url, "model": "smollm2", "annotator_config": "chatgpt",
            "api_key_env": KEY_ENV, "max_concurrency": 1, "timeout_s": 60,
            "completions_kwargs": {"max_tokens": 8, "extra_body": {"grammar": VERDICT_GRAMMAR}}}
    return spec | extra


def _pairs(n: int) -> list[JudgeItem]:
    prompts = make_prompts(n, 0, split="eval")
    long = "It is a process that happens every day, and it matters because it shapes the world around us."
    return [JudgeItem(p.text, f"{p.topic} is simple.", f"{p.topic}: {long}" if i % 2 else "I do not know.", p)
            for i, p in enumerate(prompts)]


def test_llm_judge_against_a_real_openai_compatible_server(llama_server, tmp_path, monkeypatch, caplog, capfd):
    monkeypatch.setenv(KEY_ENV, SECRET)  # llama.cpp ignores it; it must still never be logged or written
    caplog.set_level(logging.DEBUG)
    judge = build_judge(_llm_spec(llama_server), cache_dir=tmp_path)
    assert isinstance(judge, CachedJudge)
    items = _pairs(3)
    started = time.monotonic()
    swap = position_swap(judge, items)  # both orders: one batch of 6 requests
    seconds = time.monotonic() - started
    assert set(swap.forward) | set(swap.swapped) <= {1.0, 1.5, 2.0}
    assert all(1.0 <= v <= 2.0 for v in swap.verdicts) and 0.0 <= swap.flip_rate <= 1.0
    with capfd.disabled():
        print(f"\nllm judge, SmolLM2 via llama.cpp: forward={swap.forward} swapped={swap.swapped} "
              f"flip_rate={swap.flip_rate:.2f} ({seconds:.1f} s for 6 requests)")
    assert len(list((tmp_path / "judge_verdicts").rglob("*.json"))) == 6
    # the win-rate eval on the same pairs: every verdict comes from the content-hash cache
    judge.inner.judge = lambda batch: pytest.fail(f"{len(batch)} pairs were not served from the cache")
    with warnings.catch_warnings():  # LC needs 5 judged rows (NaN below that); raw and flip rate are computed
        warnings.simplefilter("ignore")
        summary, verdicts = winrate_eval(items, judge, n_bootstrap=10, seed=0)
    assert verdicts == swap.verdicts
    assert summary["winrate/position_flip_rate"] == swap.flip_rate
    assert summary["winrate/first_position_rate"] == swap.first_position_rate
    # the key is read from the environment and never logged or written
    out, err = capfd.readouterr()
    assert SECRET not in caplog.text and SECRET not in out and SECRET not in err
    for f in tmp_path.rglob("*"):
        if f.is_file():
            assert SECRET not in f.read_text(errors="ignore"), f


def test_llm_judge_refuses_answers_its_parser_cannot_read(llama_server, tmp_path):
    # one token, no grammar: "Output (a)" cannot come out, and no verdict may be made up
    spec = _llm_spec(llama_server, completions_kwargs={"max_tokens": 1})
    with pytest.raises(JudgeError, match="no parseable verdict"):
        build_judge(spec, cache_dir=tmp_path).judge(_pairs(1))
    assert not list(tmp_path.rglob("judge_verdicts/**/*.json"))


def test_llm_judge_with_the_server_down_fails_the_eval_instead_of_inventing_verdicts(tmp_path, monkeypatch):
    monkeypatch.setenv(KEY_ENV, SECRET)
    closed = f"http://127.0.0.1:{free_port()}/v1"  # bound then released: nothing listens there
    judge = build_judge(_llm_spec(closed, timeout_s=5), cache_dir=tmp_path)
    with pytest.raises(JudgeError) as info:
        judge.judge(_pairs(2))
    assert "127.0.0.1" in str(info.value) and SECRET not in str(info.value)
    with pytest.raises(JudgeError):
        winrate_eval(_pairs(5), _llm_spec(closed, timeout_s=5), n_bootstrap=10, seed=0, cache_dir=tmp_path)
    assert not list(tmp_path.rglob("judge_verdicts/**/*.json"))
    # the pipeline records the raised eval under `errors`; the gate blocks on it even with no rule reading it
    from evals.catalog import known_metrics
    from harness.gate import gate

    decision = gate({}, {"reference": {}}, [], specs=known_metrics(), errors={"winrate": f"JudgeError: {info.value}"},
                    allow_promote_without_rules=True)
    assert decision.verdict == "BLOCK" and decision.failed[0].name == "winrate_ran"


# ---------------------------------------------------------------- reward-model judge


def test_reward_model_judge_prefers_the_higher_score_in_both_orders(tiny_reward_model):
    judge = build_judge({"name": "reward_model", "model": str(tiny_reward_model), "batch_size": 4})
    assert isinstance(judge, RewardModelJudge)  # no cache_dir: not wrapped
    prompt = "Explain tea."
    answers = ["Tea is brewed from leaves.", "no", "TEA TEA TEA TEA", "Leaves, hot water, patience."]
    scores = judge.scores([(prompt, a) for a in answers])
    assert judge.scores([(prompt, a) for a in answers]) == scores  # deterministic
    items = [JudgeItem(prompt, a, b) for a in answers for b in answers if a != b]
    swap = position_swap(judge, items)
    for item, verdict in zip(items, swap.verdicts):
        s1, s2 = scores[answers.index(item.output_1)], scores[answers.index(item.output_2)]
        assert verdict == (2.0 if s2 > s1 else 1.0 if s1 > s2 else 1.5)
    assert swap.flip_rate == 0.0  # scores do not depend on the position


def test_reward_model_judge_refuses_pickle_weights(tmp_path, tiny_reward_model):
    import torch
    from safetensors.torch import load_file

    for f in tiny_reward_model.iterdir():  # the same model with its weights as a pickle (.bin) only
        if f.suffix != ".safetensors":
            (tmp_path / f.name).write_bytes(f.read_bytes())
    torch.save(load_file(tiny_reward_model / "model.safetensors"), tmp_path / "pytorch_model.bin")
    with pytest.raises(JudgeError, match="safetensors"):
        RewardModelJudge(model=str(tmp_path)).judge([JudgeItem("p", "a", "b")])
