"""The OpenAI client class the LLM judge names in alpaca-eval's client config (`client_class`).

alpaca-eval builds its clients as `ClientClass(**entry, **client_kwargs)` from a client-config
YAML. This class takes the *name* of the environment variable holding the API key, so the key
never appears in that file nor in the kwargs alpaca-eval logs. A server that needs no key
(llama.cpp, vLLM without --api-key) gets the placeholder "EMPTY" when the variable is unset.
"""
from __future__ import annotations

import os

import openai


class EnvKeyOpenAI(openai.OpenAI):
    def __init__(self, *, api_key_env: str = "OPENAI_API_KEY", **kwargs):
        super().__init__(api_key=os.environ.get(api_key_env) or "EMPTY", **kwargs)
