"""LC win rate: equivalence with alpaca-eval 0.6.6 on real AlpacaEval 2.0 annotations, plus synthetic checks.

The validation data (CC BY-NC 4.0, testing only) lives outside the project and is read in place;
see its README.md for what each file holds and why the tolerances below are what they are.
"""
from __future__ import annotations

import gzip
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from evals import lc_winrate as lcw
from evals.lc_winrate import AnnotationError, LCWinRate, lc_winrate, load_annotations
from evals.metrics import METRICS

VALIDATION_DIR = Path(__file__).resolve().parents[2].parent / "shared" / "validation" / "alpaca_eval"

# Hard-coded rather than globbed, so a file that goes missing fails instead of shrinking the test.
VALIDATION_MODELS = [
    "gpt4_1106_preview",
    "NullModel",
    "FuseChat-Gemma-2-9B-Instruct",
    "FuseChat-Llama-3.2-1B-Instruct",
    "vicuna-13b-v1.5-togetherai",
    "gpt-3.5-turbo-1106_verbose",
    "gpt-3.5-turbo-1106_concise",
    "claude-2",
    "gpt4_gamed",
    "alpaca-7b_verbose",
]

# README: raw win rate is exact; LC from the reconstructed inputs should match alpaca-eval's own
# output to numerical precision, and the published LC within 2.5 pp (the inputs are estimates).
RAW_WIN_RATE_TOLERANCE_PCT = 1e-6
LC_VS_ALPACA_EVAL_TOLERANCE_PCT = 0.01
LC_VS_PUBLISHED_TOLERANCE_PCT = 2.5


@pytest.fixture(scope="module")
def validation_dir() -> Path:
    if not (VALIDATION_DIR / "README.md").exists():
        pytest.skip(f"AlpacaEval validation data not found at {VALIDATION_DIR} (shared/validation is not in the repo)")
    return VALIDATION_DIR


@pytest.fixture(scope="module")
def official_inputs(validation_dir):
    reconstructed = validation_dir / "reconstructed"
    return dict(
        instruction_difficulty=lcw.load_instruction_difficulty(reconstructed / "instruction_difficulty_reconstructed.csv"),
        gamed_rows=lcw.load_gamed_rows(reconstructed / "df_gamed_reconstructed.csv.gz"),
    )


@pytest.fixture(scope="module")
def leaderboard(validation_dir) -> pd.DataFrame:
    return pd.read_csv(validation_dir / "leaderboard.csv").set_index("name")


@pytest.fixture(scope="module")
def expected_offline(validation_dir) -> pd.DataFrame:
    return pd.read_csv(validation_dir / "expected_offline.csv").set_index("name")


def _annotations(validation_dir: Path, model: str) -> pd.DataFrame:
    return load_annotations(validation_dir / "annotations" / f"{model}.jsonl.gz")


def _pairs(preferences, generator_1="reference", generator_2="model", output_1=None, output_2=None) -> pd.DataFrame:
    n_rows = len(preferences)
    return pd.DataFrame(
        {
            "instruction": [f"prompt {i}" for i in range(n_rows)],
            "output_1": output_1 if output_1 is not None else [f"reference answer {i}" for i in range(n_rows)],
            "output_2": output_2 if output_2 is not None else [f"model answer {i}" for i in range(n_rows)],
            "preference": np.asarray(preferences, dtype=float),
            "generator_1": generator_1,
            "generator_2": generator_2,
        }
    )


# ------------------------------------------------------------------------------------------
# real AlpacaEval 2.0 annotations


@pytest.mark.parametrize("model", VALIDATION_MODELS)
def test_matches_leaderboard_and_alpaca_eval(model, validation_dir, official_inputs, leaderboard, expected_offline):
    # Bootstrap off: 10 models x 200 refits would take ~35 s; the CI is exercised separately.
    result = lc_winrate(_annotations(validation_dir, model), **official_inputs, n_bootstrap=0)
    published = leaderboard.loc[model]

    assert result.recipe == lcw.OFFICIAL_RECIPE
    assert abs(result.win_rate_pct - published["win_rate"]) < RAW_WIN_RATE_TOLERANCE_PCT
    assert abs(result.win_rate_stderr - published["standard_error"]) < RAW_WIN_RATE_TOLERANCE_PCT
    assert (result.n, result.n_wins, result.n_draws) == (published["n"], published["n_wins"], published["n_draws"])

    expected_lc_pct = expected_offline.loc[model, "lc_official_fn_reconstructed"]
    assert abs(result.lc_win_rate_pct - expected_lc_pct) < LC_VS_ALPACA_EVAL_TOLERANCE_PCT
    assert abs(result.lc_win_rate_pct - published["length_controlled_winrate"]) < LC_VS_PUBLISHED_TOLERANCE_PCT

    assert all(math.isnan(x) for x in (result.lc_ci_low, result.lc_ci_high, result.lc_win_rate_stderr))


def test_bootstrap_interval_on_real_annotations(validation_dir, official_inputs):
    annotations = _annotations(validation_dir, "claude-2")
    result = lc_winrate(annotations, **official_inputs, n_bootstrap=100, seed=7)

    assert result.lc_ci_low < result.lc_win_rate_pct < result.lc_ci_high
    assert result.win_rate_ci_low < result.win_rate_pct < result.win_rate_ci_high
    # claude-2's LC (~30.5) is far above its raw win rate (~17.2); the intervals must not blur that
    assert result.win_rate_ci_high < result.lc_ci_low
    assert 0 < result.lc_win_rate_stderr < 5
    assert lc_winrate(annotations, **official_inputs, n_bootstrap=100, seed=7) == result  # seeded


def test_never_touches_the_hub(validation_dir, official_inputs, monkeypatch):
    glm_winrate, _ = lcw._alpaca_eval()

    def no_network(*args, **kwargs):
        raise AssertionError("hf_hub_download must never be called")

    monkeypatch.setattr(glm_winrate, "hf_hub_download", no_network)
    lc_winrate(_annotations(validation_dir, "gpt4_gamed"), **official_inputs, n_bootstrap=2)
    lc_winrate(_annotations(validation_dir, "gpt4_gamed"), n_bootstrap=2)


def test_real_model_against_itself_is_50(validation_dir, official_inputs):
    result = lc_winrate(_annotations(validation_dir, "gpt4_1106_preview"), **official_inputs, n_bootstrap=20)
    assert (result.win_rate_pct, result.lc_win_rate_pct) == (50.0, 50.0)
    assert (result.lc_ci_low, result.lc_ci_high) == (50.0, 50.0)


def test_official_recipe_needs_both_inputs(official_inputs):
    with pytest.raises(ValueError, match="needs both"):
        lc_winrate(_pairs([1, 2] * 5), instruction_difficulty=official_inputs["instruction_difficulty"])


# ------------------------------------------------------------------------------------------
# synthetic


def test_hand_computed_raw_win_rate():
    # model wins, reference wins, draw (0 is alpaca-eval's legacy draw), model mostly wins
    result = lc_winrate(_pairs([2.0, 1.0, 0.0, 1.75]), n_bootstrap=0)
    by_hand_pct = (1.0 + 0.0 + 0.5 + 0.75) / 4 * 100
    assert result.win_rate_pct == pytest.approx(by_hand_pct, abs=1e-12)
    assert (result.n, result.n_wins, result.n_draws) == (4, 2, 1)
    # every model answer is 4 characters shorter than the reference's: LC at equal length would extrapolate
    assert result.recipe == lcw.IDENTIFIED_RECIPE
    assert not result.lc_identified and "extrapolation" in result.lc_reason
    assert math.isnan(result.lc_win_rate_pct)
    assert "winrate/lc_win_rate_pct" not in result.to_summary()
    assert result.to_summary()["winrate/lc_identified"] == 0.0


def _length_biased_pairs(padding_low: int, n_rows: int = 200, seed: int = 0) -> pd.DataFrame:
    """The model answers like the reference, padded (or cut) by a varied amount; the judge only rewards length."""
    rng = np.random.default_rng(seed)
    reference_len_chars = rng.integers(700, 1500, n_rows)
    padding_len_chars = rng.integers(padding_low, 1200, n_rows)
    references = ["r" * int(length) for length in reference_len_chars]
    padded = [reference[: len(reference) + min(0, int(pad))] + "p" * max(0, int(pad))
              for reference, pad in zip(references, padding_len_chars)]
    # Judge in alpaca-eval's own length shape (logistic in tanh of the standardised length gap),
    # with equal quality: P(model wins) is exactly 1/2 at zero padding. Soft (weighted-judge)
    # preferences rather than sampled 1/2 outcomes, because 200 coin flips leave the no-length
    # intercept ~±15 pp uncertain and the test would be about luck, not about length control.
    std_len_gap = padding_len_chars / padding_len_chars.std(ddof=1)
    p_model_wins = 1 / (1 + np.exp(-3.0 * np.tanh(std_len_gap)))
    return _pairs(1 + p_model_wins, output_1=references, output_2=padded)


def test_always_longer_with_a_length_only_judge_is_not_identified():
    # The issue-18 case: alpaca-eval's minimal GLM extrapolated to equal length from data that never
    # go there (DESIGN: 0.35 [0.01, 2.9] always longer). Now: no LC, with the reason.
    result = lc_winrate(_length_biased_pairs(padding_low=1), n_bootstrap=20)
    assert result.win_rate_pct > 80
    assert not result.lc_identified
    assert "positive on 200, negative on 0" in result.lc_reason
    assert all(math.isnan(x) for x in (result.lc_win_rate_pct, result.lc_ci_low, result.lc_ci_high))


def test_injected_length_bias_is_removed_when_lengths_straddle():
    # the model pads some answers and cuts others: LC at equal length is an interpolation
    result = lc_winrate(_length_biased_pairs(padding_low=-600), n_bootstrap=0)
    assert result.recipe == lcw.IDENTIFIED_RECIPE and result.lc_identified
    assert result.win_rate_pct > 65
    assert abs(result.lc_win_rate_pct - 50) < 1
    # the soft verdicts are exactly the fitted curve: no residual noise, so the interval is (nearly) a point at 50
    assert result.lc_ci_low - 1e-6 <= 50 <= result.lc_ci_high + 1e-6 and result.lc_ci_high - result.lc_ci_low < 1


def test_no_signal_fit_still_gets_an_honest_interval():
    # Preferences unrelated to anything: the unpenalised fit gives LC near 50 with an interval of
    # the width 60 noisy verdicts allow (alpaca-eval's CV shrank it to exactly 50, no width).
    rng = np.random.default_rng(1)
    n_rows = 60
    pairs = _pairs(
        rng.uniform(1, 2, n_rows),
        output_1=["a" * int(n) for n in rng.integers(10, 100, n_rows)],
        output_2=["b" * int(n) for n in rng.integers(10, 100, n_rows)],
    )
    result = lc_winrate(pairs, n_bootstrap=20)
    assert result.lc_identified
    assert result.lc_ci_low < 50 < result.lc_ci_high
    assert result.lc_ci_high - result.lc_ci_low > 2
    assert result.lc_win_rate_stderr > 0


def test_cli_reports_lc_not_identified_for_a_length_gamed_policy(tmp_path, capsys):
    from harness.cli import main

    pairs = _length_biased_pairs(padding_low=1, n_rows=100)
    path = tmp_path / "gamed.jsonl"
    path.write_text("".join(json.dumps(record) + "\n" for record in pairs.to_dict(orient="records")))
    assert main(["lc-winrate", str(path), "--n-bootstrap", "0", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["win_rate_pct"] > 80
    assert out["lc_identified"] is False and "extrapolation" in out["lc_reason"]


def test_model_against_itself_is_50_by_construction():
    outputs = [f"same answer {i}" for i in range(30)]
    pairs = _pairs([0.0] * 30, generator_1="m", generator_2="m", output_1=outputs, output_2=outputs)
    result = lc_winrate(pairs, n_bootstrap=20)
    assert (result.win_rate_pct, result.lc_win_rate_pct) == (50.0, 50.0)
    assert (result.win_rate_ci_low, result.win_rate_ci_high, result.lc_ci_low, result.lc_ci_high) == (50.0,) * 4
    assert result.lc_win_rate_stderr == 0.0


def test_summary_keys_and_registered_metrics():
    result = LCWinRate(60.0, 1.0, 55.0, 2.0, 10, 6, 0, 51.0, 59.0, 58.0, 62.0, lcw.IDENTIFIED_RECIPE)
    raw_keys = {
        "winrate/win_rate_pct": 60.0,
        "winrate/win_rate_pct_stderr": 1.0,
        "winrate/win_rate_pct_ci_low": 58.0,
        "winrate/win_rate_pct_ci_high": 62.0,
        "winrate/n": 10,
    }
    assert result.to_summary() == raw_keys | {
        "winrate/lc_identified": 1.0,
        "winrate/lc_win_rate_pct": 55.0,
        "winrate/lc_win_rate_pct_stderr": 2.0,
        "winrate/lc_win_rate_pct_ci_low": 51.0,
        "winrate/lc_win_rate_pct_ci_high": 59.0,
    }
    assert result.to_dict()["recipe"] == lcw.IDENTIFIED_RECIPE
    unidentified = LCWinRate(60.0, 1.0, math.nan, math.nan, 10, 6, 0, math.nan, math.nan, 58.0, 62.0,
                             lcw.IDENTIFIED_RECIPE, lc_identified=False, lc_reason="one-sided")
    assert unidentified.to_summary() == raw_keys | {"winrate/lc_identified": 0.0}  # a rule on LC fails closed
    for key in ("winrate/win_rate_pct", "winrate/lc_win_rate_pct"):
        spec = METRICS.get(key)
        assert spec.higher_is_better is True and spec.unit == "pct"


# ------------------------------------------------------------------------------------------
# bad input


def _good_record(i: int = 0) -> dict:
    return dict(instruction=f"q{i}", output_1="a", output_2="b", preference=2.0, generator_1="ref", generator_2="m")


def test_bad_json_line_names_file_and_line(tmp_path):
    path = tmp_path / "annotations.jsonl.gz"
    lines = [json.dumps(_good_record(0)), json.dumps(_good_record(1)), '{"instruction": "q2", "output_1": ', ""]
    with gzip.open(path, "wt", encoding="utf-8") as handle:
        handle.write("\n".join(lines))
    with pytest.raises(AnnotationError, match=rf"{path.name}.*line 3.*invalid JSON"):
        load_annotations(path)


@pytest.mark.parametrize(
    ("broken_field", "value", "message"),
    [("preference", "B", "field 'preference'"), ("preference", 3.0, "field 'preference'"), ("output_2", None, "field 'output_2'")],
)
def test_bad_field_names_file_line_and_field(tmp_path, broken_field, value, message):
    bad_record = _good_record(1) | {broken_field: value}
    path = tmp_path / "annotations.jsonl"
    path.write_text("\n".join(json.dumps(record) for record in [_good_record(0), bad_record]) + "\n")
    with pytest.raises(AnnotationError, match=rf"{path.name}, line 2, {message}"):
        load_annotations(path)


def test_missing_field_is_named(tmp_path):
    record = _good_record()
    del record["generator_2"]
    path = tmp_path / "annotations.json"
    path.write_text(json.dumps([_good_record(), record]))  # a JSON list: errors name the record
    with pytest.raises(AnnotationError, match=r"record 2, field 'generator_2': missing"):
        load_annotations(path)


def test_json_list_round_trip(tmp_path):
    path = tmp_path / "annotations.json"
    path.write_text(json.dumps([_good_record(i) for i in range(3)]))
    annotations = load_annotations(path)
    assert list(annotations["instruction"]) == ["q0", "q1", "q2"]
    assert annotations["preference"].dtype == float
