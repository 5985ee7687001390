"""Off-policy gap: how far preference data lies from what the starting model itself would write.

DPO-family losses see log pi(chosen) and log pi(rejected) under the reference. Pairs the reference
would never produce (another model's answers, human transcripts) sit far out in its tail: their
log-ratios are large and noisy, and the gradient goes to moving probability mass toward text the
model does not write, rather than to the preference. The diagnostic puts a number on it:

    data/chosen_logp_per_token             mean per-token log-prob of the data's chosen answers
    data/rejected_logp_per_token           the same for rejected (KTO data: desirable / undesirable)
    data/reference_sample_logp_per_token   the same for the reference's own samples on those prompts,
                                           drawn the way on-policy pairs are (data.sample_temperature,
                                           default 0.8, no top-p/top-k)
    data/offpolicy_gap_nats_per_token      per prompt: own samples minus the data's answers, averaged;
                                           near 0 for on-policy pairs, large when the pairs are off-policy

Why not temperature 1: a model's own temperature-1 samples score about minus its entropy per token,
which for a small instruct model is lower than generic human text scores. Measured on SmolLM2-135M
(16 prompts): at temperature 1 the HH-RLHF pairs came out at +0.03 and the model's own on-policy
pairs (sampled at 0.8) at -1.39 - the diagnostic would call human data on-policy and the model's
own data off-policy. Sampling the reference as on-policy pairs are sampled gives +0.90 +- 0.21 for
HH-RLHF and +0.06 +- 0.16 for the on-policy pairs: near 0 means "the model writes like this".

Per-token means are taken per answer, then averaged over answers (every answer weighs the same).
Answers and samples are cut to the same number of tokens (`max_tokens`); an answer that ends within
it carries its EOS, as a sample that stops does. It stays cheap: at most `n_prompts` prompts (a seeded
choice), short samples (generation cached by evals.generation), and the result cached on disk by a
content hash of (model fingerprint, the chosen rows, settings).
"""
from __future__ import annotations

import hashlib
import json
import math
import random
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from evals.context import EvalContext
from evals.metrics import register_metric
from evals.registry import register_eval
from harness.atomic_io import read_json, write_json_atomic

DEFAULT_PROMPTS = 16
DEFAULT_MAX_TOKENS = 32
DEFAULT_TEMPERATURE = 0.8  # harness.config.DataConfig.sample_temperature's default
CACHE_VERSION = 2  # bump when the measurement changes: cached results then stop matching

register_metric("data/chosen_logp_per_token", higher_is_better=None, unit="nats/token",
                description="mean per-token log-prob of the data's chosen answers under the starting model")
register_metric("data/rejected_logp_per_token", higher_is_better=None, unit="nats/token",
                description="mean per-token log-prob of the data's rejected answers under the starting model")
register_metric("data/reference_sample_logp_per_token", higher_is_better=None, unit="nats/token",
                description="mean per-token log-prob of the starting model's own samples (at data.sample_temperature) on the same prompts")
register_metric("data/offpolicy_gap_nats_per_token", higher_is_better=False, unit="nats/token",
                description="own samples minus the data's answers, per token, averaged over prompts: large = off-policy pairs")
register_metric("data/offpolicy_prompts", higher_is_better=None, unit="prompts",
                description="prompts the off-policy diagnostic measured")


@dataclass(frozen=True)
class DataAnswer:
    prompt: str
    text: str
    kind: str  # "chosen" or "rejected" (KTO: desirable or undesirable)


def _content(value: Any) -> str:
    """A string, or the last message of a conversational field (what training sees)."""
    if isinstance(value, list) and value and isinstance(value[-1], dict):
        return str(value[-1].get("content", ""))
    return "" if value is None else str(value)


def answers_from_rows(rows: Iterable[dict]) -> list[DataAnswer]:
    """Paired rows (prompt/chosen/rejected) or unpaired ones (prompt/completion/label), standard or
    conversational (TRL's layouts, as `PreferenceData.train` holds them)."""
    out: list[DataAnswer] = []
    for row in rows:
        prompt = _content(row.get("prompt"))
        if "chosen" in row:
            out += [DataAnswer(prompt, _content(row["chosen"]), "chosen"),
                    DataAnswer(prompt, _content(row["rejected"]), "rejected")]
        elif "completion" in row:
            out.append(DataAnswer(prompt, _content(row["completion"]), "chosen" if row.get("label") else "rejected"))
    return [a for a in out if a.prompt.strip() and a.text.strip()]


def _pick_prompts(answers: list[DataAnswer], n_prompts: int, seed: int) -> dict[str, list[DataAnswer]]:
    by_prompt: dict[str, list[DataAnswer]] = {}
    for a in answers:
        by_prompt.setdefault(a.prompt, []).append(a)
    prompts = list(by_prompt)
    if len(prompts) > n_prompts:  # a seeded choice, kept in data order: not just the file's first rows
        keep = set(random.Random(seed).sample(range(len(prompts)), n_prompts))
        prompts = [p for i, p in enumerate(prompts) if i in keep]
    return {p: by_prompt[p] for p in prompts}


def _per_token(values) -> float:
    return float(values.sum()) / len(values) if len(values) else float("nan")


def _mean(values: list[float]) -> float:
    finite = [v for v in values if math.isfinite(v)]
    return statistics.fmean(finite) if finite else float("nan")


def offpolicy_gap(model, tokenizer, rows: Iterable[dict], *, model_fingerprint: str, cache_dir: Path | None = None,
                  n_prompts: int = DEFAULT_PROMPTS, max_tokens: int = DEFAULT_MAX_TOKENS, seed: int = 0,
                  batch_size: int = 4, temperature: float = DEFAULT_TEMPERATURE) -> dict[str, float]:
    """The `data/*` figures above, measured with `model` as the reference (see the module doc)."""
    from evals.generation import DecodingSettings, batch_completion_logprobs, generate

    chosen_prompts = _pick_prompts(answers_from_rows(rows), n_prompts, seed)
    if not chosen_prompts:
        raise ValueError("no prompt with a non-empty answer to measure the off-policy gap on")
    settings = DecodingSettings(max_new_tokens=max_tokens, temperature=temperature, top_p=1.0, top_k=0, seed=seed)
    key = hashlib.sha256(json.dumps({"v": CACHE_VERSION, "model": model_fingerprint, "settings": vars(settings),
                                     "answers": [[a.prompt, a.text, a.kind] for group in chosen_prompts.values()
                                                 for a in group]}, sort_keys=True).encode()).hexdigest()[:24]
    cache_path = Path(cache_dir) / "offpolicy_gap" / f"{key}.json" if cache_dir else None
    if cache_path is not None and (cached := read_json(cache_path)) is not None:
        return cached

    prompts = list(chosen_prompts)
    answers = [a for group in chosen_prompts.values() for a in group]
    eos = [tokenizer.eos_token_id]
    answer_ids = [(tokenizer(a.text, add_special_tokens=False)["input_ids"] + eos)[:max_tokens] for a in answers]
    answer_logps = batch_completion_logprobs(model, tokenizer, [a.prompt for a in answers], answer_ids, batch_size)
    samples = generate(model, tokenizer, prompts, settings, model_fingerprint=model_fingerprint, cache_dir=cache_dir,
                       batch_size=batch_size, label="reference samples (off-policy gap)")
    sample_logps = batch_completion_logprobs(model, tokenizer, prompts, [s.token_ids for s in samples], batch_size)

    answer_per_token = [_per_token(lp) for lp in answer_logps]
    sample_per_token = {p: _per_token(lp) for p, lp in zip(prompts, sample_logps)}
    data_per_prompt: dict[str, list[float]] = {}
    for a, v in zip(answers, answer_per_token):
        data_per_prompt.setdefault(a.prompt, []).append(v)
    gaps = [sample_per_token[p] - _mean(data_per_prompt[p]) for p in prompts]
    gaps = [g for g in gaps if math.isfinite(g)]  # a sample that is only EOS-less and empty has no tokens
    summary = {
        "data/chosen_logp_per_token": _mean([v for a, v in zip(answers, answer_per_token) if a.kind == "chosen"]),
        "data/rejected_logp_per_token": _mean([v for a, v in zip(answers, answer_per_token) if a.kind == "rejected"]),
        "data/reference_sample_logp_per_token": _mean(list(sample_per_token.values())),
        "data/offpolicy_gap_nats_per_token": _mean(gaps),
        "data/offpolicy_gap_nats_per_token_stderr":
            statistics.stdev(gaps) / math.sqrt(len(gaps)) if len(gaps) > 1 else float("nan"),
        "data/offpolicy_prompts": float(len(prompts)),
    }
    if cache_path is not None:
        write_json_atomic(cache_path, summary)
    return summary


def offpolicy_gap_for_model(model_name: str, parsed_rows, *, cache_dir: Path, n_prompts: int = DEFAULT_PROMPTS,
                            seed: int = 0, temperature: float = DEFAULT_TEMPERATURE) -> dict[str, float]:
    """`harness data check --model`: load the model (safetensors only, no remote code) and measure the
    checked rows (`harness.data.rows.ParsedRow`, paired or unpaired)."""
    from harness.models import load_model

    loaded = load_model(model_name, Path(cache_dir))
    rows = [{"prompt": r.prompt, "chosen": r.chosen, "rejected": r.rejected} if r.shape == "paired"
            else {"prompt": r.prompt, "completion": r.completion, "label": r.label} for r in parsed_rows]
    return offpolicy_gap(loaded.model, loaded.tokenizer, rows, model_fingerprint=loaded.fingerprint,
                         cache_dir=cache_dir, n_prompts=n_prompts, seed=seed, temperature=temperature)


# data/pairs and data/dropped_* are the pipeline's counts, not this eval's: a crash here fails only these
OFFPOLICY_KEYS = ("data/chosen_logp_per_token", "data/rejected_logp_per_token", "data/reference_sample_logp_per_token",
                  "data/offpolicy_")


@register_eval("offpolicy", owns=OFFPOLICY_KEYS)
def offpolicy_gap_of_training_data(ctx: EvalContext) -> dict[str, float]:
    """The training pairs against the reference's own samples at the data's sampling temperature."""
    with ctx.as_reference():
        return offpolicy_gap(ctx.policy, ctx.tokenizer, ctx.train, model_fingerprint=ctx.reference_fingerprint,
                             cache_dir=ctx.cache_dir, seed=ctx.config.seed,
                             temperature=ctx.config.data.sample_temperature)
