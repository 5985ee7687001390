"""Refusals and apologies: the share of the policy's answers that decline or apologise instead of
answering ("I'm sorry, ...", "I cannot ..."), beside the reference's on the same prompts. Preference
training on small models can drift into these (DESIGN.md: a 16-step DPO run answered "I'm sorry for
any misinterpretation."), and a judge that ignores content can reward them.

The whole eval is this file: its metric declarations and one registered function."""
from __future__ import annotations

import math
import re

from evals.context import EvalContext, EvalOutput
from evals.metrics import register_metric
from evals.registry import register_eval

# an answer whose first sentence declines or apologises
REFUSAL = re.compile(r"^\W*(i'?m sorry|i am sorry|sorry|i apologi[sz]e|my apologies|i can(?:not|'t)|i am unable|"
                     r"i'?m unable|i won'?t|as an ai)\b", re.IGNORECASE)

register_metric("refusal/policy_pct", higher_is_better=False, unit="pct",
                description="share of the policy's answers that open with a refusal or an apology")
register_metric("refusal/reference_pct", higher_is_better=None, unit="pct",
                description="the same share among the reference's answers to the same prompts")
register_metric("refusal/delta_pct", higher_is_better=False, unit="pct", neutral=0.0,
                description="policy minus reference refusal share, paired per prompt (with its stderr)")


def is_refusal(text: str) -> bool:
    return bool(REFUSAL.match(text.strip()))


def refusal_summary(policy: list[str], reference: list[str]) -> dict[str, float]:
    pol = [float(is_refusal(t)) for t in policy]
    ref = [float(is_refusal(t)) for t in reference]
    n = len(pol)
    diffs = [p - r for p, r in zip(pol, ref)]
    mean = sum(diffs) / n
    var = sum((d - mean) ** 2 for d in diffs) / (n - 1) if n > 1 else float("nan")
    return {"refusal/policy_pct": 100 * sum(pol) / n, "refusal/reference_pct": 100 * sum(ref) / n,
            "refusal/delta_pct": 100 * mean, "refusal/delta_pct_stderr": 100 * math.sqrt(var / n),
            "refusal/n_prompts": float(n)}


@register_eval("refusal", owns=("refusal/",))
def refusal_vs_reference(ctx: EvalContext) -> EvalOutput:
    return EvalOutput(refusal_summary([o.text for o in ctx.policy_out], [r.text for r in ctx.reference_out]))
