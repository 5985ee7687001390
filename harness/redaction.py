"""Secrets out of everything the harness writes or logs: MLflow params, tags and JSON artifacts, the
config copies next to a checkpoint and in the report, judge error messages, library log lines.

Two ways a secret is recognised, both applied by `redact` (for structures) and `scrub_text` (for text):
- by KEY: a mapping key whose last word names a secret (`api_key`, `hf_token`, `db_password`,
  `Authorization`, `Cookie`); its whole value goes.
- by VALUE, wherever the key is innocent: credentials in a URL (`http://user:pass@host`), an
  `Authorization: Bearer ...`/`Basic ...` header value, `?api_key=...` in a query string, the
  shapes of common API keys (OpenAI `sk-...`, Hugging Face `hf_...`, GitHub, Slack, AWS, Google,
  GitLab, JWTs), and the current value of any environment variable whose name names a secret
  (`OPENAI_API_KEY`, `HF_TOKEN`, ...), which catches keys of shapes no pattern knows.

The env var NAME (`api_key_env: OPENAI_API_KEY`) is not a secret and stays: it says where the key lives.
"""
from __future__ import annotations

import logging
import os
import re
from typing import Any

REDACTED = "***"

# The words that name a secret, one list for every way a secret is recognised by its name: a mapping key
# (`is_secret_key`), an environment variable scrubbed by value (`_env_secrets`), `name=value` or `'name': 'value'`
# inside a message (`_ASSIGNED`) and a query parameter (`_QUERY_SECRET`). Singular `token`: `max_new_tokens`,
# `n_tokens` and `tokenizer` are ordinary settings. `_SHORT_WORDS` name a secret only as a word of their own
# (`db_pwd`, `GITHUB_PAT`, `url_sig`), never as the end of a longer one (`compat`, `config`).
_SECRET_WORDS = (r"key|apikey|token|secrets?|password|passwd|passphrase|credentials?|authorization|auth"
                 r"|cookies?|bearer|signature|jwt|sessionid")
_SHORT_WORDS = r"pwd|pat|sig"
# ...but a tokenizer's special tokens (`pad_token: </s>`, `eosToken`) are vocabulary entries: a lookbehind put
# where the name ends
_NOT_SECRET = "".join(rf"(?<!{w}[_-]token)(?<!{w}token)" for w in ("pad", "eos", "bos", "unk", "sep", "cls", "mask"))
_CAMEL_WORDS = r"Key|Token|Secret|Password|Passwd|Passphrase|Credentials?|Cookie|Signature"
# a key whose last word is one of these (api_key, hf_token, secret, db_password, x-api-key, accessToken,
# clientSecret, privateKey), not max_new_tokens or pad_token
SECRET_KEY = re.compile(rf"(?:(^|[_-])({_SECRET_WORDS})|[_-]({_SHORT_WORDS})|^sig|(?-i:[a-z0-9](?:{_CAMEL_WORDS}))){_NOT_SECRET}$",
                        re.IGNORECASE)

# mappings whose every value may be a credential: HTTP headers and query parameters (`extra_headers`,
# `default_query`, ...): their names stay readable, their values go
SECRET_MAPPING = re.compile(r"(^|[_-])(headers|query|cookies)$", re.IGNORECASE)

_URL_USERINFO = re.compile(r"(?P<scheme>\b[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<userinfo>[^/\s?#@]+(?:@[^/\s?#@]+)*)@")
# an auth scheme and its credential; the value must look like one (a digit, or 20+ characters), so that
# prose such as "Token indices sequence length" stays readable
_CREDENTIAL = r"(?:(?=[A-Za-z0-9._~+/=:-]*[0-9])[A-Za-z0-9._~+/=:-]{6,}|[A-Za-z0-9._~+/=:-]{20,})"
_AUTH_SCHEME = re.compile(rf"\b(?P<scheme>Bearer|Basic|Token)(?P<sep>\s+|%20)(?P<value>{_CREDENTIAL})", re.IGNORECASE)
# `api_key='...'`, `"x-api-key": "..."`, `password=...` inside a message (a repr of kwargs, a header dump)
# (the name ends in a secret word: `apikey`, `accessToken`, `client_secret`; a short one follows a `_` or `-`)
_ASSIGNED = re.compile(rf"(?P<name>\b(?:[A-Za-z0-9_-]*(?:{_SECRET_WORDS})|[A-Za-z0-9_-]*[_-](?:{_SHORT_WORDS})|sig){_NOT_SECRET}"
                       r"(?P<q1>['\"]?)\s*[:=]\s*(?P<q2>['\"]?))(?!(?:Bearer|Basic|Token)\s)(?P<value>[^'\"\s,;&}\])]{6,})",
                       re.IGNORECASE)
_QUERY_SECRET = re.compile(rf"(?P<name>[?&;](?:[a-z0-9_.-]*(?:{_SECRET_WORDS})|[a-z0-9_.-]*[_-](?:{_SHORT_WORDS})|sig))"
                           r"=(?P<value>[^&#\s'\"]+)", re.IGNORECASE)
_KEY_SHAPES = re.compile("|".join([
    r"\bsk-[A-Za-z0-9][A-Za-z0-9_-]{14,}",              # OpenAI (sk-, sk-proj-), Anthropic (sk-ant-), DeepSeek ...
    r"\bhf_[A-Za-z0-9]{20,}",                             # Hugging Face
    r"\bgh[pousr]_[A-Za-z0-9]{20,}", r"\bgithub_pat_[A-Za-z0-9_]{20,}",
    r"\bglpat-[A-Za-z0-9_-]{16,}",                        # GitLab
    r"\bxox[abposr]-[A-Za-z0-9-]{10,}",                   # Slack
    r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b",                     # AWS access key id
    r"\bAIza[0-9A-Za-z_-]{30,}",                          # Google API key
    r"\br8_[A-Za-z0-9]{20,}", r"\bgsk_[A-Za-z0-9]{20,}", r"\bpplx-[A-Za-z0-9]{20,}",  # Replicate, Groq, Perplexity
    r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}",  # a JWT (header.payload.signature)
]))
_MIN_ENV_SECRET = 8  # shorter values ("1", "true", "EMPTY") would scrub innocent text


def is_secret_key(key: object) -> bool:
    """True for a key that names a secret, or a flat dotted key whose last part does or that sits in a
    header/query mapping (`eval.judge.completions_kwargs.extra_headers.X-Trace`)."""
    *parents, last = str(key).split(".")
    return bool(SECRET_KEY.search(last)) or any(SECRET_MAPPING.search(p) for p in parents)


def _env_secrets() -> list[str]:
    """Values of the environment's secret-named variables (`is_secret_key`: the same word list as every other
    check, so `DB_PASSPHRASE` and `ACME_CREDENTIALS` count), longest first (read now: keys can be set late).
    A path (`SSL_KEY=/etc/ssl/key.pem`) names where a secret lives, like `api_key_env`: it stays."""
    values = {v for k, v in os.environ.items() if len(v) >= _MIN_ENV_SECRET and is_secret_key(k.lower())
              and not v.startswith(("/", "~", "./", "../"))}
    return sorted(values, key=len, reverse=True)


def scrub_text(text: str) -> str:
    """`text` with every secret-looking value replaced by ***; everything else unchanged."""
    if not isinstance(text, str) or not text:
        return text
    for value in _env_secrets():
        text = text.replace(value, REDACTED)
    text = _URL_USERINFO.sub(lambda m: f"{m['scheme']}{REDACTED}@", text)
    text = _AUTH_SCHEME.sub(lambda m: f"{m['scheme']}{m['sep']}{REDACTED}", text)
    text = _ASSIGNED.sub(lambda m: m["name"] + REDACTED, text)
    text = _QUERY_SECRET.sub(lambda m: f"{m['name']}={REDACTED}", text)
    return _KEY_SHAPES.sub(REDACTED, text)


def redact(tree: Any, *, by_key: bool = True) -> Any:
    """A copy of a config/params/JSON structure with secrets removed: the values of secret-named keys
    (also dotted flat keys such as `eval.judge.api_key`; not with `by_key=False`, for records whose keys
    are the harness's own, such as tags), and secret-looking text in any string at any depth (lists and
    tuples included). Numbers, booleans and None are kept."""
    if isinstance(tree, dict):
        out = {}
        for k, v in tree.items():
            if by_key and is_secret_key(k) and v not in (None, ""):
                out[k] = REDACTED
            elif by_key and isinstance(v, dict) and SECRET_MAPPING.search(str(k).rsplit(".", 1)[-1]):
                out[k] = {name: REDACTED for name in v}
            else:
                out[k] = redact(v, by_key=by_key)
        return out
    if isinstance(tree, (list, tuple)):
        return type(tree)(redact(v, by_key=by_key) for v in tree)
    if isinstance(tree, str):
        return scrub_text(tree)
    return tree


class ScrubFilter(logging.Filter):
    """Scrubs a log record's message (libraries such as alpaca-eval log their completion kwargs)."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a malformed record: leave it to the handler to complain
            return True
        clean = scrub_text(message)
        if clean != message:
            record.msg, record.args = clean, None
        return True


_FILTER = ScrubFilter()


def scrub_logging(*loggers: str) -> None:
    """Install the scrubbing filter on these loggers ("" = root) and on the root's handlers, once each.
    A logger's filters see only the records logged on it (alpaca-eval calls `logging.info`, the root);
    the handlers' filters see everything that propagates to them."""
    for name in loggers or ("",):
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)
    for handler in logging.getLogger().handlers:
        if _FILTER not in handler.filters:
            handler.addFilter(_FILTER)
