"""Diversity of the policy's samples: distinct-n and self-similarity over k samples per prompt.

Preference optimization can collapse the policy onto one answer per prompt (the samples at
temperature 1 become near copies). This eval draws k samples per prompt from the policy at
temperature 1 (no top-p/top-k, like the KL samples) and measures, per prompt, over its k samples:

- distinct-n (Li et al., 2016): unique n-grams / all n-grams of the k samples together,
  n = 1 and 2. 1.0 when no n-gram repeats, 1/k when the k samples are identical (and have no
  repeats within themselves). Prompts whose samples have no n-gram at all are left out of the
  mean; when no prompt has one, distinct-n is 0.
- self-similarity: the mean, over the k*(k-1)/2 pairs of samples, of ROUGE-L F1 (longest
  common subsequence of word tokens, 2*LCS/(len_a+len_b)). 1.0 for identical samples
  (two empty samples count as identical), 0.0 for samples sharing no word. LCS rather than a
  token-set Jaccard because it is order-aware: two samples that reorder the same words are
  different answers.

Tokens are lower-cased words and single punctuation marks (`\\w+|[^\\w\\s]`), so the metric
reads the same for any tokenizer. Each metric is the mean over prompts; `_stderr` is the
standard error of that mean across prompts. The collapse alarm is 1.0 when the mean
self-similarity exceeds a configured threshold (`eval.diversity.collapse_threshold`).
"""
from __future__ import annotations

import math
import re
from itertools import combinations
from typing import Sequence

from evals.context import EvalContext
from evals.generation import DecodingSettings, generate
from evals.metrics import METRICS, register_metric
from evals.registry import register_eval

_TOKEN = re.compile(r"\w+|[^\w\s]")

_SPECS = {
    "diversity/distinct_1": (True, "fraction", "unique unigrams / all unigrams over the k samples of a prompt, mean over prompts"),
    "diversity/distinct_2": (True, "fraction", "unique bigrams / all bigrams over the k samples of a prompt, mean over prompts"),
    "diversity/self_similarity": (False, "fraction",
                                  "mean pairwise ROUGE-L F1 (word LCS) between the k samples of a prompt, mean over prompts"),
    "diversity/collapse_alarm": (False, "flag",
                                 "1.0 when self-similarity exceeds eval.diversity.collapse_threshold (mode collapse), else 0.0"),
}
for _key, (_hib, _unit, _desc) in _SPECS.items():
    if _key not in METRICS:  # a module reload must not register twice
        register_metric(_key, higher_is_better=_hib, unit=_unit, description=_desc)


def tokenize(text: str) -> list[str]:
    return _TOKEN.findall(text.lower())


def ngrams(tokens: Sequence[str], n: int) -> list[tuple[str, ...]]:
    return [tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]


def distinct_n(samples: Sequence[str], n: int) -> float | None:
    """Unique n-grams / all n-grams over the samples together; None when there is no n-gram."""
    grams = [g for s in samples for g in ngrams(tokenize(s), n)]
    return len(set(grams)) / len(grams) if grams else None


def lcs_length(a: Sequence[str], b: Sequence[str]) -> int:
    if len(a) < len(b):
        a, b = b, a
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0]
        for j, y in enumerate(b):
            cur.append(prev[j] + 1 if x == y else max(prev[j + 1], cur[j]))
        prev = cur
    return prev[-1]


def rouge_l_f1(a: str, b: str) -> float:
    ta, tb = tokenize(a), tokenize(b)
    if not ta and not tb:
        return 1.0
    if not ta or not tb:
        return 0.0
    return 2 * lcs_length(ta, tb) / (len(ta) + len(tb))


def self_similarity(samples: Sequence[str]) -> float:
    """Mean pairwise ROUGE-L F1 of the samples (needs at least 2)."""
    if len(samples) < 2:
        raise ValueError("self-similarity needs at least 2 samples per prompt")
    pairs = list(combinations(samples, 2))
    return sum(rouge_l_f1(a, b) for a, b in pairs) / len(pairs)


def _mean_stderr(values: list[float]) -> tuple[float, float]:
    if not values:
        return 0.0, float("nan")
    mean = sum(values) / len(values)
    if len(values) < 2:
        return mean, float("nan")
    var = sum((v - mean) ** 2 for v in values) / (len(values) - 1)
    return mean, math.sqrt(var / len(values))


def diversity_summary(samples_per_prompt: Sequence[Sequence[str]], *, collapse_threshold: float) -> dict[str, float]:
    """`samples_per_prompt[i]` holds the k samples for prompt i (k >= 2)."""
    if not samples_per_prompt:
        raise ValueError("no prompts to measure diversity on")
    out: dict[str, float] = {}
    for n in (1, 2):
        values = [d for d in (distinct_n(s, n) for s in samples_per_prompt) if d is not None]
        out[f"diversity/distinct_{n}"], out[f"diversity/distinct_{n}_stderr"] = _mean_stderr(values)
    sims = [self_similarity(s) for s in samples_per_prompt]
    mean, stderr = _mean_stderr(sims)
    out["diversity/self_similarity"], out["diversity/self_similarity_stderr"] = mean, stderr
    out["diversity/collapse_alarm"] = 1.0 if mean > collapse_threshold else 0.0
    return out


def group_samples(texts: Sequence[str], k: int) -> list[list[str]]:
    """`generate(..., n_samples=k)` returns the k samples of a prompt consecutively."""
    if k < 1 or len(texts) % k:
        raise ValueError(f"{len(texts)} samples do not split into groups of {k}")
    return [list(texts[i : i + k]) for i in range(0, len(texts), k)]


@register_eval("diversity", owns=("diversity/",), when=lambda ctx: ctx.eval.diversity.n_prompts > 0)
def diversity_of_policy(ctx: EvalContext) -> dict[str, float]:
    """k policy samples per prompt at temperature 1, neutral decoding."""
    d = ctx.eval.diversity
    settings = DecodingSettings(max_new_tokens=d.max_new_tokens, temperature=1.0, top_p=1.0, top_k=0,
                                seed=ctx.config.seed + 2, n_samples=d.samples_per_prompt)
    samples = generate(ctx.policy, ctx.tokenizer, ctx.prompt_texts[: d.n_prompts], settings,
                       model_fingerprint=ctx.policy_fingerprint, cache_dir=ctx.cache_dir,
                       batch_size=ctx.eval.batch_size, label="diversity samples")
    return diversity_summary(group_samples([s.text for s in samples], d.samples_per_prompt),
                             collapse_threshold=d.collapse_threshold)
