"""Iterative training measures each round against the previous round (its reference) and against
the model it started from. The second set reuses the same evals under `<eval>_vs_start/<metric>`,
declared here from the originals so direction and unit are never restated.
"""
from __future__ import annotations

from evals import kl, lc_winrate, length, pairwise  # noqa: F401  (their metrics must be registered first)
from evals.context import EvalContext, EvalOutput
from evals.generation import batch_completion_logprobs
from evals.kl import kl_from_logprobs
from evals.length import length_summary
from evals.metrics import METRICS, register_metric
from evals.pairwise import judged_comparison
from evals.registry import register_eval

VS_START = {"winrate": "winrate_vs_start", "kl": "kl_vs_start", "length": "length_vs_start"}

for _key in list(METRICS):
    _eval, _metric = _key.split("/", 1)
    if _eval in VS_START and f"{VS_START[_eval]}/{_metric}" not in METRICS:
        _spec = METRICS.get(_key)
        register_metric(f"{VS_START[_eval]}/{_metric}", higher_is_better=_spec.higher_is_better, unit=_spec.unit,
                        description=f"{_spec.description} (against the starting model)", neutral=_spec.neutral,
                        skewed=_spec.skewed)


def against_start(summary: dict[str, float]) -> dict[str, float]:
    """`winrate/lc_win_rate_pct_ci_low` -> `winrate_vs_start/lc_win_rate_pct_ci_low` (uncertainty suffixes ride along)."""
    out = {}
    for key, value in summary.items():
        evaluation, metric = key.split("/", 1)
        out[f"{VS_START.get(evaluation, evaluation)}/{metric}"] = value
    return out


def _iterating(ctx: EvalContext) -> bool:
    return ctx.start is not None


@register_eval("winrate_vs_start", owns=("winrate_vs_start/",), when=_iterating)
def winrate_vs_start(ctx: EvalContext) -> EvalOutput:
    summary, _, extras = judged_comparison(ctx, ctx.start_out, VS_START["winrate"])
    return EvalOutput(summary, extras=extras)


@register_eval("kl_vs_start", owns=("kl_vs_start/",), when=_iterating)
def kl_vs_start(ctx: EvalContext) -> dict[str, float]:
    """The same policy samples as `kl`, scored by the starting model."""
    prompts, ids, lp_policy = ctx.kl_samples
    lp_start = batch_completion_logprobs(ctx.start, ctx.tokenizer, prompts, ids, ctx.eval.batch_size)
    return against_start(kl_from_logprobs(lp_policy, lp_start).summary())


@register_eval("length_vs_start", owns=("length_vs_start/",), when=_iterating)
def length_vs_start(ctx: EvalContext) -> dict[str, float]:
    pol, base = ctx.policy_out, ctx.start_out
    return against_start(length_summary([o.n_tokens for o in pol], [r.n_tokens for r in base],
                                        [len(o.text) for o in pol], [len(r.text) for r in base]))
