"""Length drift: preference optimization buys wins with verbosity; this measures it.

Answers cut at max_new_tokens are censored: their length says only "at least this long", so a mean
or a ratio over them understates whichever side was cut more (in the quickstart most reference
answers hit the 48-token cap, which made the policy look longer than it was). Each side's share of
answers that hit the limit is recorded; when either exceeds `MAX_TRUNCATED_PCT`, `length/censored`
is 1 and the ratios are left out (a gate rule on them fails closed, saying why). Raising
`eval.max_new_tokens` until the answers fit is the fix.
"""
from __future__ import annotations

import math
import statistics

from evals.context import EvalContext
from evals.metrics import register_metric, sample_skewness
from evals.registry import register_eval

# Above this share of cut answers on either side, length ratios are not reported: the default of
# eval.max_truncated_pct (harness.config), which a run passes in.
MAX_TRUNCATED_PCT = 10.0

_CENSORED = (f"more than {MAX_TRUNCATED_PCT:g}% of the policy's or the reference's answers hit eval.max_new_tokens "
             "(see length/truncated_pct, length/reference_truncated_pct): lengths are censored; raise max_new_tokens")

RATIO_KEYS = ("length/ratio_tokens", "length/ratio_chars")
register_metric("length/ratio_tokens", higher_is_better=None, unit="ratio",
                description="mean policy response tokens / mean reference response tokens; missing when censored",
                missing_reason=_CENSORED, neutral=1.0, skewed=True)
register_metric("length/ratio_chars", higher_is_better=None, unit="ratio",
                description="mean policy response characters / mean reference response characters; missing when censored",
                missing_reason=_CENSORED, neutral=1.0, skewed=True)
register_metric("length/policy_mean_tokens", higher_is_better=None, unit="tokens", description="mean policy response length")
register_metric("length/reference_mean_tokens", higher_is_better=None, unit="tokens",
                description="mean reference response length")
register_metric("length/truncated_pct", higher_is_better=False, unit="pct",
                description="share of policy answers that hit max_new_tokens without an EOS (censored lengths)")
register_metric("length/reference_truncated_pct", higher_is_better=False, unit="pct",
                description="share of reference answers that hit max_new_tokens without an EOS (censored lengths)")
register_metric("length/censored", higher_is_better=False, unit="flag",
                description=f"1.0 when more than {MAX_TRUNCATED_PCT:g}% of either side's answers hit max_new_tokens: "
                            "length ratios are then left out and LC / style-controlled win rates are measured on cut "
                            "answers, else 0.0")


def _p90(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(0.9 * (len(ordered) - 1))))]


def truncated_pct(hit_limit: list[bool]) -> float:
    return 100.0 * sum(map(bool, hit_limit)) / len(hit_limit) if hit_limit else 0.0


def is_censored(policy_hit_limit: list[bool], reference_hit_limit: list[bool],
                max_truncated_pct: float = MAX_TRUNCATED_PCT) -> bool:
    return max(truncated_pct(policy_hit_limit), truncated_pct(reference_hit_limit)) > max_truncated_pct


def ratio_of_means(policy: list[float], reference: list[float]) -> tuple[float, float, float]:
    """mean(policy) / mean(reference) over the same prompts, what a length-ratio ceiling reads: (ratio, its
    delta-method standard error, the skewness of the per-prompt influence values (p_i - r * q_i) / mean(q)).
    Lengths are right-skewed, and the normal bound of a skewed mean under-covers on the long side (87-93% at
    a nominal 95% at 12-32 prompts, docs/gate_validity.md); harness.gate widens the bound by the skewness."""
    n, ref_mean = len(policy), statistics.fmean(reference)
    if not ref_mean:
        return float("nan"), float("nan"), float("nan")
    ratio = statistics.fmean(policy) / ref_mean
    if n < 2:
        return ratio, float("nan"), float("nan")
    influence = [(p - ratio * q) / ref_mean for p, q in zip(policy, reference)]
    return ratio, statistics.stdev(influence) / math.sqrt(n), sample_skewness(influence, statistics.fmean(influence))


def length_summary(policy_tokens: list[int], reference_tokens: list[int],
                   policy_chars: list[int], reference_chars: list[int], *,
                   policy_hit_limit: list[bool] | None = None, reference_hit_limit: list[bool] | None = None,
                   max_truncated_pct: float = MAX_TRUNCATED_PCT) -> dict[str, float | str]:
    """Length metrics. With the hit-limit flags (evals.generation.Completion.hit_limit) the truncated
    shares are recorded and the ratios dropped when censored; the summary then says why under
    `<ratio>_missing_reason` (harness.gate quotes it)."""
    out: dict[str, float | str] = {}
    for who, toks, chars in (("policy", policy_tokens, policy_chars), ("reference", reference_tokens, reference_chars)):
        out[f"length/{who}_mean_tokens"] = statistics.fmean(toks)
        out[f"length/{who}_median_tokens"] = statistics.median(toks)
        out[f"length/{who}_p90_tokens"] = _p90(toks)
        out[f"length/{who}_mean_chars"] = statistics.fmean(chars)
    for unit, pol, ref in (("tokens", policy_tokens, reference_tokens), ("chars", policy_chars, reference_chars)):
        ratio, stderr, skewness = ratio_of_means(pol, ref)
        out[f"length/ratio_{unit}"], out[f"length/ratio_{unit}_stderr"] = ratio, stderr
        out[f"length/ratio_{unit}_skewness"] = skewness
        out[f"length/ratio_{unit}_n"] = float(len(pol))
    if policy_hit_limit is None or reference_hit_limit is None:
        return out
    out["length/truncated_pct"] = truncated_pct(policy_hit_limit)
    out["length/reference_truncated_pct"] = truncated_pct(reference_hit_limit)
    censored = is_censored(policy_hit_limit, reference_hit_limit, max_truncated_pct)
    out["length/censored"] = float(censored)
    if censored:
        why = (f"{out['length/truncated_pct']:.0f}% of the policy's and {out['length/reference_truncated_pct']:.0f}% "
               f"of the reference's answers hit max_new_tokens (more than {max_truncated_pct:g}%): lengths are "
               "censored; raise eval.max_new_tokens")
        for key in RATIO_KEYS:
            del out[key], out[f"{key}_stderr"], out[f"{key}_skewness"], out[f"{key}_n"]
            out[f"{key}_missing_reason"] = why
    return out


@register_eval("length", owns=("length/",))
def length_vs_reference(ctx: EvalContext) -> dict[str, float | str]:
    pol, ref = ctx.policy_out, ctx.reference_out
    return length_summary([o.n_tokens for o in pol], [r.n_tokens for r in ref], [len(o.text) for o in pol],
                          [len(r.text) for r in ref], policy_hit_limit=[o.hit_limit for o in pol],
                          reference_hit_limit=[r.hit_limit for r in ref],
                          max_truncated_pct=ctx.eval.max_truncated_pct)
