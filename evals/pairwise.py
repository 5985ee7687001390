"""Win rate of the policy against the reference on the same prompts: raw, length-controlled and
style-controlled (the statistics are `evals.winrate_stats`; this module asks the judge).

The judge gives alpaca-eval style preferences (1 = reference wins, 2 = policy wins, 1.5 = draw);
output_1 is always the reference, output_2 the policy.
"""
from __future__ import annotations

from evals.context import EvalContext, EvalOutput
from evals.judges import JudgeItem, build_judge, position_swap
from evals.length import MAX_TRUNCATED_PCT, is_censored
from evals.metrics import register_metric
from evals.registry import register_eval
from evals.winrate_stats import GAP, WinrateStatistics, winrate_statistics

__all__ = ["winrate_eval", "winrate_statistics", "WinrateStatistics"]

register_metric("winrate/position_flip_rate", higher_is_better=False, unit="fraction",
                description="share of verdicts that change when the two answers swap places")
register_metric("winrate/first_position_rate", higher_is_better=None, unit="fraction",
                description="share of decisive raw verdicts (both orders) that picked the answer shown first; 0.5 = no position bias")
register_metric("winrate/lengths_censored", higher_is_better=False, unit="flag",
                description="1.0 when more than evals.length.MAX_TRUNCATED_PCT of either side's judged answers hit "
                            "max_new_tokens: the win rates (raw, LC, style) describe cut answers, else 0.0")
register_metric("winrate/verbosity_alarm", higher_is_better=False, unit="flag",
                description="1.0 when raw minus LC win rate exceeds eval.verbosity_gap_pct (verbosity bought the win), "
                            "else 0.0; missing when LC is not identified",
                missing_reason="LC is not identified (see winrate/lc_identified), so the raw-minus-LC gap is unknown", neutral=0.0)


def winrate_eval(items: list[JudgeItem], judge="rule", *, n_bootstrap: int, seed: int, cache_dir=None,
                 verbosity_gap_pct: float = 10.0,
                 hit_limit: tuple[list[bool], list[bool]] | None = None,
                 max_truncated_pct: float = MAX_TRUNCATED_PCT) -> tuple[dict[str, float], list[float]]:
    """`judge`: a judge name, an `eval.judge` config or a judge object (see evals.judges.build_judge).
    A judge that fails raises (JudgeError): the eval fails, and the gate with it.

    The summary carries, for each controlled win rate that is not identified, a
    `<metric>_missing_reason` string (harness.gate quotes it when a rule reads the missing metric).
    `hit_limit`: (reference, policy) flags of answers cut at max_new_tokens; `winrate/lengths_censored`
    records whether either side's share is above `max_truncated_pct` (the judge then saw
    cut answers, and LC / style control corrected for the cut lengths, not the model's)."""
    swap = position_swap(build_judge(judge, cache_dir=cache_dir), items)
    verdicts = swap.verdicts
    reference, policy = [i.output_1 for i in items], [i.output_2 for i in items]
    stats = winrate_statistics(verdicts, [len(t) for t in reference], [len(t) for t in policy],
                               reference_texts=reference, policy_texts=policy, n_bootstrap=n_bootstrap, seed=seed)
    summary = stats.summary_with_reasons()
    summary["winrate/position_flip_rate"] = swap.flip_rate
    summary["winrate/first_position_rate"] = swap.first_position_rate
    if GAP in summary:
        summary["winrate/verbosity_alarm"] = float(summary[GAP] > verbosity_gap_pct)
    else:
        summary["winrate/verbosity_alarm_missing_reason"] = stats.lc_reason
    if hit_limit is not None:
        summary["winrate/lengths_censored"] = float(is_censored(hit_limit[1], hit_limit[0], max_truncated_pct))
    return summary, verdicts


def judged_winrate(ctx: EvalContext, baseline_out: list) -> tuple[dict[str, float], list[float]]:
    """The policy's greedy answers judged against `baseline_out` (the reference's, or the start's)."""
    e = ctx.eval
    items = [JudgeItem(p.text, r.text, o.text, p) for p, r, o in zip(ctx.prompts, baseline_out, ctx.policy_out)]
    return winrate_eval(items, e.judge, n_bootstrap=e.n_bootstrap, seed=ctx.config.seed, cache_dir=ctx.cache_dir,
                        verbosity_gap_pct=e.verbosity_gap_pct,
                        hit_limit=([r.hit_limit for r in baseline_out], [o.hit_limit for o in ctx.policy_out]),
                        max_truncated_pct=e.max_truncated_pct)


@register_eval("winrate", owns=("winrate/",))
def winrate_vs_reference(ctx: EvalContext) -> EvalOutput:
    summary, verdicts = judged_winrate(ctx, ctx.baseline_out or ctx.reference_out)
    return EvalOutput(summary, extras={"verdicts": verdicts})
