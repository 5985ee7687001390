"""KL(policy || reference) by Monte-Carlo over policy samples.

Samples come from the policy at temperature 1 with no top-p/top-k (the estimator is only
unbiased under the policy's own distribution); evals.generation passes a complete decoding config,
so nothing from the model's generation_config.json (repetition penalty, min_p, typical_p, top_k,
n-gram blocking) reshapes them, and a row ends only at EOS or max_new_tokens (a sample cut at the
limit is a sample of the first max_new_tokens tokens: the estimate is then the KL of that prefix
distribution, still unbiased for it). Both models rescore the same tokens in the same precision.
Per sequence: k1 = sum(log pi - log ref) (unbiased, can go negative), and
k3 = sum(r - 1 - log r) with r = ref/pi (unbiased per token, always >= 0, lower variance).

Per-sequence KL is right-skewed (a few responses drift far from the reference), so a normal bound on its
mean under-covers at the 6-16 samples the configs draw. The summary records each estimator's sample
skewness (`kl/seq_kl_k3_skewness`), from which harness.gate.confidence_limit computes a skew-aware bound
at whatever level a rule asks for (docs/gate_validity.md).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from evals.context import EvalContext
from evals.generation import batch_completion_logprobs
from evals.metrics import register_metric, sample_skewness
from evals.registry import register_eval

register_metric("kl/seq_kl_k1", higher_is_better=False, unit="nats/sequence",
                description="KL(policy||reference) per sampled response, k1 estimator", neutral=0.0, skewed=True)
register_metric("kl/seq_kl_k3", higher_is_better=False, unit="nats/sequence",
                description="KL(policy||reference) per sampled response, k3 estimator (>= 0)", neutral=0.0, skewed=True)
register_metric("kl/token_kl_k1", higher_is_better=False, unit="nats/token",
                description="KL(policy||reference) per generated token, k1", neutral=0.0)


@dataclass
class KLEstimate:
    seq_k1: list[float]
    seq_k3: list[float]
    n_tokens: int

    def summary(self) -> dict[str, float]:
        n = len(self.seq_k1)
        out = {}
        for name, values in (("seq_kl_k1", self.seq_k1), ("seq_kl_k3", self.seq_k3)):
            mean = sum(values) / n
            var = sum((v - mean) ** 2 for v in values) / (n - 1) if n > 1 else float("nan")
            out[f"kl/{name}"] = mean
            out[f"kl/{name}_stderr"] = math.sqrt(var / n) if n > 1 else float("nan")
            out[f"kl/{name}_skewness"] = sample_skewness(values, mean)
        out["kl/token_kl_k1"] = sum(self.seq_k1) / max(self.n_tokens, 1)
        out["kl/n_samples"] = float(n)
        return out


def kl_from_logprobs(policy_logps: list[torch.Tensor], reference_logps: list[torch.Tensor]) -> KLEstimate:
    k1, k3, n_tokens = [], [], 0
    for lp, lr in zip(policy_logps, reference_logps):
        log_ratio = (lr - lp).double()  # log(ref/pi) per token
        k1.append(float((-log_ratio).sum()))
        k3.append(float((log_ratio.exp() - 1 - log_ratio).sum()))
        n_tokens += len(lp)
    return KLEstimate(k1, k3, n_tokens)


def exact_sequence_kl(policy_probs: dict[tuple, float], reference_probs: dict[tuple, float]) -> float:
    """Exact KL over an enumerated sequence space (for tests on models small enough to enumerate)."""
    return sum(p * (math.log(p) - math.log(reference_probs[s])) for s, p in policy_probs.items() if p > 0)


@register_eval("kl", owns=("kl/",))
def kl_vs_reference(ctx: EvalContext) -> dict[str, float]:
    """The policy's own samples, scored by the policy and by the reference (adapters disabled)."""
    prompts, ids, lp_policy = ctx.kl_samples
    with ctx.as_reference():
        lp_reference = batch_completion_logprobs(ctx.policy, ctx.tokenizer, prompts, ids, ctx.eval.batch_size)
    return kl_from_logprobs(lp_policy, lp_reference).summary()
