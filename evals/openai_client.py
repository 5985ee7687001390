"""The OpenAI client class the LLM judge names in alpaca-eval's client config (`client_class`).

alpaca-eval builds its clients as `ClientClass(**entry, **client_kwargs)` from a client-config
YAML. This class takes the *name* of the environment variable holding the API key, so the key
never appears in that file nor in the kwargs alpaca-eval logs. A server that needs no key
(llama.cpp, vLLM without --api-key) gets the placeholder "EMPTY" when the variable is unset.

Everything else that can carry a credential - the base URL (`http://user:password@host/v1`), headers
(`Authorization: Bearer ...`), query parameters, client kwargs - stays in this process's memory too:
the judge registers it with `register_endpoint` and writes only the returned handle into the YAML
(alpaca-eval runs its requests in threads of this process, so the handle resolves there).
Error messages that reach the harness are scrubbed by `evals.judges.JudgeError` (harness.redaction).
"""
from __future__ import annotations

import hashlib
import json
import os
import threading
from typing import Any

import openai

from harness.redaction import scrub_logging

_ENDPOINTS: dict[str, dict[str, Any]] = {}
_LOCK = threading.Lock()


def register_endpoint(**client_kwargs: Any) -> str:
    """Keep client kwargs that may hold secrets in memory; returns the handle a client config names."""
    handle = "endpoint-" + hashlib.sha256(json.dumps(client_kwargs, sort_keys=True, default=str).encode()).hexdigest()[:16]
    with _LOCK:
        _ENDPOINTS[handle] = dict(client_kwargs)
    return handle


class EnvKeyOpenAI(openai.OpenAI):
    def __init__(self, *, api_key_env: str = "OPENAI_API_KEY", endpoint: str | None = None, **kwargs):
        # request logs (httpx logs each URL, credentials included; openai's debug log, headers included)
        # are scrubbed wherever this client is built
        scrub_logging("", "httpx", "openai")
        if endpoint is not None:
            with _LOCK:
                registered = _ENDPOINTS.get(endpoint)
            if registered is None:
                raise RuntimeError(f"{endpoint}: no such endpoint registered in this process (the judge "
                                   "registers it before alpaca-eval builds its clients)")
            kwargs = {**kwargs, **registered}
        super().__init__(api_key=os.environ.get(api_key_env) or "EMPTY", **kwargs)
