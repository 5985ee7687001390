"""The chosen-log-prob drop: DPO often lowers log pi(chosen) while widening the margin.

Measured on held-out pairs: summed completion log-probabilities of chosen and rejected
under the policy and the reference.
"""
from __future__ import annotations

import math
import statistics

from evals.context import EvalContext
from evals.generation import batch_completion_logprobs
from evals.metrics import register_metric
from evals.registry import register_eval

register_metric("chosen_logp/chosen_delta", higher_is_better=True, unit="nats",
                description="mean change of log pi(chosen) from reference to policy (negative: chosen dropped)", neutral=0.0)
register_metric("chosen_logp/rejected_delta", higher_is_better=False, unit="nats",
                description="mean change of log pi(rejected) from reference to policy", neutral=0.0)
register_metric("chosen_logp/margin_delta", higher_is_better=True, unit="nats",
                description="change of the chosen-minus-rejected log-prob margin", neutral=0.0)


def pair_logps(model, tokenizer, pairs: list[dict]) -> tuple[list[float], list[float]]:
    """Summed log pi of each pair's chosen and rejected completion (pairs: prompt/chosen/rejected strings)."""
    prompts = [p["prompt"] for p in pairs]
    eos = [tokenizer.eos_token_id]
    chosen = [tokenizer(p["chosen"], add_special_tokens=False)["input_ids"] + eos for p in pairs]
    rejected = [tokenizer(p["rejected"], add_special_tokens=False)["input_ids"] + eos for p in pairs]
    lc = batch_completion_logprobs(model, tokenizer, prompts, chosen)
    lr = batch_completion_logprobs(model, tokenizer, prompts, rejected)
    return [float(t.sum()) for t in lc], [float(t.sum()) for t in lr]


def chosen_drop_summary(policy: tuple[list[float], list[float]], reference: tuple[list[float], list[float]]) -> dict[str, float]:
    (pc, pr), (rc, rr) = policy, reference
    d_chosen = [a - b for a, b in zip(pc, rc)]
    d_rejected = [a - b for a, b in zip(pr, rr)]
    d_margin = [c - r for c, r in zip(d_chosen, d_rejected)]
    n = len(d_chosen)
    out = {
        "chosen_logp/policy_chosen": statistics.fmean(pc), "chosen_logp/policy_rejected": statistics.fmean(pr),
        "chosen_logp/reference_chosen": statistics.fmean(rc), "chosen_logp/reference_rejected": statistics.fmean(rr),
        "chosen_logp/n_pairs": float(n),
    }
    for name, values in (("chosen_delta", d_chosen), ("rejected_delta", d_rejected), ("margin_delta", d_margin)):
        out[f"chosen_logp/{name}"] = statistics.fmean(values)
        out[f"chosen_logp/{name}_stderr"] = statistics.stdev(values) / math.sqrt(n) if n > 1 else float("nan")
    return out


@register_eval("chosen_logp", owns=("chosen_logp/",))
def chosen_drop_vs_reference(ctx: EvalContext) -> dict[str, float]:
    if not ctx.heldout:
        raise ValueError("no held-out pairs (data.eval_fraction is 0 or the data is too small)")
    policy = pair_logps(ctx.policy, ctx.tokenizer, ctx.heldout)
    with ctx.as_reference():
        reference = pair_logps(ctx.policy, ctx.tokenizer, ctx.heldout)
    return chosen_drop_summary(policy, reference)
