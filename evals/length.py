"""Length drift: preference optimization buys wins with verbosity; this measures it."""
from __future__ import annotations

import statistics

from evals.metrics import register_metric

register_metric("length/ratio_tokens", higher_is_better=None, unit="ratio",
                description="mean policy response tokens / mean reference response tokens")
register_metric("length/ratio_chars", higher_is_better=None, unit="ratio",
                description="mean policy response characters / mean reference response characters")
register_metric("length/policy_mean_tokens", higher_is_better=None, unit="tokens", description="mean policy response length")
register_metric("length/reference_mean_tokens", higher_is_better=None, unit="tokens",
                description="mean reference response length")


def _p90(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(0.9 * (len(ordered) - 1))))]


def length_summary(policy_tokens: list[int], reference_tokens: list[int],
                   policy_chars: list[int], reference_chars: list[int]) -> dict[str, float]:
    out: dict[str, float] = {}
    for who, toks, chars in (("policy", policy_tokens, policy_chars), ("reference", reference_tokens, reference_chars)):
        out[f"length/{who}_mean_tokens"] = statistics.fmean(toks)
        out[f"length/{who}_median_tokens"] = statistics.median(toks)
        out[f"length/{who}_p90_tokens"] = _p90(toks)
        out[f"length/{who}_mean_chars"] = statistics.fmean(chars)
    ref_t, ref_c = out["length/reference_mean_tokens"], out["length/reference_mean_chars"]
    out["length/ratio_tokens"] = out["length/policy_mean_tokens"] / ref_t if ref_t else float("nan")
    out["length/ratio_chars"] = out["length/policy_mean_chars"] / ref_c if ref_c else float("nan")
    return out
