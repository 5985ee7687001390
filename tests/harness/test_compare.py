"""`harness compare RUN_A RUN_B` on two real tiny runs: the paired statistics with intervals, answers
served from the runs' own generation cache (so the checkpoint fingerprint is reproduced exactly) or
regenerated from the rebuilt checkpoints identically, a run against itself exactly 50 with no spread,
A-over-B and B-over-A summing to 100, and runs that cannot back a comparison refused with exit 2."""
import json
from pathlib import Path

import pytest

from harness.cli import main
from harness.compare import compare_runs
from harness.tracking import Tracker
from tests.conftest import tiny_config

FAST = {"training.max_steps": 2, "eval.n_prompts": 8, "eval.kl.n_prompts": 4, "eval.domain_tasks": "[]",
        "eval.diversity.n_prompts": 0, "eval.n_bootstrap": 0}


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory, model_cache):
    from harness.lifecycle import run_experiment

    out = tmp_path_factory.mktemp("compare")
    a = run_experiment(tiny_config(out, model_cache, **FAST, beta=0.1))
    b = run_experiment(tiny_config(out, model_cache, **FAST, beta=0.5, **{"training.learning_rate": 0.01}))
    config = tiny_config(out, model_cache, **FAST)
    return config, Tracker(config.output_dir, config.name), a, b


def _cli_json(config, *args, capsys) -> dict:
    capsys.readouterr()
    assert main(["compare", *args, "--json", "--output-dir", str(config.output_dir)]) == 0
    return json.loads(capsys.readouterr().out)


def _recorded_policy_answers(tracker, run_id) -> list[str]:
    text = tracker.load_text(run_id, "generations.jsonl")
    return [json.loads(line)["policy"] for line in text.splitlines() if line.strip()]


def test_compare_two_runs_reports_the_paired_win_rates_with_intervals(two_runs, capsys):
    config, tracker, a, b = two_runs
    out = _cli_json(config, a.run_id, b.run_id, capsys=capsys)
    m = out["metrics"]
    assert out["n"] == 8 and m["winrate/n"] == 8
    for key in ("winrate/win_rate_pct", "winrate/lc_win_rate_pct", "winrate/style_controlled_pct"):
        if key in m:
            assert m[f"{key}_ci_low"] <= m[key] <= m[f"{key}_ci_high"] and m[f"{key}_stderr"] >= 0
        else:
            assert m[f"{key}_missing_reason"]
    assert "winrate/win_rate_pct_ci_low" in m
    # both runs left their greedy answers in the generation cache: found by the rebuilt fingerprint
    assert out["answers"]["a"]["source"] == "cache" and out["answers"]["b"]["source"] == "cache"
    assert out["answers"]["a"]["fingerprint"] == a.policy_fingerprint
    assert [s["a"] for s in out["samples"]] == _recorded_policy_answers(tracker, a.run_id)
    assert [s["b"] for s in out["samples"]] == _recorded_policy_answers(tracker, b.run_id)


def _longer_wins(self, items):
    """A judge that prefers the longer answer (equal lengths tie): the tiny model's answers satisfy no
    verifiable instruction, so the rule judge ties everything and could not show the arithmetic."""
    return [2.0 if len(i.output_2) > len(i.output_1) else 1.0 if len(i.output_1) > len(i.output_2) else 1.5
            for i in items]


def test_the_verdicts_and_win_rate_follow_the_judge_prompt_by_prompt(two_runs, monkeypatch):
    """With a judge whose verdicts can be computed by hand: A's win rate over B is the mean of A's win
    scores, B's over A is 100 minus it (the same prompts, the other seat), the interval has width."""
    from evals.judges import RuleJudge

    config, tracker, a, b = two_runs
    monkeypatch.setattr(RuleJudge, "judge", _longer_wins)
    result = compare_runs(tracker, a.run_id, b.run_id)
    by_hand = [1.0 if len(s["a"]) > len(s["b"]) else 0.0 if len(s["a"]) < len(s["b"]) else 0.5 for s in result.samples]
    assert [v - 1 for v in result.verdicts] == by_hand and len(set(by_hand)) > 1
    m = result.metrics
    assert m["winrate/win_rate_pct"] == pytest.approx(100 * sum(by_hand) / len(by_hand))
    assert m["winrate/win_rate_pct_stderr"] > 0 and m["winrate/win_rate_pct_ci_low"] < m["winrate/win_rate_pct_ci_high"]
    back = compare_runs(tracker, b.run_id, a.run_id)
    assert back.metrics["winrate/win_rate_pct"] == pytest.approx(100 - m["winrate/win_rate_pct"])
    assert result.renamed("winrate_vs_champion")["winrate_vs_champion/win_rate_pct"] == m["winrate/win_rate_pct"]


def test_a_run_against_itself_is_exactly_50_with_no_spread(two_runs, capsys):
    config, tracker, a, _ = two_runs
    m = _cli_json(config, a.run_id, a.run_id, capsys=capsys)["metrics"]
    for key in ("winrate/win_rate_pct", "winrate/lc_win_rate_pct", "winrate/style_controlled_pct"):
        assert (m[key], m[f"{key}_stderr"], m[f"{key}_ci_low"], m[f"{key}_ci_high"]) == (50.0, 0.0, 50.0, 50.0)


def test_without_the_cache_the_rebuilt_checkpoints_answer_as_the_runs_did(two_runs, capsys):
    """The generation cache entries removed: both checkpoints are rebuilt from MLflow on their base model
    and generate; the answers are the ones the runs recorded, so the rebuild is the trained policy."""
    from evals.generation import DecodingSettings, cache_key
    from harness.data.verifiable import make_prompts

    config, tracker, a, b = two_runs
    texts = [p.text for p in make_prompts(8, config.seed, split="eval")]
    settings = DecodingSettings(max_new_tokens=config.eval.max_new_tokens, temperature=0.0, seed=config.seed)
    for run in (a, b):
        key = cache_key(run.policy_fingerprint, texts, settings)
        entry = Path(config.resolved_cache_dir) / "generations" / f"{key}.json"
        assert entry.exists()
        entry.unlink()
    result = compare_runs(tracker, a.run_id, b.run_id)
    assert result.answers["a"]["source"] == "generated" and result.answers["b"]["source"] == "generated"
    assert [s["a"] for s in result.samples] == _recorded_policy_answers(tracker, a.run_id)
    assert [s["b"] for s in result.samples] == _recorded_policy_answers(tracker, b.run_id)


def test_runs_that_cannot_back_a_comparison_exit_2(two_runs, capsys):
    config, tracker, a, _ = two_runs
    tracker.start_run("crashed", tags={"harness.cell": "crashed"})
    tracker.end_run("FAILED")
    capsys.readouterr()
    assert main(["compare", a.run_id, tracker.run_id, "--output-dir", str(config.output_dir)]) == 2
    assert "FAILED, not FINISHED" in capsys.readouterr().err
    assert main(["compare", a.run_id, "no-such-run", "--output-dir", str(config.output_dir)]) == 2
    assert main(["compare", "no-such-run", a.run_id, "--output-dir", str(config.output_dir)]) == 2


def test_a_shared_base_is_used_only_when_it_is_the_pristine_base(two_runs, tiny, tmp_path):
    """The pipeline may pass its loaded base to skip a reload; an iterative round's merged reference keeps
    the base's name but not its weights, and must not be mistaken for it."""
    import dataclasses

    import torch

    from harness.compare import recorded_answers, recorded_policy
    from harness.data.verifiable import make_prompts

    config, tracker, a, _ = two_runs
    policy = recorded_policy(tracker, a.run_id, tmp_path)
    texts = [p.text for p in make_prompts(8, config.seed, split="eval")]
    expected = _recorded_policy_answers(tracker, a.run_id)
    shared = recorded_answers(policy, texts, max_new_tokens=config.eval.max_new_tokens, base=tiny)
    assert shared.fingerprint == a.policy_fingerprint and [c.text for c in shared.completions] == expected
    merged = dataclasses.replace(tiny, model=__import__("copy").deepcopy(tiny.model), fingerprint="merged-round-1")
    with torch.no_grad():
        for p in merged.model.parameters():
            p.add_(0.5)
    impostor = recorded_answers(policy, texts, max_new_tokens=config.eval.max_new_tokens, base=merged)
    assert impostor.fingerprint == a.policy_fingerprint and [c.text for c in impostor.completions] == expected


def test_the_prompts_are_the_ones_the_run_recorded(two_runs, tmp_path):
    """Read back from the run's `eval_prompts` artifact (with their instructions, for the rule judge); a
    larger --n-prompts extends builtin prompts, whose sequence does not depend on the count."""
    from evals.eval_prompts import EvalPrompt
    from harness.compare import recorded_eval_prompts, recorded_policy
    from harness.data.verifiable import make_prompts

    config, tracker, a, _ = two_runs
    policy = recorded_policy(tracker, a.run_id, tmp_path)
    recorded = recorded_eval_prompts(tracker, policy)
    builtin = make_prompts(8, config.seed, split="eval")
    assert all(isinstance(p, EvalPrompt) for p in recorded)  # parsed from the artifact, not regenerated
    assert [(p.text, p.instructions) for p in recorded] == [(p.text, p.instructions) for p in builtin]
    assert [p.text for p in recorded_eval_prompts(tracker, policy, 5)] == [p.text for p in builtin[:5]]
    more = recorded_eval_prompts(tracker, policy, 12)
    assert len(more) == 12 and [p.text for p in more[:8]] == [p.text for p in builtin]
