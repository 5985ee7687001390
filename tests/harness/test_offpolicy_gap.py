"""The off-policy diagnostic on the tiny model: HH-RLHF pairs against pairs the model itself wrote;
`harness data check --model`; and one tiny cell that logs the gap, finds its judge uncalibrated, and is
blocked by a rule requiring a calibrated judge."""
import json
import math

import pytest

from evals.generation import DecodingSettings, generate
from evals.judge_calibration import load_labelled_pairs
from evals.offpolicy_gap import DEFAULT_TEMPERATURE, answers_from_rows, offpolicy_gap
from harness.cli import main
from tests.conftest import SHARED_VALIDATION, tiny_config

HH = SHARED_VALIDATION / "hh_rlhf" / "helpful-base-test-sample2000.jsonl.gz"
N_PROMPTS = 12
pytestmark = pytest.mark.skipif(not HH.is_file(), reason="the HH-RLHF sample is not in ../shared/validation")


@pytest.fixture(scope="module")
def hh_rows():
    pairs = load_labelled_pairs(str(HH), limit=N_PROMPTS).pairs
    return [{"prompt": p.prompt, "chosen": p.chosen, "rejected": p.rejected} for p in pairs]


def test_hh_pairs_are_further_off_policy_than_pairs_the_model_wrote(tiny, hh_rows, tmp_path):
    model, tok = tiny.model, tiny.tokenizer
    prompts = [r["prompt"] for r in hh_rows]
    # on-policy pairs as the harness builds them: two of the model's own answers per prompt at the data's
    # sampling temperature (another seed than the diagnostic's samples)
    own = generate(model, tok, prompts, DecodingSettings(max_new_tokens=32, temperature=DEFAULT_TEMPERATURE, top_k=0, seed=11,
                                                         n_samples=2), model_fingerprint=tiny.fingerprint)
    on_policy = [{"prompt": p, "chosen": own[2 * i].text, "rejected": own[2 * i + 1].text} for i, p in enumerate(prompts)]
    kwargs = dict(model_fingerprint=tiny.fingerprint, cache_dir=tmp_path, n_prompts=N_PROMPTS, max_tokens=32)
    hh = offpolicy_gap(model, tok, hh_rows, **kwargs)
    mine = offpolicy_gap(model, tok, on_policy, **kwargs)
    print(f"\noff-policy gap on the tiny model: HH-RLHF {hh['data/offpolicy_gap_nats_per_token']:.2f}, "
          f"on-policy {mine['data/offpolicy_gap_nats_per_token']:.2f} nats/token")
    assert hh["data/offpolicy_gap_nats_per_token"] > mine["data/offpolicy_gap_nats_per_token"]
    assert hh["data/chosen_logp_per_token"] < mine["data/chosen_logp_per_token"]
    for summary in (hh, mine):
        assert summary["data/offpolicy_prompts"] == N_PROMPTS
        # one chosen and one rejected per prompt: the mean of per-prompt gaps is the difference of the means
        expected = summary["data/reference_sample_logp_per_token"] - (
            summary["data/chosen_logp_per_token"] + summary["data/rejected_logp_per_token"]) / 2
        assert summary["data/offpolicy_gap_nats_per_token"] == pytest.approx(expected)
    # the same prompts, the same settings: the reference's own samples are shared
    assert hh["data/reference_sample_logp_per_token"] == mine["data/reference_sample_logp_per_token"]
    # cached on disk by content: no model needed the second time
    assert offpolicy_gap(None, tok, hh_rows, **kwargs) == hh
    assert len(list((tmp_path / "offpolicy_gap").glob("*.json"))) == 2


def test_answers_from_paired_unpaired_and_conversational_rows():
    rows = [{"prompt": [{"role": "user", "content": "p"}], "chosen": [{"role": "assistant", "content": "c"}],
             "rejected": [{"role": "assistant", "content": "r"}]},
            {"prompt": "q", "completion": "good", "label": True}, {"prompt": "q", "completion": "bad", "label": False},
            {"prompt": "e", "chosen": "", "rejected": "x"}]
    assert [(a.prompt, a.text, a.kind) for a in answers_from_rows(rows)] == [
        ("p", "c", "chosen"), ("p", "r", "rejected"), ("q", "good", "chosen"), ("q", "bad", "rejected"),
        ("e", "x", "rejected")]


def test_data_check_reports_the_gap_when_a_model_is_given(model_cache, capsys):
    code = main(["data", "check", str(HH), "--model", "embedded:tiny", "--limit", "4", "--cache-dir", str(model_cache),
                 "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    gap = json.loads(out)["offpolicy"]
    assert gap["data/offpolicy_prompts"] == 4 and gap["data/offpolicy_gap_nats_per_token"] > 0
    assert math.isfinite(gap["data/chosen_logp_per_token"]) and math.isfinite(gap["data/rejected_logp_per_token"])
    assert main(["data", "check", str(HH), "--limit", "4"]) == 2  # --limit belongs to --model
    assert "--limit" in capsys.readouterr().err


def test_a_cell_logs_the_gap_and_is_blocked_when_its_judge_is_uncalibrated(tmp_path, model_cache, capsys):
    from harness.lifecycle import run_experiment
    from harness.tracking import Tracker

    fast = {"training.max_steps": 1, "eval.domain_tasks": "[]", "eval.kl.n_prompts": 4, "eval.kl.max_new_tokens": 8,
            "eval.n_bootstrap": 20, "eval.max_new_tokens": 16, "eval.diversity.n_prompts": 0,
            "gate.rules": "[{name: calibrated_judge, metric: judge/agreement_pct, min: 60}]"}
    config = tiny_config(tmp_path, model_cache, **fast)
    result = run_experiment(config)
    assert result.verdict == "BLOCK" and not result.errors
    check = result.decision.checks[0]
    assert check.name == "calibrated_judge" and not check.passed
    assert "uncalibrated" in check.reason and "harness judge calibrate" in check.reason
    # template answers are not what the tiny model writes: a real gap, logged with the cell
    assert result.metrics["data/offpolicy_gap_nats_per_token"] > 0
    run = Tracker(config.output_dir, config.name).client.get_run(result.run_id)
    assert run.data.metrics["data/offpolicy_gap_nats_per_token"] == pytest.approx(
        result.metrics["data/offpolicy_gap_nats_per_token"])
    assert run.data.tags["harness.judge_calibration.status"] == "uncalibrated"
    assert run.data.tags["harness.judge_calibration.fingerprint"] == "rule:v1"
    html = open(result.report, encoding="utf-8").read()
    assert 'id="judge-uncalibrated"' in html and "harness judge calibrate" in html

    # calibrate the cell's judge as the message says, then re-gate without retraining: the rule now reads
    # the stored agreement (the rule judge ties on all HH-RLHF dialogue: 50%, still below 60)
    out = str(config.output_dir)
    assert main(["judge", "calibrate", "--judge", "rule", "--labels", str(HH), "--limit", "8", "--output-dir", out]) == 0
    assert "agreement with humans" in capsys.readouterr().out
    assert main(["gate", result.run_id, "--output-dir", out, "--json"]) == 1
    assert json.loads(capsys.readouterr().out)["verdict"] == "BLOCK"
    from harness.promotion import load_recorded, regate

    regated = regate(load_recorded(Tracker(config.output_dir, config.name), result.run_id), None)
    assert regated.checks[0].value == 50.0 and "min 60" in regated.checks[0].reason
