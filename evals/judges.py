"""Pairwise judges behind one interface: preference 1 (first wins), 2 (second wins), 1.5 (tie).

Convention as in alpaca-eval: output_1 is the reference, output_2 the policy. Every judge is
registered in `JUDGES` and built from `eval.judge` by `build_judge`:

    rule          verifiable instructions checked by lm-eval's IFEval checkers (evals.ifeval_offline)
    llm           alpaca-eval's annotator configs (prompt template + completion parser + its OpenAI
                  decoder) against any OpenAI-compatible endpoint (base URL, model in the config;
                  the API key read from the environment variable the config names, never logged)
    reward_model  any sequence-classification model with one output (a reward model), safetensors

`judge(items)` takes a batch and returns one verdict per item, or raises `JudgeError`: a judge
that cannot answer (server down, unparseable answer, wrong count) fails the eval - and so the
gate - and never fills in ties. `build_judge(..., cache_dir=...)` wraps model judges in a
verdict cache keyed by a content hash of (judge fingerprint, prompt, output_1, output_2),
one JSON file per verdict, written atomically. `position_swap` judges both orders in one batch
and reports how often the verdict flips with the order.
"""
from __future__ import annotations

import copy
import hashlib
import inspect
import json
import math
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Protocol

from harness.atomic_io import read_json, write_json_atomic, write_text_atomic
from harness.data.verifiable import VerifiablePrompt
from harness.redaction import scrub_logging, scrub_text
from harness.registry import Registry


@dataclass(frozen=True)
class JudgeItem:
    prompt: str
    output_1: str
    output_2: str
    verifier: VerifiablePrompt | None = None  # rule judges need the prompt's instructions

    def swapped(self) -> "JudgeItem":
        return JudgeItem(self.prompt, self.output_2, self.output_1, self.verifier)


class Judge(Protocol):
    name: str

    def judge(self, items: list[JudgeItem]) -> list[float]: ...


JUDGES: Registry[type] = Registry("judge")


class JudgeError(RuntimeError):
    """A judge could not give verdicts (unreachable, malformed answers): the eval fails, it never guesses.

    The message is scrubbed of secrets here, once for every raise: it names endpoints (which may carry
    `user:password@`) and wraps client errors (which may echo headers), and it reaches eval_errors.json,
    the run's tags and the report."""

    def __init__(self, message: str = ""):
        super().__init__(scrub_text(str(message)))


def check_verdicts(verdicts: list[Any], n: int, who: str) -> list[float]:
    """Exactly n finite preferences in [1, 2], or JudgeError."""
    if len(verdicts) != n:
        raise JudgeError(f"{who}: {len(verdicts)} verdicts for {n} items")
    out = []
    for i, v in enumerate(verdicts):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or not 1.0 <= v <= 2.0:
            raise JudgeError(f"{who}: item {i} got no valid verdict ({v!r}); expected a preference in [1, 2]")
        out.append(float(v))
    return out


def _sha(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


# ---------------------------------------------------------------- rule judge


@JUDGES.register("rule")
class RuleJudge:
    """Prefers the answer that follows more of the prompt's verifiable instructions; equal scores tie.

    Instructions are checked by lm-eval's IFEval checker classes where one means the same as the
    prompt (word limit, bullet count, ending phrase, no commas); see
    `evals.ifeval_offline.IFEVAL_EQUIVALENTS`. Instant and deterministic, so never cached.
    """

    name = "rule"
    cache_verdicts = False
    # a version, not a content hash: bump it when the checkers or the tie rule change, so that stored
    # calibrations (evals.judge_calibration, keyed by fingerprint) stop applying to the new behaviour
    fingerprint = "rule:v1"
    tokens_used = 0  # no model behind it

    def judge(self, items: list[JudgeItem]) -> list[float]:
        try:
            from evals.ifeval_offline import ifeval_score
        except ImportError as exc:
            raise JudgeError(f"rule judge: lm-eval's ifeval checkers cannot be imported ({exc})") from None
        verdicts = []
        for i, item in enumerate(items):
            if item.verifier is None:
                raise JudgeError(f"rule judge: item {i} has no verifiable instructions")
            s1, s2 = ifeval_score(item.verifier, item.output_1), ifeval_score(item.verifier, item.output_2)
            verdicts.append(1.0 if s1 > s2 else 2.0 if s2 > s1 else 1.5)
        return verdicts


# ---------------------------------------------------------------- LLM judge (alpaca-eval annotators)


def resolve_annotator_config(annotator_config: str) -> Path:
    """An alpaca-eval annotator config name (`chatgpt`, `alpaca_eval_gpt4`, ...) or a path to a
    configs.yaml or to a folder holding one -> the configs.yaml path."""
    from alpaca_eval import constants

    for candidate in (Path(annotator_config).expanduser(), constants.EVALUATORS_CONFIG_DIR / annotator_config):
        if candidate.is_dir():
            candidate = candidate / "configs.yaml"
        if candidate.is_file():
            return candidate.resolve()
    known = sorted(p.name for p in constants.EVALUATORS_CONFIG_DIR.iterdir() if (p / "configs.yaml").is_file())
    raise JudgeError(f"llm judge: unknown annotator config {annotator_config!r} (a path, or one of alpaca-eval's: "
                     f"{', '.join(known)})")


@JUDGES.register("llm")
class LLMJudge:
    """alpaca-eval's annotator machinery against an OpenAI-compatible endpoint.

    How the endpoint is configured (alpaca-eval 0.6.6): its `openai_completions` decoder builds
    clients from a client-config YAML (`client_config_path`, see alpaca-eval's
    client_configs/README.md) whose entries may name a `client_class`. The judge writes, under
    its work dir, a client config naming `evals.openai_client.EnvKeyOpenAI` with the base URL,
    timeout and no retries, plus a copy of the annotator config with `model_name`,
    `client_config_path`, concurrency and `requires_chatml` set (prompt template paths made
    absolute). The key itself is read from `api_key_env` by that client class at construction:
    it is written to no file, passed through no alpaca-eval kwargs (which it logs), and any
    error message is scrubbed of it. Nothing is written into site-packages.

    Output order is fixed (`is_randomize_output_order: false`): the harness swaps positions
    itself (`position_swap`). Rows whose answer the config's parser cannot read raise JudgeError.
    """

    name = "llm"
    cache_verdicts = True

    def __init__(self, *, base_url: str, model: str, annotator_config: str = "chatgpt",
                 api_key_env: str = "OPENAI_API_KEY", max_concurrency: int = 4, timeout_s: float = 60.0,
                 is_chat: bool = True, completions_kwargs: Mapping[str, Any] | None = None,
                 work_dir: Path | None = None):
        self.base_url, self.model = base_url, model
        self.api_key_env, self.max_concurrency, self.timeout_s = api_key_env, max_concurrency, timeout_s
        self.is_chat = is_chat
        self.completions_kwargs = dict(completions_kwargs or {})
        self.annotator_config_path = resolve_annotator_config(annotator_config)
        self.annotator_config = annotator_config
        self.annotators = self._load_annotators()
        # the templates by content, not by where this machine keeps them
        annotators = {name: {k: v for k, v in cfg.items() if k != "prompt_template"}
                      for name, cfg in self.annotators.items()}
        identity = {"judge": "llm", "base_url": base_url.rstrip("/"), "model": model, "annotators": annotators,
                    "is_chat": is_chat, "completions_kwargs": self.completions_kwargs}
        self.fingerprint = "llm:" + _sha(identity)
        self.work_dir = Path(work_dir) if work_dir else Path(tempfile.mkdtemp(prefix="po-harness-llm-judge-"))
        self._annotator = None
        self._price_per_token = 1.0
        self.tokens_used = 0  # as the server reports them (alpaca-eval's price column, see _build_annotator)

    def _load_annotators(self) -> dict[str, dict]:
        """The annotator config with template paths resolved and templates inlined into the identity."""
        import yaml

        raw = yaml.safe_load(self.annotator_config_path.read_text())
        if not isinstance(raw, dict) or not raw:
            raise JudgeError(f"llm judge: {self.annotator_config_path} holds no annotator")
        base = self.annotator_config_path.parents[1]  # alpaca-eval resolves templates from here
        out = {}
        for name, cfg in raw.items():
            cfg = copy.deepcopy(cfg)
            template = Path(cfg["prompt_template"])
            if not template.is_absolute():
                template = base / template
            if not template.is_file():
                raise JudgeError(f"llm judge: prompt template of {name!r} not found: {template}")
            cfg["prompt_template"] = str(template)
            cfg["prompt_template_sha"] = hashlib.sha256(template.read_bytes()).hexdigest()
            out[name] = cfg
        return out

    def _build_annotator(self):
        import yaml
        from alpaca_eval.annotators import PairwiseAnnotator

        # alpaca-eval logs its completion kwargs (our completions_kwargs: headers included) on the root
        # logger; httpx logs each request URL (credentials included)
        scrub_logging("", "httpx", "openai")
        from evals.openai_client import register_endpoint

        root = self.work_dir / "alpaca_eval" / self.fingerprint.split(":")[1][:16]
        # What may carry a credential (the base URL's user:password, headers, query parameters, client
        # kwargs) goes to the client in memory, never into these YAML files nor alpaca-eval's logged kwargs:
        # per-request extra_headers/extra_query become the client's default_headers/default_query.
        own = dict(self.completions_kwargs)
        secret_client: dict[str, Any] = {k: v for k, v in (own.pop("client_kwargs", None) or {}).items()
                                         if k != "base_url"}
        for per_request, per_client in (("extra_headers", "default_headers"), ("extra_query", "default_query")):
            if own.get(per_request):
                secret_client[per_client] = {**(secret_client.get(per_client) or {}), **own.pop(per_request)}
        endpoint = register_endpoint(base_url=self.base_url, **secret_client)
        client_config = {"default": [{"client_class": "evals.openai_client.EnvKeyOpenAI",
                                      "api_key_env": self.api_key_env, "endpoint": endpoint,
                                      "timeout": float(self.timeout_s), "max_retries": 0}]}
        client_path = write_text_atomic(root / "client_configs.yaml", yaml.safe_dump(client_config))
        configs = {}
        for name, cfg in self.annotators.items():
            cfg = {k: v for k, v in copy.deepcopy(cfg).items() if k != "prompt_template_sha"}
            if cfg.get("fn_completions", "openai_completions") != "openai_completions":
                raise JudgeError(f"llm judge: annotator {name!r} uses {cfg['fn_completions']!r}; only alpaca-eval's "
                                 "openai_completions talks to an OpenAI-compatible endpoint")
            kwargs = cfg.setdefault("completions_kwargs", {})
            kwargs.pop("client_kwargs", None)  # the endpoint's client kwargs are the ones registered above
            kwargs.update(own)
            kwargs.update(model_name=self.model, client_config_path=str(client_path), num_procs=self.max_concurrency,
                          requires_chatml=self.is_chat)
            # alpaca-eval reports usage only as price_per_example = the server's total_tokens * price_per_token;
            # a self-hosted model has no price, so 1 per token makes that column the token count (and no NaN)
            kwargs.setdefault("price_per_token", 1.0)
            self._price_per_token = float(kwargs["price_per_token"])
            cfg["is_randomize_output_order"] = False
            configs[name] = cfg
        config_path = write_text_atomic(root / "annotator" / "configs.yaml", yaml.safe_dump(configs, sort_keys=False))
        return PairwiseAnnotator(annotators_config=str(config_path), caching_path=None, is_avoid_reannotations=False,
                                 seed=0)

    def _count_tokens(self, annotated) -> None:
        if self._price_per_token <= 0:  # a configured price of 0: usage unknown
            return
        for row in annotated:
            price = row.get("preference_price_per_example")
            if isinstance(price, (int, float)) and math.isfinite(price):
                self.tokens_used += round(price / self._price_per_token)

    def _scrub(self, text: str) -> str:
        """The key from `api_key_env` (whatever its variable is called) and every secret-looking value."""
        key = os.environ.get(self.api_key_env)
        return scrub_text(text.replace(key, "***") if key else text)

    def judge(self, items: list[JudgeItem]) -> list[float]:
        if not items:
            return []
        who = f"llm judge ({self.model} at {scrub_text(self.base_url)})"
        unique = list(dict.fromkeys((i.prompt, i.output_1, i.output_2) for i in items))
        rows = [{"instruction": p, "output_1": o1, "output_2": o2} for p, o1, o2 in unique]
        try:
            if self._annotator is None:
                self._annotator = self._build_annotator()
            annotated = self._annotator.annotate_pairs(rows)
            self._count_tokens(annotated)
        except JudgeError:
            raise
        except Exception as exc:  # connection refused, timeout, HTTP error, malformed response
            raise JudgeError(self._scrub(f"{who}: {type(exc).__name__}: {exc}")) from None
        by_key: dict[tuple[str, str, str], Any] = {}
        for row in annotated:
            by_key[(str(row.get("instruction")), str(row.get("output_1")), str(row.get("output_2")))] = row.get("preference")
        missing = [k for k in unique if not _is_preference(by_key.get(k))]
        if missing:
            raise JudgeError(f"{who}: no parseable verdict for {len(missing)} of {len(unique)} pairs "
                             f"(annotator config {self.annotator_config!r}); the judge's answer did not match its parser")
        return check_verdicts([float(by_key[(i.prompt, i.output_1, i.output_2)]) for i in items], len(items), who)


def _is_preference(v: Any) -> bool:
    try:
        return v is not None and math.isfinite(float(v)) and 1.0 <= float(v) <= 2.0
    except (TypeError, ValueError):
        return False


# ---------------------------------------------------------------- reward-model judge


def _weights_fingerprint(model: str) -> str:
    """Content hash of a local model folder's JSON files and safetensors; a hub id stands for itself
    (verdicts cached for a hub id survive an upstream update: pin a version by downloading it to a folder)."""
    path = Path(model).expanduser()
    h = hashlib.sha256()
    if path.is_dir():
        for f in sorted(path.glob("*.json")) + sorted(path.glob("*.safetensors")):
            h.update(f.name.encode())
            with open(f, "rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    h.update(chunk)
        return h.hexdigest()
    return model


@JUDGES.register("reward_model")
class RewardModelJudge:
    """Scores each (prompt, answer) with a sequence-classification model (one output, a reward);
    the higher score wins, scores within `tie_margin` tie. Both orders get the same scores, so
    this judge has no position bias by construction. Weights load from safetensors only;
    `trust_remote_code` only when configured. The prompt and answer are joined by the
    tokenizer's chat template when it has one, else by a newline."""

    name = "reward_model"
    cache_verdicts = True

    def __init__(self, *, model: str, batch_size: int = 8, max_length: int = 1024, tie_margin: float = 0.0,
                 trust_remote_code: bool = False, work_dir: Path | None = None):
        self.model_name, self.batch_size, self.max_length = model, batch_size, max_length
        self.tie_margin, self.trust_remote_code = tie_margin, trust_remote_code
        self.fingerprint = "reward_model:" + _sha({"model": _weights_fingerprint(model), "max_length": max_length,
                                                   "tie_margin": tie_margin})
        self._model = self._tokenizer = None
        self.tokens_used = 0  # input tokens scored

    def _load(self):
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        try:
            tok = AutoTokenizer.from_pretrained(self.model_name, trust_remote_code=self.trust_remote_code)
            model = AutoModelForSequenceClassification.from_pretrained(
                self.model_name, use_safetensors=True, trust_remote_code=self.trust_remote_code)
        except Exception as exc:
            raise JudgeError(f"reward-model judge: cannot load {self.model_name!r} (safetensors only): "
                             f"{type(exc).__name__}: {exc}") from None
        if model.config.num_labels != 1:
            raise JudgeError(f"reward-model judge: {self.model_name!r} has {model.config.num_labels} outputs; "
                             "a reward model has one (num_labels=1)")
        if tok.pad_token_id is None:
            tok.pad_token = tok.eos_token
        tok.padding_side = "right"
        model.config.pad_token_id = tok.pad_token_id
        model.eval()
        self._model, self._tokenizer = model, tok

    def _text(self, prompt: str, answer: str) -> str:
        tok = self._tokenizer
        if getattr(tok, "chat_template", None):
            return tok.apply_chat_template([{"role": "user", "content": prompt}, {"role": "assistant", "content": answer}],
                                           tokenize=False)
        return f"{prompt}\n{answer}"

    def scores(self, pairs: list[tuple[str, str]]) -> list[float]:
        import torch

        if self._model is None:
            self._load()
        texts = [self._text(p, a) for p, a in pairs]
        out: list[float] = []
        with torch.no_grad():
            for start in range(0, len(texts), self.batch_size):
                batch = self._tokenizer(texts[start : start + self.batch_size], return_tensors="pt", padding=True,
                                        truncation=True, max_length=self.max_length, add_special_tokens=False)
                logits = self._model(**batch).logits.float()
                out.extend(logits[:, 0].tolist())
                self.tokens_used += int(batch["attention_mask"].sum())
        return out

    def judge(self, items: list[JudgeItem]) -> list[float]:
        if not items:
            return []
        pairs = list(dict.fromkeys((i.prompt, o) for i in items for o in (i.output_1, i.output_2)))
        try:
            scored = dict(zip(pairs, self.scores(pairs)))
        except JudgeError:
            raise
        except Exception as exc:
            raise JudgeError(f"reward-model judge: scoring failed: {type(exc).__name__}: {exc}") from None
        verdicts = []
        for item in items:
            s1, s2 = scored[(item.prompt, item.output_1)], scored[(item.prompt, item.output_2)]
            if not (math.isfinite(s1) and math.isfinite(s2)):
                raise JudgeError(f"reward-model judge: non-finite score ({s1}, {s2})")
            verdicts.append(2.0 if s2 - s1 > self.tie_margin else 1.0 if s1 - s2 > self.tie_margin else 1.5)
        return verdicts


# ---------------------------------------------------------------- cache, construction, position swap


class CachedJudge:
    """Verdicts cached by content: sha256 of (judge fingerprint, prompt, output_1, output_2).

    One JSON file per verdict under `<cache_dir>/judge_verdicts/<fingerprint[:16]>/`, written
    atomically and only for valid verdicts; a failed batch caches nothing.
    """

    def __init__(self, inner, cache_dir: Path):
        self.inner, self.name = inner, inner.name
        self.fingerprint = inner.fingerprint
        self.root = Path(cache_dir) / "judge_verdicts" / _sha(self.fingerprint)[:16]

    @property
    def tokens_used(self) -> int | None:  # cache hits cost nothing: the inner judge counts what it really used
        return getattr(self.inner, "tokens_used", None)

    def key(self, item: JudgeItem) -> str:
        return _sha({"judge": self.fingerprint, "prompt": item.prompt, "output_1": item.output_1,
                     "output_2": item.output_2})

    def _path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.json"

    def judge(self, items: list[JudgeItem]) -> list[float]:
        keys = [self.key(i) for i in items]
        found: dict[str, float] = {}
        for k in set(keys):
            cached = read_json(self._path(k))
            if isinstance(cached, dict) and _is_preference(cached.get("preference")):
                found[k] = float(cached["preference"])
        todo = {k: item for k, item in zip(keys, items) if k not in found}
        if todo:
            todo_keys = list(todo)
            fresh = check_verdicts(self.inner.judge([todo[k] for k in todo_keys]), len(todo_keys), self.name)
            for k, v in zip(todo_keys, fresh):
                write_json_atomic(self._path(k), {"preference": v, "judge": self.fingerprint})
                found[k] = v
        return [found[k] for k in keys]


def build_judge(spec: Any = "rule", *, cache_dir: Path | None = None):
    """A judge from `eval.judge`: a name (`"rule"`), a mapping or pydantic model with `name` and the
    judge's options, or an object that already has a `judge` method."""
    if hasattr(spec, "judge") and callable(spec.judge):
        return spec
    if isinstance(spec, str):
        name, options = spec, {}
    else:
        options = dict(spec.model_dump() if hasattr(spec, "model_dump") else spec)
        name = options.pop("name")
    cls = JUDGES.get(name)
    if "work_dir" in inspect.signature(cls).parameters:  # where a judge may write its own files
        options["work_dir"] = Path(cache_dir) / "judges" if cache_dir else None
    judge = cls(**options)
    if cache_dir is not None and getattr(judge, "cache_verdicts", False):
        judge = CachedJudge(judge, Path(cache_dir))
    return judge


@dataclass
class PositionSwap:
    verdicts: list[float]  # per item, in the original order; a verdict that flips with the order is averaged
    forward: list[float]  # as judged with output_1 first
    swapped: list[float]  # as judged with output_2 first, mapped back to the original order (3 - v)
    flip_rate: float  # share of items whose verdict changes with the order
    first_position_rate: float  # share of decisive raw verdicts that picked whichever answer was shown first


def position_swap(judge: Judge, items: list[JudgeItem]) -> PositionSwap:
    """Judge both orders (one batch of 2n). Agreement keeps the verdict; disagreement averages the two
    (a full flip becomes a tie), and counts as a flip."""
    n = len(items)
    raw = judge.judge(list(items) + [i.swapped() for i in items])
    raw = check_verdicts(raw, 2 * n, getattr(judge, "name", "judge"))
    forward, swapped_raw = raw[:n], raw[n:]
    swapped = [3.0 - s for s in swapped_raw]
    verdicts, flips = [], 0
    for f, s in zip(forward, swapped):
        verdicts.append(f if f == s else (f + s) / 2)
        flips += f != s
    decisive = [v for v in raw if v != 1.5]
    first = sum(v < 1.5 for v in decisive) / len(decisive) if decisive else float("nan")
    return PositionSwap(verdicts, forward, swapped, flips / max(n, 1), first)


def concat_swaps(parts: list[PositionSwap]) -> PositionSwap:
    """Batches judged one after another (a sequential eval) as if judged in one go."""
    forward = [v for p in parts for v in p.forward]
    swapped = [v for p in parts for v in p.swapped]
    decisive = [v for v in forward + [3.0 - s for s in swapped] if v != 1.5]
    first = sum(v < 1.5 for v in decisive) / len(decisive) if decisive else float("nan")
    flips = sum(f != s for f, s in zip(forward, swapped))
    return PositionSwap([v for p in parts for v in p.verdicts], forward, swapped, flips / max(len(forward), 1), first)


def position_swapped_verdicts(judge: Judge, items: list[JudgeItem]) -> tuple[list[float], float]:
    """Judge both orders; a verdict that flips with the order becomes a tie. Returns (verdicts, flip rate)."""
    result = position_swap(judge, items)
    return result.verdicts, result.flip_rate
