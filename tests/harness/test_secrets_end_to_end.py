"""Secrets given to the LLM judge reach its server and nothing else (issue 16, finding 8).

A loopback OpenAI-compatible server (a few lines of http.server) records what each request carried.
The judge is configured with a base URL holding `user:password@`, an API-key header and a signed query
parameter in `eval.judge.completions_kwargs`, and an API key in the environment variable it names.
The server must receive them; no file written (MLflow database and artifacts, the checkpoint's
harness_config.json, the HTML report, generations, judge work files, caches), no log line and no
printed output may hold any of them. One case runs the whole tiny experiment through the CLI.

An eval whose failing request names its URL's password, a bearer token and a credential (the review's case) must
leave none of them on the console, in its traceback file, in the report or in MLflow.
"""
import base64
import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from evals.judges import JudgeError, JudgeItem, build_judge

REPO = Path(__file__).resolve().parents[2]
URL_USER, URL_PASSWORD = "alice", "pw-7f3a9c2e41d8"
HEADER_KEY = "hf_AbCdEfGhIjKlMnOpQrStUvWxYz12"
QUERY_SIG = "sig-0a1b2c3d4e5f6071"
ENV_NAME, ENV_KEY = "ACME_JUDGE_CREDENTIAL", "zz9-plural-z-alpha-42"  # a key of no known shape
SECRETS = [URL_PASSWORD, HEADER_KEY, QUERY_SIG, ENV_KEY, base64.b64encode(f"{URL_USER}:{URL_PASSWORD}".encode()).decode()]


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.requests: list[dict] = []


class _Handler(BaseHTTPRequestHandler):
    def do_POST(self):  # noqa: N802 (http.server's name)
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
        self.server.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
        # the policy (output_2) wins every other request: verdicts that are not all ties
        answer = "Output (b)" if len(self.server.requests) % 2 else "Output (a)"
        reply = json.dumps({"id": "x", "object": "chat.completion", "created": 0, "model": body.get("model", "m"),
                            "choices": [{"index": 0, "finish_reason": "stop",
                                         "message": {"role": "assistant", "content": answer}}],
                            "usage": {"prompt_tokens": 10, "completion_tokens": 3, "total_tokens": 13}}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, *args):  # keep the test output quiet
        pass


@pytest.fixture
def server():
    srv = _Server()
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def _judge_spec(port: int) -> dict:
    return {"name": "llm", "base_url": f"http://{URL_USER}:{URL_PASSWORD}@127.0.0.1:{port}/v1", "model": "m",
            "api_key_env": ENV_NAME, "max_concurrency": 1, "timeout_s": 10,
            "completions_kwargs": {"max_tokens": 8, "extra_headers": {"X-Api-Key": HEADER_KEY},
                                   "extra_query": {"signature": QUERY_SIG}}}


# what an eval's failing request may say about itself (the red-team review's case): the URL's password, the bearer
# token of its headers, a credential of no known shape under a secret name; and rich markup that must print as text
HOSTILE_PASSWORD, HOSTILE_BEARER, HOSTILE_CREDENTIAL = "S3cretPassw0rd", "abcdef0123456789abcdef", "Zq81aaaabbbbccccdddd"
HOSTILE = [HOSTILE_PASSWORD, HOSTILE_BEARER, HOSTILE_CREDENTIAL]


def _hostile_eval(ctx):
    try:
        raise ConnectionError(f"failed http://alice:{HOSTILE_PASSWORD}@host/v1 headers "
                              f"{{'Authorization': 'Bearer {HOSTILE_BEARER}'}}")
    except ConnectionError as exc:  # a chained cause: the traceback holds both messages
        raise RuntimeError(f"[bold]judge call failed with credentials={HOSTILE_CREDENTIAL}") from exc


def _with_hostile_eval(monkeypatch, keep_registered: bool) -> None:
    """The eval registry as it is (or empty), plus `leaky`, whose request fails with secrets in its message."""
    from evals import registry

    evals = registry.Registry("eval")
    for name in registry.EVALS if keep_registered else []:
        evals.add(name, registry.EVALS.get(name))
    evals.add("leaky", registry.EvalSpec("leaky", _hostile_eval, ("leaky/",), lambda ctx: True))
    monkeypatch.setattr(registry, "EVALS", evals)


def _leaks(text: str) -> list[str]:
    return [s for s in SECRETS + HOSTILE if s in text]


def _leaking_files(*roots: Path) -> list[str]:
    found = []
    for root in roots:
        for f in Path(root).rglob("*"):
            if f.is_file():
                data = f.read_bytes()
                found += [f"{f}: {s}" for s in SECRETS + HOSTILE if s.encode() in data]
    return found


def test_the_llm_judge_sends_its_credentials_and_writes_or_logs_none(server, tmp_path, monkeypatch, caplog, capfd):
    monkeypatch.setenv(ENV_NAME, ENV_KEY)
    caplog.set_level(logging.DEBUG)
    judge = build_judge(_judge_spec(server.server_port), cache_dir=tmp_path)
    assert judge.judge([JudgeItem("Say hi.", "Hello.", "Hi there!")]) == [2.0]
    [request] = server.requests
    headers = {k.lower(): v for k, v in request["headers"].items()}
    # the server got every credential: the URL's user:password (httpx sends them as Basic auth, which takes
    # the Authorization header), the header and the query parameter from completions_kwargs
    assert headers["authorization"] == "Basic " + SECRETS[-1]
    assert headers["x-api-key"] == HEADER_KEY
    assert f"signature={QUERY_SIG}" in request["path"]
    out, err = capfd.readouterr()
    assert not _leaks(caplog.text + out + err)
    assert not _leaking_files(tmp_path)  # the judge's work files (alpaca-eval configs) and the verdict cache

    # the server gone: the error names the endpoint, not its credentials
    port = server.server_port
    server.shutdown()
    server.server_close()
    with pytest.raises(JudgeError) as info:
        build_judge(_judge_spec(port)).judge([JudgeItem("Say bye.", "Bye.", "Goodbye!")])
    assert f"127.0.0.1:{port}" in str(info.value) and not _leaks(str(info.value))
    out, err = capfd.readouterr()
    assert not _leaks(caplog.text + out + err)


def test_a_whole_run_with_secrets_in_its_judge_config_writes_none_of_them(server, tmp_path, monkeypatch, model_cache,
                                                                          caplog, capfd):
    from harness import cli

    monkeypatch.setenv(ENV_NAME, ENV_KEY)
    _with_hostile_eval(monkeypatch, keep_registered=True)  # and an eval whose failure message holds secrets
    caplog.set_level(logging.INFO)
    out_dir, cache = tmp_path / "runs", model_cache  # the session's model cache: the tiny model is built once
    sets = [f"output_dir={out_dir}", f"cache_dir={cache}", f"eval.judge={json.dumps(_judge_spec(server.server_port))}",
            "training.max_steps=2", "data.n_prompts=16", "eval.n_prompts=6", "eval.kl.n_prompts=2",
            "eval.diversity.n_prompts=0", "eval.domain_tasks=[]", "eval.n_bootstrap=10"]
    code = cli.main(["run", str(REPO / "experiments" / "tiny.yaml"), *[x for s in sets for x in ("--set", s)]])
    out, err = capfd.readouterr()
    assert code in (0, 1), err
    assert server.requests, "the judge never reached the server"
    assert all({k.lower(): v for k, v in r["headers"].items()}.get("x-api-key") == HEADER_KEY for r in server.requests)
    written = sorted(p.name for p in out_dir.rglob("*") if p.is_file())
    for name in ("mlflow.db", "config.json", "harness_config.json", "report.html", "eval_errors.json", "leaky.txt"):
        assert name in written, (name, written)
    assert not _leaking_files(out_dir, cache)
    assert not _leaks(caplog.text + out + err)
    # the recorded config still says where the judge was, without the credentials
    config = json.loads(next(out_dir.rglob("config.json")).read_text())
    assert config["eval"]["judge"]["base_url"] == f"http://***@127.0.0.1:{server.server_port}/v1"


def test_an_eval_failing_with_secrets_in_its_message_leaves_none_in_console_files_report_or_mlflow(
        tmp_path, monkeypatch, capfd):
    """The pipeline's own path for a crashed eval, without training: `_evaluate` (console line, the traceback
    file), the gate's failed check (tags and gate_decision.json), eval_errors.json, the HTML report logged."""
    from types import SimpleNamespace

    from harness import experiment
    from harness.gate import gate
    from harness.promotion import record_decision
    from harness.tracking import Tracker
    from reports.experiment import render_experiment_report

    _with_hostile_eval(monkeypatch, keep_registered=False)
    tracker = Tracker(tmp_path / "runs", "secrets")
    tracker.start_run("cell", {})
    cell_dir = tmp_path / "runs" / "cells" / "cell"
    outcome = experiment._evaluate(SimpleNamespace(), tracker, cell_dir, hooks={})
    assert list(outcome.errors) == ["leaky"]
    decision = gate({}, {"reference": {}}, [], specs={}, errors=outcome.errors, allow_promote_without_rules=True)
    assert decision.verdict == "BLOCK" and decision.first_failure == \
        "leaky_ran: eval 'leaky' failed: RuntimeError: [bold]judge call failed with credentials=***"
    record_decision(tracker, decision)
    tracker.log_json(outcome.errors, "eval_errors.json")
    report = render_experiment_report({"verdict": decision.verdict, "errors": outcome.errors,
                                       "checks": decision.to_dict()["checks"]}, cell_dir / "report.html")
    tracker.log_artifact(report)
    tracker.end_run("FINISHED")

    out, err = capfd.readouterr()
    assert "eval leaky failed:" in err and not _leaks(out + err)
    assert "RuntimeError: [bold]judge call" in err  # printed as text, not taken for markup
    traceback_text = (cell_dir / "errors" / "leaky.txt").read_text()
    # still a useful traceback: both exceptions, where they were raised, the endpoint without its password
    assert "ConnectionError: failed http://***@host/v1" in traceback_text and "Bearer ***" in traceback_text
    assert "RuntimeError: [bold]judge call failed with credentials=***" in traceback_text
    assert "_hostile_eval" in traceback_text
    html = report.read_text()
    assert "judge call failed with credentials=***" in html and not _leaks(html)
    run = tracker.client.get_run(tracker.run_id)
    assert run.data.tags["harness.block_reason"] == decision.first_failure
    assert not _leaks(str(run.data.tags) + str(run.data.params))
    assert not _leaking_files(tmp_path)  # errors/leaky.txt, report.html, mlflow.db and every artifact


def test_the_report_scrubs_eval_errors_recorded_unscrubbed():
    """A page rendered from errors nobody scrubbed (an older run's record) still holds no secret."""
    from reports.experiment import render_html

    html = render_html({"errors": {"leaky": f"ConnectionError: http://alice:{HOSTILE_PASSWORD}@host/v1 "
                                             f"passphrase: {HOSTILE_CREDENTIAL}"}})
    assert "http://***@host/v1" in html and not _leaks(html)


def test_a_config_error_naming_credentials_and_a_passphrase_prints_neither(tmp_path, capfd):
    from harness import cli

    judge = f"{{name: llmx, completions_kwargs: {{credentials: {HOSTILE_CREDENTIAL}, passphrase: Zq81eeeeffffgggghhhh}}}}"
    code = cli.main(["run", str(REPO / "experiments" / "tiny.yaml"), "--set", f"eval.judge={judge}",
                     "--set", f"output_dir={tmp_path}"])
    out, err = capfd.readouterr()
    assert code == 2 and "eval.judge" in err and "credentials" in err, err
    assert "Zq81" not in out + err
