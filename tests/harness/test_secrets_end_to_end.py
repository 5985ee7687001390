"""Secrets given to the LLM judge reach its server and nothing else (issue 16, finding 8).

A loopback OpenAI-compatible server (a few lines of http.server) records what each request carried.
The judge is configured with a base URL holding `user:password@`, an API-key header and a signed query
parameter in `eval.judge.completions_kwargs`, and an API key in the environment variable it names.
The server must receive them; no file written (MLflow database and artifacts, the checkpoint's
harness_config.json, the HTML report, generations, judge work files, caches), no log line and no
printed output may hold any of them. One case runs the whole tiny experiment through the CLI.
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


def _leaks(text: str) -> list[str]:
    return [s for s in SECRETS if s in text]


def _leaking_files(*roots: Path) -> list[str]:
    found = []
    for root in roots:
        for f in Path(root).rglob("*"):
            if f.is_file():
                data = f.read_bytes()
                found += [f"{f}: {s}" for s in SECRETS if s.encode() in data]
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
    for name in ("mlflow.db", "config.json", "harness_config.json", "report.html", "eval_errors.json"):
        assert name in written, (name, written)
    assert not _leaking_files(out_dir, cache)
    assert not _leaks(caplog.text + out + err)
    # the recorded config still says where the judge was, without the credentials
    config = json.loads(next(out_dir.rglob("config.json")).read_text())
    assert config["eval"]["judge"]["base_url"] == f"http://***@127.0.0.1:{server.server_port}/v1"
