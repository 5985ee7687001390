"""Judge calibration against the human labels of HH-RLHF: the rule, reward-model and LLM judges, and two
judges built to be biased (always the longer answer, always the first slot) whose biases must show.

Expected figures are computed by hand from the raw file (the shared prompt prefix leaves the
length comparison of the full transcripts unchanged) or follow from how each judge decides."""
import gzip
import json
import math
from pathlib import Path

import pytest

from evals.judge_calibration import (
    FILLER_SENTENCES,
    NO_CANARIES,
    NULL_ANSWER,
    UNCALIBRATED,
    calibrate,
    canary_win_share,
    cell_judge_calibration,
    judge_spec_from_text,
    length_slope,
    load_labelled_pairs,
    make_judge,
    padded_answer,
    record_calibration,
    wilson_interval,
)
from evals.judges import JUDGES, build_judge
from harness.cli import main
from tests.conftest import SHARED_VALIDATION
from tests.evals.conftest import VERDICT_GRAMMAR

HH = SHARED_VALIDATION / "hh_rlhf" / "helpful-base-test-sample2000.jsonl.gz"
N_PAIRS = 40
pytestmark = pytest.mark.skipif(not HH.is_file(), reason="the HH-RLHF sample is not in ../shared/validation")


# ---------------------------------------------------------------- judges with a known bias, registered as plugins


@JUDGES.register("test_always_longer")
class AlwaysLongerJudge:
    name, fingerprint = "test_always_longer", "test_always_longer:v1"

    def judge(self, items):
        return [1.0 if len(i.output_1) > len(i.output_2) else 2.0 if len(i.output_2) > len(i.output_1) else 1.5
                for i in items]


@JUDGES.register("test_first_slot")
class FirstSlotJudge:
    name, fingerprint = "test_first_slot", "test_first_slot:v1"

    def judge(self, items):
        return [1.0] * len(items)


# ---------------------------------------------------------------- by hand


def raw_rows(n: int = N_PAIRS) -> list[dict]:
    with gzip.open(HH, "rt", encoding="utf-8") as fh:
        return [json.loads(line) for _, line in zip(range(n), fh)]


def hand_length_counts(n: int = N_PAIRS) -> tuple[int, int, int]:
    """(chosen longer, rejected longer, equal) over the first n rows: the prompt is their shared prefix,
    so comparing the full transcripts compares the answers."""
    rows = raw_rows(n)
    longer = sum(len(r["chosen"]) > len(r["rejected"]) for r in rows)
    shorter = sum(len(r["chosen"]) < len(r["rejected"]) for r in rows)
    return longer, shorter, n - longer - shorter


def run_cli(capsys, *args) -> tuple[int, dict | None, str]:
    code = main(["judge", "calibrate", *args])
    out, err = capsys.readouterr()
    return code, (json.loads(out) if code == 0 and out.strip().startswith("{") else None), err


def assert_intervals(metrics: dict) -> None:
    """Every figure with an interval lies inside it, and percentages stay in [0, 100]."""
    for key, value in metrics.items():
        if key + "_ci_low" in metrics and math.isfinite(value):
            low, high = metrics[key + "_ci_low"], metrics[key + "_ci_high"]
            assert low <= value + 1e-9 and value <= high + 1e-9, (key, low, value, high)
            if key.endswith("_pct"):
                assert 0.0 <= low <= high <= 100.0, key


@pytest.fixture(scope="module")
def hh_pairs():
    return load_labelled_pairs(str(HH), limit=N_PAIRS)


def test_hh_rlhf_loads_as_implicit_prompt_pairs_from_the_gzipped_file(hh_pairs):
    rows = raw_rows()
    assert len(hh_pairs.pairs) == N_PAIRS and not hh_pairs.dropped
    for pair, row in zip(hh_pairs.pairs, rows):
        assert pair.prompt + pair.chosen == row["chosen"] and pair.prompt + pair.rejected == row["rejected"]
        assert pair.prompt.startswith("\n\nHuman:")
    assert [p.row for p in hh_pairs.pairs] == list(range(1, N_PAIRS + 1))


def test_wilson_interval_and_length_slope_by_hand():
    z = 1.959963984540054
    low, high = wilson_interval(0.5, 40)
    half = z * math.sqrt(0.25 / 40 + z * z / 6400) / (1 + z * z / 40)
    assert (low, high) == pytest.approx((0.5 - half, 0.5 + half))
    assert wilson_interval(1.0, 10)[1] == pytest.approx(1.0) and wilson_interval(1.0, 10)[0] < 1.0
    # two pairs, answer A twice and four times as long, preferred fully and half: (1*0.5 + 2*0) / (1 + 4)
    assert length_slope([1.0, 2.0], [1.0, 0.5]) == pytest.approx(0.1)


# ---------------------------------------------------------------- the rule judge, through the CLI


def test_rule_judge_calibration_on_hh_rlhf_through_the_cli(tmp_path, capsys):
    code, out, err = run_cli(capsys, "--judge", "rule", "--labels", str(HH), "--limit", str(N_PAIRS),
                             "--output-dir", str(tmp_path), "--json")
    assert code == 0, err
    m = out["metrics"]
    assert_intervals(m)
    # open-ended dialogue carries no verifiable instruction: the rule judge ties everywhere
    assert m["judge/tie_pct"] == 100.0 and m["judge/position_flip_pct"] == 0.0
    assert m["judge/agreement_pct"] == 50.0 and m["judge/longer_pick_pct"] == 50.0
    assert math.isnan(m["judge/first_slot_pct"])  # no decisive verdict to have a slot
    low, high = wilson_interval(0.5, N_PAIRS)
    assert (m["judge/agreement_pct_ci_low"], m["judge/agreement_pct_ci_high"]) == pytest.approx((100 * low, 100 * high))
    longer, shorter, _ = hand_length_counts()
    assert m["judge/human_longer_pick_pct"] == pytest.approx(100 * longer / (longer + shorter))
    assert m["judge/longer_pick_excess_pct"] == pytest.approx(50.0 - 100 * longer / (longer + shorter))
    # 2 verdicts per pair for agreement, 4 more for the two canaries
    assert m["judge/n_pairs"] == N_PAIRS and m["judge/calls"] == 6 * N_PAIRS and m["judge/tokens"] == 0
    # the canaries: a tie is no preference for them, so a judge that ties everything is not flagged
    assert (m["judge/canary_null_win_pct"], m["judge/canary_padded_win_pct"], m["judge/canary_flag"]) == (0.0, 0.0, 0.0)
    assert m["judge/canary_null_win_pct_ci_high"] == pytest.approx(100 * wilson_interval(0.0, N_PAIRS)[1])
    assert out["fingerprint"] == "rule:v1" and out["run_id"]
    # stored in MLflow under the judge's fingerprint: a cell judged by `rule` finds exactly these figures
    from harness.tracking import Tracker

    found, info = cell_judge_calibration(Tracker(tmp_path, "any-experiment"), "rule", None)
    assert info["status"] == "calibrated" and info["run_id"] == out["run_id"]
    # every figure, NaN included (recorded as NaN: "no decisive verdict" is not a number to compare with)
    assert found == pytest.approx(m, nan_ok=True)


# ---------------------------------------------------------------- judges with a known bias


def test_a_judge_that_always_prefers_the_longer_answer_shows_a_length_bias_of_one(hh_pairs):
    cal = calibrate(build_judge("test_always_longer"), hh_pairs)
    m = cal.metrics
    assert_intervals(m)
    assert m["judge/longer_pick_pct"] == 100.0 and m["judge/position_flip_pct"] == 0.0
    longer, shorter, equal = hand_length_counts()
    assert m["judge/agreement_pct"] == pytest.approx(100 * (longer + 0.5 * equal) / N_PAIRS)
    assert m["judge/tie_pct"] == pytest.approx(100 * equal / N_PAIRS)
    assert m["judge/longer_pick_excess_pct"] == pytest.approx(100 - 100 * longer / (longer + shorter))
    logs = [math.log2(len(p.chosen) / len(p.rejected)) for p in hh_pairs.pairs if len(p.chosen) != len(p.rejected)]
    assert m["judge/length_slope"] == pytest.approx(sum(abs(x) * 0.5 for x in logs) / sum(x * x for x in logs))
    assert m["judge/length_slope"] > m["judge/human_length_slope"]


def test_a_judge_that_always_prefers_the_first_slot_shows_a_position_bias_of_one(hh_pairs):
    cal = calibrate(build_judge("test_first_slot"), hh_pairs)
    m = cal.metrics
    assert_intervals(m)
    assert m["judge/position_flip_pct"] == 100.0 and m["judge/first_slot_pct"] == 100.0
    # every verdict flips with the order, so both orders average to a tie: no credit either way
    assert m["judge/agreement_pct"] == 50.0 and m["judge/longer_pick_pct"] == 50.0 and m["judge/tie_pct"] == 0.0
    assert m["judge/position_flip_pct_ci_low"] == pytest.approx(100 * wilson_interval(1.0, N_PAIRS)[0])
    assert all(p["forward"] == 1.0 and p["swapped"] == 2.0 for p in cal.per_pair)


# ---------------------------------------------------------------- reward model (tiny, safetensors)


def test_reward_model_judge_calibration_on_hh_rlhf(tiny_reward_model, tmp_path, hh_pairs, capsys):
    spec_file = tmp_path / "rm.yaml"
    spec_file.write_text(f"name: reward_model\nmodel: {tiny_reward_model}\nbatch_size: 8\n")
    code, out, err = run_cli(capsys, "--judge", str(spec_file), "--labels", str(HH), "--limit", str(N_PAIRS),
                             "--output-dir", str(tmp_path / "runs"), "--json")
    assert code == 0, err
    m = out["metrics"]
    assert_intervals(m)
    # by hand: the reward model's own scores of each answer decide every pair, in both orders
    judge = make_judge(judge_spec_from_text(str(spec_file)))
    agree = []
    for p in hh_pairs.pairs:
        chosen, rejected = judge.scores([(p.prompt, p.chosen), (p.prompt, p.rejected)])
        agree.append(1.0 if chosen > rejected else 0.0 if chosen < rejected else 0.5)
    assert m["judge/agreement_pct"] == pytest.approx(100 * sum(agree) / len(agree))
    assert m["judge/position_flip_pct"] == 0.0  # a score does not depend on the slot
    assert m["judge/first_slot_pct"] == pytest.approx(50.0)  # each decisive pair picks slot 1 in one order only
    assert m["judge/tokens"] > 0 and m["judge/calls"] == 6 * N_PAIRS
    assert out["fingerprint"].startswith("reward_model:")
    print(f"\nreward-model judge (tiny, random init) on {N_PAIRS} HH-RLHF pairs: agreement "
          f"{m['judge/agreement_pct']:.1f}% [{m['judge/agreement_pct_ci_low']:.1f}, "
          f"{m['judge/agreement_pct_ci_high']:.1f}], flips {m['judge/position_flip_pct']:.1f}%, longer "
          f"{m['judge/longer_pick_pct']:.1f}% vs humans {m['judge/human_longer_pick_pct']:.1f}%")


# ---------------------------------------------------------------- LLM judge against llama.cpp on loopback


def test_llm_judge_calibration_against_a_real_server(llama_server, tmp_path, capsys):
    # 8 pairs (16 requests; SmolLM2 reads ~550 tokens per request at ~200-400 tokens/s on 2 busy cores)
    n = 8
    spec_file = tmp_path / "llm.yaml"
    spec_file.write_text(json.dumps({
        "name": "llm", "base_url": llama_server, "model": "smollm2", "annotator_config": "chatgpt",
        "max_concurrency": 1, "timeout_s": 120,
        "completions_kwargs": {"max_tokens": 8, "extra_body": {"grammar": VERDICT_GRAMMAR}}}))  # JSON is YAML
    # --no-canaries keeps this at 16 requests (the canaries would add 32)
    code, out, err = run_cli(capsys, "--judge", str(spec_file), "--labels", str(HH), "--limit", str(n),
                             "--output-dir", str(tmp_path / "runs"), "--json", "--no-canaries")
    assert code == 0, err
    m = out["metrics"]
    assert_intervals(m)
    assert m["judge/n_pairs"] == n and m["judge/calls"] == 2 * n
    assert not any(k.startswith("judge/canary_") for k in m)
    assert m["judge/tokens"] > 2 * n * 250  # the chatgpt template alone is ~270 tokens per request
    assert m["judge/seconds"] > 0 and out["fingerprint"].startswith("llm:")
    # the stored per-pair verdicts (MLflow artifact) give back the figures
    from harness.tracking import Tracker

    per_pair = Tracker(tmp_path / "runs", "judge-calibration").load_json(out["run_id"], "judge_calibration.json")["per_pair"]
    assert m["judge/agreement_pct"] == pytest.approx(100 * sum(2 - (p["forward"] + p["swapped"]) / 2 for p in per_pair) / n)
    assert m["judge/position_flip_pct"] == pytest.approx(100 * sum(p["forward"] != p["swapped"] for p in per_pair) / n)
    print(f"\nLLM judge (SmolLM2 via llama.cpp) on {n} HH-RLHF pairs: agreement {m['judge/agreement_pct']:.1f}%, "
          f"flips {m['judge/position_flip_pct']:.1f}%, first slot {m['judge/first_slot_pct']:.1f}%, longer "
          f"{m['judge/longer_pick_pct']:.1f}% vs humans {m['judge/human_longer_pick_pct']:.1f}%, "
          f"{m['judge/tokens']:.0f} tokens in {m['judge/seconds']:.0f} s")


# ---------------------------------------------------------------- the gate and the stored calibration


def test_a_gate_rule_requiring_a_calibrated_judge_blocks_an_uncalibrated_one(tmp_path, hh_pairs):
    from evals.catalog import known_metrics
    from harness.config import GateRule
    from harness.gate import gate
    from harness.tracking import Tracker

    tracker = Tracker(tmp_path, "cells")
    rules = [GateRule(name="calibrated_judge", metric="judge/agreement_pct", min=60)]
    measured = {"winrate/lc_win_rate_pct": 70.0}

    def decide(judge_name: str):
        found, info = cell_judge_calibration(tracker, judge_name, None)
        return gate(measured | found, {"reference": {}}, rules, specs=known_metrics()), info

    decision, info = decide("test_always_longer")
    assert info["status"] == "uncalibrated" and decision.verdict == "BLOCK"
    reason = decision.failed[0].reason
    assert "uncalibrated" in reason and "harness judge calibrate" in reason and reason.endswith(UNCALIBRATED)

    calibration = calibrate(build_judge("test_always_longer"), hh_pairs)
    record_calibration(calibration, tmp_path)
    decision, info = decide("test_always_longer")
    agreement = calibration.metrics["judge/agreement_pct"]
    assert info["status"] == "calibrated"
    low = calibration.metrics["judge/agreement_pct_ci_low"]
    assert decision.verdict == ("PROMOTE" if low > 60 else "BLOCK")  # decided on the interval's lower end
    assert decision.checks[0].value == pytest.approx(agreement)
    # keyed by fingerprint: another judge stays uncalibrated
    assert decide("test_first_slot")[1]["status"] == "uncalibrated"
    # a floor reads the recorded interval's lower end (a one-sided 97.5% bound, at least the rule's 95%)
    found, _ = cell_judge_calibration(tracker, "test_always_longer", None)
    low = found["judge/agreement_pct_ci_low"]
    assert low < agreement
    for bound, verdict in ((low - 0.01, "PROMOTE"), (low + 0.01, "BLOCK")):
        rule = GateRule(metric="judge/agreement_pct", min=bound)
        assert gate(found, {"reference": {}}, [rule], specs=known_metrics()).verdict == verdict


# ---------------------------------------------------------------- canaries: a null answer and a padded reference


def test_padded_answer_keeps_the_answer_and_doubles_its_length():
    for answer in ["Yes.", "Paris is the capital of France.", "x" * 500, "a\nb"]:
        padded = padded_answer(answer)
        assert padded.startswith(answer + "\n\n")
        longest_filler_word = max(len(w) for s in FILLER_SENTENCES for w in s.split())
        # stops at the first filler word that reaches twice the length
        assert 2 * len(answer) <= len(padded) < 2 * len(answer) + 2 + longest_filler_word
    # win credit per order: a win 1, a tie or a loss 0, a weighted 1.8 counts 0.6; the two orders averaged
    assert canary_win_share([2.0, 1.5, 1.0, 1.8, 2.0], [2.0, 1.5, 1.0, 1.5, 1.0]) == pytest.approx(
        [1.0, 0.0, 0.0, 0.3, 0.5])


def test_the_padded_canary_flags_a_judge_that_always_prefers_the_longer_answer(hh_pairs):
    m = calibrate(build_judge("test_always_longer"), hh_pairs).metrics
    assert_intervals(m)
    assert m["judge/canary_padded_win_pct"] == 100.0 and m["judge/canary_flag"] == 1.0
    # the constant answer wins exactly where the human pick is shorter than it (ties at equal length count 0)
    shorter = sum(len(p.chosen) < len(NULL_ANSWER) for p in hh_pairs.pairs)
    assert m["judge/canary_null_win_pct"] == pytest.approx(100 * shorter / N_PAIRS)
    low, high = wilson_interval(1.0, N_PAIRS)
    assert (m["judge/canary_padded_win_pct_ci_low"], m["judge/canary_padded_win_pct_ci_high"]) == pytest.approx(
        (100 * low, 100 * high))


def test_the_null_canary_flags_a_judge_that_always_picks_the_first_slot(hh_pairs):
    cal = calibrate(build_judge("test_first_slot"), hh_pairs)
    m = cal.metrics
    # the canary is shown first in one order of each pair, and wins there: half of all verdicts
    assert m["judge/canary_null_win_pct"] == 50.0 and m["judge/canary_padded_win_pct"] == 50.0
    assert m["judge/canary_flag"] == 1.0
    assert all(p["canary_null"] == {"forward": 1.0, "swapped": 2.0} for p in cal.per_pair)


@JUDGES.register("test_substance")
class SubstanceJudge:
    """Prefers the answer with more distinct words that are not filler: content, not length, and never the
    constant answer over a real one. A sound judge, as far as the canaries can tell."""

    name, fingerprint = "test_substance", "test_substance:v1"
    filler = {w.lower().strip(".,") for s in FILLER_SENTENCES for w in s.split()} | \
        {w.lower().strip(".,") for w in NULL_ANSWER.split()}

    def judge(self, items):
        def substance(text):
            return len({w.lower().strip(".,") for w in text.split()} - self.filler)

        scores = [(substance(i.output_1), substance(i.output_2)) for i in items]
        return [1.0 if a > b else 2.0 if b > a else 1.5 for a, b in scores]


def test_a_judge_that_rewards_content_is_not_flagged(hh_pairs):
    m = calibrate(build_judge("test_substance"), hh_pairs).metrics
    # padding adds only filler words, so the padded answer never has more substance: a tie at best
    assert m["judge/canary_padded_win_pct"] == 0.0
    # the constant answer has no substance: it loses to every pick that has any
    assert m["judge/canary_null_win_pct"] == 0.0 and m["judge/canary_flag"] == 0.0


def test_canaries_are_stored_with_the_calibration_and_gate_rules_read_them(tmp_path, hh_pairs):
    from evals.catalog import known_metrics
    from harness.config import GateRule
    from harness.gate import gate
    from harness.tracking import Tracker

    tracker = Tracker(tmp_path, "cells")
    rules = [GateRule(name="judge_not_length_gamed", metric="judge/canary_padded_win_pct", max=60),
             GateRule(name="judge_rejects_null", metric="judge/canary_null_win_pct", max=10),
             GateRule(name="canary_flag", metric="judge/canary_flag", max=0, statistic="point")]
    specs = known_metrics()
    for key in ("judge/canary_null_win_pct", "judge/canary_padded_win_pct", "judge/canary_flag"):
        assert specs[key].higher_is_better is False  # lower is better: a ceiling rule reads the upper bound

    def decide(judge_name: str):
        found, _ = cell_judge_calibration(tracker, judge_name, None)
        return gate({"winrate/lc_win_rate_pct": 70.0} | found, {"reference": {}}, rules, specs=specs)

    # uncalibrated: every canary rule fails closed, saying how to get the figures
    decision = decide("test_always_longer")
    assert decision.verdict == "BLOCK" and len(decision.failed) == 3
    assert all(NO_CANARIES in c.reason for c in decision.failed)

    for name in ("test_always_longer", "test_substance"):
        record_calibration(calibrate(build_judge(name), hh_pairs), tmp_path)
    decision = decide("test_always_longer")
    failed = {c.name for c in decision.failed}
    assert decision.verdict == "BLOCK" and {"judge_not_length_gamed", "canary_flag"} <= failed
    # the substance judge: 0 of 40 verdicts, Wilson upper bound 8.8% < 10: shown below both ceilings
    decision = decide("test_substance")
    assert decision.verdict == "PROMOTE", [c.reason for c in decision.failed]
    assert decision.checks[1].confidence_bound == pytest.approx(100 * wilson_interval(0.0, N_PAIRS)[1])

    # a calibration stored without canaries leaves them missing: the rules fail closed
    record_calibration(calibrate(build_judge("test_substance"), hh_pairs, canaries=False), tmp_path)
    found, _ = cell_judge_calibration(tracker, "test_substance", None)
    assert "judge/agreement_pct" in found and not any(k.startswith("judge/canary_") for k in found)
    assert decide("test_substance").verdict == "BLOCK"


def test_the_cli_prints_the_canaries_and_warns_on_a_flagged_judge(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")  # rich wraps table cells at the terminal's width
    code = main(["judge", "calibrate", "--judge", "test_always_longer", "--labels", str(HH), "--limit", "10",
                 "--no-record", "--output-dir", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 0
    assert "reference padded to 2x length wins" in out and "100.0%" in out and "FLAGGED" in out
    assert "canary flag:" in out


# ---------------------------------------------------------------- bad input: exit 2, the place named, no traceback


def _bad(capsys, tmp_path, *args) -> str:
    code = main(["judge", "calibrate", "--output-dir", str(tmp_path / "runs"), *args])
    out, err = capsys.readouterr()
    assert code == 2, (out, err)
    assert "Traceback" not in err and err.startswith("error: ")
    assert not (tmp_path / "runs" / "mlflow.db").exists()  # nothing recorded
    return err


def test_bad_label_files_name_the_file_row_and_field(tmp_path, capsys):
    bad = tmp_path / "labels.jsonl"
    bad.write_text('{"chosen": "a", "rejected": "b"}\n{"chosen": "c"}\n')
    err = _bad(capsys, tmp_path, "--judge", "rule", "--labels", str(bad))
    assert f"{bad}: row 2: missing field 'rejected'" in err
    thumbs = tmp_path / "thumbs.jsonl"
    thumbs.write_text('{"prompt": "p", "completion": "c", "label": true}\n')
    assert "unpaired feedback" in _bad(capsys, tmp_path, "--judge", "rule", "--labels", str(thumbs))
    broken = tmp_path / "broken.jsonl.gz"
    broken.write_bytes(b"not gzip at all")
    assert "not a readable gzip file" in _bad(capsys, tmp_path, "--judge", "rule", "--labels", str(broken))
    assert "no such file" in _bad(capsys, tmp_path, "--judge", "rule", "--labels", str(tmp_path / "none.jsonl"))
    assert "--limit" in _bad(capsys, tmp_path, "--judge", "rule", "--labels", str(HH), "--limit", "0")


def test_bad_judge_configs_name_the_field(tmp_path, capsys):
    llm = tmp_path / "llm.yaml"
    llm.write_text("name: llm\nmodel: m\nmax_concurrency: 0\n")
    err = _bad(capsys, tmp_path, "--judge", str(llm), "--labels", str(HH))
    assert "base_url: field required" in err and "max_concurrency" in err
    err = _bad(capsys, tmp_path, "--judge", "rulez", "--labels", str(HH))
    assert "unknown judge 'rulez'" in err and "did you mean 'rule'" in err
    assert "no such judge config file" in _bad(capsys, tmp_path, "--judge", str(tmp_path / "x.yaml"), "--labels", str(HH))
    unknown_template = tmp_path / "llm2.yaml"
    unknown_template.write_text("name: llm\nbase_url: http://127.0.0.1:1/v1\nmodel: m\nannotator_config: nope\n")
    assert "unknown annotator config 'nope'" in _bad(capsys, tmp_path, "--judge", str(unknown_template),
                                                     "--labels", str(HH))


def test_an_experiment_config_lends_its_eval_judge(tmp_path):
    config = tmp_path / "exp.yaml"
    config.write_text("model: {name: embedded:tiny}\nvariant: dpo\neval:\n  judge: {name: test_first_slot}\n")
    assert judge_spec_from_text(str(config)) == {"name": "test_first_slot"}
    assert judge_spec_from_text(str(Path(__file__).parents[2] / "experiments" / "tiny.yaml")) == "rule"
