import subprocess
import sys
from pathlib import Path

import pytest

from harness.config import load_config, validate_config
from harness.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]
VALID = {"model": {"name": "embedded:tiny"}, "variant": "dpo"}


def _problems(raw: dict) -> str:
    with pytest.raises(ConfigError) as info:
        validate_config(raw, source="x.yaml")
    return str(info.value)


def test_every_problem_is_reported_at_once_with_its_field_path():
    message = _problems({"variant": "dpo", "beta": "high", "trainig": {}, "model": {}})
    assert "x.yaml" in message
    assert "beta" in message  # wrong type
    assert "trainig" in message  # unknown key
    assert "model.name" in message  # missing field


def test_cli_exits_2_naming_all_three_without_traceback(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("variant: dpo\nbeta: high\ntrainig: {max_steps: 3}\nmodel: {}\n")
    proc = subprocess.run([sys.executable, "-m", "harness.cli", "run", str(bad)], capture_output=True, text=True,
                          cwd=REPO, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    for needle in (str(bad), "beta", "trainig", "model.name"):
        assert needle in proc.stderr


def test_set_overrides_reach_nested_fields_and_parse_types(tmp_path):
    config = load_config(REPO / "experiments" / "tiny.yaml",
                         ["variant=ipo", "beta=0.2", f"output_dir={tmp_path}", "data.source=hf:org/name",
                          "training.max_steps=3"])
    assert (config.variant, config.beta, config.output_dir) == ("ipo", 0.2, tmp_path)
    assert config.data.source == "hf:org/name" and config.training.max_steps == 3


def test_cell_key_is_stable_and_ignores_paths_but_not_training_settings(tmp_path):
    a = validate_config(VALID | {"output_dir": str(tmp_path / "a")})
    b = validate_config(VALID | {"output_dir": str(tmp_path / "b")})
    c = validate_config(VALID | {"beta": 0.3})
    assert a.cell_key() == b.cell_key()
    assert a.cell_key() != c.cell_key()
    assert a.cell_key().startswith("dpo-b0.1-s0-")  # the variant's paper default beta


def test_unknown_gate_metric_suggests_the_closest_names():
    message = _problems(VALID | {"gate": {"rules": [{"metric": "winrate/lc_winrate_pct", "min": 50}]}})
    assert "gate.rules.0.metric" in message and "winrate/lc_win_rate_pct" in message


@pytest.mark.parametrize("raw, field", [
    ({"variant": "dpoo"}, "variant"),
    ({"beta": -1.0}, "beta"),
    ({"variant": "simpo", "variant_params": {"gamma": -0.5}}, "variant_params.gamma"),
    ({"variant_params": {"label_smoothing": 0.5}}, "variant_params.label_smoothing"),
    ({"variant": "ipo", "variant_params": {"alpha": 1.0}}, "variant_params.alpha"),
    ({"gate": {"rules": [{"metric": "kl/seq_kl_k1"}]}}, "gate.rules.0"),
])
def test_invalid_variant_settings_name_their_field(raw, field):
    assert field in _problems(VALID | raw)


def test_unknown_variant_suggests_a_name():
    assert "did you mean 'dpo'" in _problems(VALID | {"variant": "dpoo"})


# ---------------------------------------------------------------- checked when the config loads, not after training


def _load_problems(**raw) -> str:
    from harness.config import ConfigError, validate_config

    base = {"model": {"name": "embedded:tiny"}, "variant": "dpo"}
    try:
        validate_config(base | raw)
    except ConfigError as exc:
        return str(exc)
    return ""


@pytest.mark.parametrize("raw, fragment", [
    ({"registry": {"alias": "latest"}}, "reserved by MLflow"),
    ({"registry": {"alias": "V3"}}, "reserved by MLflow"),
    ({"registry": {"alias": "my champion"}}, "registry.alias"),
    ({"name": ""}, "name"),
    ({"name": "../../etc"}, "name"),
    ({"seed": -1}, "seed"),
    ({"eval": {"domain_tasks": ["harness_arith"]}}, "did you mean 'harness_arith_mc'"),
    ({"eval": {"domain_tasks": ["ifeval_local"], "ifeval": {"data_file": "/nonexistent/input.jsonl"}}},
     "eval.ifeval.data_file: /nonexistent/input.jsonl is not a file"),
    ({"eval": {"n_prompts": 24, "sequential": {"max_prompts": 48}}}, "exceeds eval.n_prompts (24)"),
    ({"eval": {"sequential": {"batch_prompts": 0}}}, "batch_prompts"),
    ({"eval": {"sequential": {"confidence": 1.0}}}, "confidence"),
])
def test_what_would_fail_after_training_fails_at_load(raw, fragment):
    assert fragment in _load_problems(**raw)


def test_cache_dir_under_a_file_fails_at_load(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    assert f"{blocker} is a file" in _load_problems(cache_dir=str(blocker / "cache"))


def test_an_lm_eval_task_outside_the_harness_declares_its_metrics_for_rules():
    from evals.catalog import known_metrics

    rule = {"metric": "domain_gsm8k/exact_match_strict-match", "min": 0.1}
    assert _load_problems(eval={"domain_tasks": ["gsm8k"]}, gate={"rules": [rule]}) == ""
    assert known_metrics()["domain_gsm8k/exact_match_strict-match"].higher_is_better is True
    assert "unknown task 'gsm8kk'; did you mean 'gsm8k'" in _load_problems(eval={"domain_tasks": ["gsm8kk"]})
