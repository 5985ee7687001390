"""What goes into MLflow comes back as it was, and no secret goes in (issue 16, findings 3b, 8, 11).

- Non-finite metrics through a real SQLite store: MLflow's SQL store keeps +-inf as +-1.797e308, so a
  re-gate would read a finite number; the tracker's client reads it back as the infinity it was.
- Redaction by value: URL credentials, authorization headers, bearer tokens, API-key shapes and the
  values of secret-named environment variables, wherever they sit in a config or a message, never reach
  params, tags, JSON artifacts, the recorded configs or judge errors; innocent values stay readable.
- Alias and registered-model names MLflow would refuse only when the alias moves (after training).
"""
import json
import math
import sys

import mlflow
import pytest

from evals.catalog import known_metrics
from harness.config import GateRule
from harness.gate import gate
from harness.tracking import Tracker, redact

# ---------------------------------------------------------------- 3b: non-finite metrics


def test_non_finite_metrics_read_back_as_logged_from_a_sqlite_store(tmp_path):
    tracker = Tracker(tmp_path, "nonfinite")
    run_id = tracker.start_run("cell", {})
    tracker.log_metrics({"kl/seq_kl_k3": math.inf, "winrate/lc_win_rate_pct": math.inf, "length/ratio_tokens": -math.inf,
                         "kl/seq_kl_k1": math.nan, "kl/token_kl_k3": 2.5, "big": 1e300})
    tracker.end_run("FINISHED")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    raw = mlflow.MlflowClient(uri, uri).get_run(run_id).data.metrics
    assert raw["winrate/lc_win_rate_pct"] == sys.float_info.max  # what the store really holds: a finite stand-in

    fresh = Tracker(tmp_path, "nonfinite", create=False)  # a re-gate: a new process reads the run back
    metrics = fresh.run_metrics(run_id)
    assert metrics["kl/seq_kl_k3"] == math.inf and metrics["winrate/lc_win_rate_pct"] == math.inf
    assert metrics["length/ratio_tokens"] == -math.inf
    assert math.isnan(metrics["kl/seq_kl_k1"])  # logged and read back as NaN: what the live gate saw
    assert metrics["kl/token_kl_k3"] == 2.5 and metrics["big"] == 1e300
    # every reader goes through the tracker's client: runs, searches and histories agree
    assert fresh.client.get_run(run_id).data.metrics["winrate/lc_win_rate_pct"] == math.inf
    [searched] = fresh.client.search_runs([fresh.experiment_id])
    assert searched.data.metrics["length/ratio_tokens"] == -math.inf
    [point] = fresh.client.get_metric_history(run_id, "kl/seq_kl_k3")
    assert point.value == math.inf

    # what that changes: on the stand-in a floor passes, on the metric as logged it fails closed
    rule = GateRule(metric="winrate/lc_win_rate_pct", min=50, statistic="point")
    decide = lambda m: gate(m, {"reference": {}}, [rule], specs=known_metrics(), errors={}).verdict  # noqa: E731
    assert decide(raw) == "PROMOTE"
    assert decide(metrics) == "BLOCK"


# ---------------------------------------------------------------- 11: names MLflow refuses late


@pytest.mark.parametrize("name", ["champion", "prod-2", "shadow_b", "latest", "LATEST", "Latest", "v1", "V12", "v1a",
                                  "version1", "v", "", "a b", "champion/prod", "x" * 255, "x" * 256, "café"])
def test_alias_problem_agrees_with_mlflow(name):
    from mlflow.exceptions import MlflowException
    from mlflow.utils.validation import _validate_model_alias_name, _validate_model_alias_name_reserved

    try:
        _validate_model_alias_name(name)
        _validate_model_alias_name_reserved(name)
        mlflow_accepts = True
    except MlflowException:
        mlflow_accepts = False
    from harness.tracking import alias_problem

    problem = alias_problem(name)
    assert (problem is None) == mlflow_accepts, problem
    if problem:
        assert repr(name[:20]) in problem or not name


@pytest.mark.parametrize("name", ["po-harness", "team/model", "a:b", "", "  ", ".", "..", "../x", "a/../b", "x ", "ok.v2"])
def test_model_name_problem_agrees_with_mlflow(name):
    from mlflow.exceptions import MlflowException
    from mlflow.utils.validation import _validate_model_name

    try:
        _validate_model_name(name)
        mlflow_accepts = True
    except MlflowException:
        mlflow_accepts = False
    from harness.tracking import model_name_problem

    assert (model_name_problem(name) is None) == mlflow_accepts, model_name_problem(name)


# ---------------------------------------------------------------- 8: redaction by value

# every shape the issue names, placed under keys that do not look secret
URL_PASSWORD = "hunter2-correct-horse"
URL_KEY = "sk-proj-9aZbYcXdWeVf8gUh7iTj"
BEARER = "tok_live_4f9d8c7b6a5e4d3c2b1a"
SHAPES = {
    "openai": "sk-ant-api03-AbCdEfGhIjKlMnOpQrSt",
    "huggingface": "hf_AbCdEfGhIjKlMnOpQrStUvWxYz12",
    "github": "ghp_AbCdEfGhIjKlMnOpQrStUvWxYz1234567890",
    "aws": "AKIAIOSFODNN7EXAMPLE",
    "jwt": "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dBjftJeZ4CVPmB92K27uhbUJU1p1r",
    "query": "qs-secret-value-77",
    "opaque_header": "opaque-credential-0042",  # no known shape: secret by where it sits
}
SECRETS = [URL_PASSWORD, URL_KEY, BEARER, "alice", *SHAPES.values()]


def _poisoned() -> dict:
    """A flat params dict and a nested config carrying every shape, with innocent neighbours."""
    return {
        "registry.tracking_uri": f"https://alice:{URL_PASSWORD}@mlflow.example.com:5000",
        "eval.judge.base_url": f"http://alice:{URL_KEY}@judge.internal:8080/v1",
        "eval.judge.completions_kwargs": {"extra_headers": {"Authorization": f"Bearer {BEARER}",
                                                            "X-Trace": f"Bearer {BEARER}",
                                                            "X-Custom": SHAPES["opaque_header"]},
                                          "extra_body": {"note": f"use {SHAPES['huggingface']} here"}},
        "notes": [SHAPES["github"], {"deep": [SHAPES["aws"], SHAPES["jwt"]]}, f"key {SHAPES['openai']}"],
        "eval.judge.endpoint": f"https://api.example.com/v1?api_key={SHAPES['query']}&model=m1",
        "data.source": "hf:trl-lib/ultrafeedback_binarized",
        "eval.judge.api_key_env": "OPENAI_API_KEY",  # the variable's NAME: not a secret, kept
        "training.max_new_tokens": 256,
        "message": "Token indices sequence length is longer than the specified maximum",
    }


def test_redact_removes_secrets_by_value_wherever_they_sit_and_keeps_the_rest():
    text = json.dumps(redact(_poisoned()))
    leaked = [s for s in SECRETS if s in text]
    assert not leaked, leaked
    for kept in ("hf:trl-lib/ultrafeedback_binarized", "OPENAI_API_KEY", "judge.internal:8080/v1",
                 "mlflow.example.com:5000", '"training.max_new_tokens": 256', "model=m1",
                 "Token indices sequence length is longer"):
        assert kept in text, kept


def test_values_of_secret_named_environment_variables_are_scrubbed_whatever_their_shape(monkeypatch):
    from harness.redaction import scrub_text

    monkeypatch.setenv("ACME_SERVICE_TOKEN", "zz9-plural-z-alpha")  # no known shape
    monkeypatch.setenv("ACME_DEBUG", "zz9-plural-z-alpha-not-secret-name")
    assert scrub_text("refused: zz9-plural-z-alpha") == "refused: ***"
    assert redact({"cmd": ["--token-file", "zz9-plural-z-alpha"]}) == {"cmd": ["--token-file", "***"]}
    # where a secret lives is no secret: the working directory ($PWD) and key-file paths stay readable
    monkeypatch.setenv("PWD", "/work/some/checkout")
    monkeypatch.setenv("SSL_KEY", "/etc/ssl/private/server.pem")
    text = "/work/some/checkout/data.jsonl: row 3; cert /etc/ssl/private/server.pem"
    assert scrub_text(text) == text


def test_nothing_the_tracker_writes_holds_a_secret(tmp_path):
    tracker = Tracker(tmp_path, "secrets")
    tracker.start_run("cell", {"harness.note": f"from http://alice:{URL_PASSWORD}@host"})
    params = _poisoned()
    tracker.log_params(params)
    tracker.set_tags({"harness.error": f"ConnectionError: POST http://alice:{URL_KEY}@judge.internal/v1 "
                                       f"headers={{'Authorization': 'Bearer {BEARER}'}}"})
    # JSON artifacts: values scrubbed here; keys are the caller's business (config.json comes key-redacted)
    text = tracker.log_json({"errors": {"winrate": f"JudgeError: {SHAPES['openai']} at http://alice:{URL_KEY}@h/v1"},
                             "config": redact(params)}, "x.json")
    tracker.end_run("FINISHED")
    assert not [s for s in SECRETS if s in text]
    run = tracker.client.get_run(tracker.run_id)
    stored = json.dumps([run.data.params, run.data.tags])
    assert not [s for s in SECRETS if s in stored]
    assert run.data.params["data.source"] == "hf:trl-lib/ultrafeedback_binarized"
    assert json.loads(tracker.load_text(tracker.run_id, "x.json")) == json.loads(text)
    for f in tmp_path.rglob("*"):  # the database file and every artifact, byte for byte
        if f.is_file():
            data = f.read_bytes()
            assert not [s for s in SECRETS if s.encode() in data], f


def test_the_recorded_config_has_no_secret_and_still_validates():
    from harness.config import validate_config
    from harness.recording import redacted_config

    config = validate_config({
        "model": {"name": "embedded:tiny"}, "variant": "dpo",
        "registry": {"model_name": "po-harness-tiny", "tracking_uri": f"https://alice:{URL_PASSWORD}@mlflow.example.com"},
        "eval": {"judge": {"name": "llm", "base_url": f"http://alice:{URL_KEY}@judge.internal:8080/v1", "model": "m",
                           "completions_kwargs": {"extra_headers": {"Authorization": f"Bearer {BEARER}"},
                                                  "extra_query": {"key": SHAPES["query"]}}}}})
    recorded = redacted_config(config)
    text = json.dumps(recorded)
    assert not [s for s in SECRETS if s in text], text
    assert recorded["eval"]["judge"]["base_url"] == "http://***@judge.internal:8080/v1"
    # a re-gate validates the recorded config again: redaction must leave it a valid config
    again = validate_config(recorded, source="config.json")
    assert again.eval.judge.model == "m" and again.registry.model_name == "po-harness-tiny"


def test_a_tag_write_that_collides_with_another_writers_insert_is_retried_and_others_are_not(tmp_path, monkeypatch):
    """Two processes setting the same new registered-model tag at once: MLflow's SQL store reads, finds no row,
    and both insert; one fails on the UNIQUE constraint (seen on a tracking server in the promotion race).
    The write is retried (it then updates the row); a UNIQUE failure of a create is not retried."""
    import harness.tracking as tracking

    tracker = Tracker(tmp_path, "collide")
    tracker.ensure_registered_model("m")
    monkeypatch.setattr(tracking.time, "sleep", lambda s: None)
    real, calls = tracker.client.set_registered_model_tag, []

    def collides_once(*args):
        calls.append(args)
        if len(calls) == 1:
            raise mlflow.exceptions.MlflowException("(sqlite3.IntegrityError) UNIQUE constraint failed: "
                                                    "registered_model_tags.key, registered_model_tags.name")
        return real(*args)

    monkeypatch.setattr(tracker.client, "set_registered_model_tag", collides_once)
    tracker.set_model_tag("m", "lease", "mine")
    assert len(calls) == 2 and tracker.model_tags("m")["lease"] == "mine"

    def create_collides(*args, **kwargs):
        raise mlflow.exceptions.MlflowException("UNIQUE constraint failed: registered_models.name")

    monkeypatch.setattr(tracker.client, "create_registered_model", create_collides)
    with pytest.raises(mlflow.exceptions.MlflowException):
        tracker.ensure_registered_model("another")
