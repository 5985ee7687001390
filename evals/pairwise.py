"""Win rate of the policy against the reference on the same prompts: raw, length-controlled and
style-controlled (the statistics are `evals.winrate_stats`; this module asks the judge).

The judge gives alpaca-eval style preferences (1 = reference wins, 2 = policy wins, 1.5 = draw);
output_1 is always the reference, output_2 the policy.
"""
from __future__ import annotations

from evals.context import EvalContext, EvalOutput
from evals.judges import JudgeItem, PositionSwap, build_judge, concat_swaps, position_swap
from evals.length import MAX_TRUNCATED_PCT, is_censored
from evals.metrics import register_metric
from evals.registry import register_eval
from evals.sequential import CONTINUE, PLAN_FIRST_ITEMS, recorded_plan, sequence_metrics, tracked_metrics, win_scores
from evals.winrate_stats import GAP, LC, RAW, STYLE, WinrateStatistics, winrate_statistics

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
register_metric("winrate/sequential_prompts_used", higher_is_better=None, unit="prompts",
                description="eval.sequential: prompts judged before every win-rate rule was decided (or the budget)")
register_metric("winrate/sequential_judge_calls", higher_is_better=None, unit="calls",
                description="eval.sequential: judge verdicts asked for (both orders of every judged prompt)")
register_metric("winrate/sequential_max_prompts", higher_is_better=None, unit="prompts",
                description="eval.sequential: the judging budget")
register_metric("winrate/sequential_planned_prompts", higher_is_better=None, unit="prompts",
                description="eval.sequential: the budget the test was first planned with (bets and alpha spending); a "
                            "rerun with a raised budget continues that test")
register_metric("winrate/sequential_stopped_early", higher_is_better=None, unit="flag",
                description="eval.sequential: 1.0 when every win-rate rule was decided before the budget")


# the three win rates again on the prompts where neither judged answer hit max_new_tokens (complete cases)
UNCUT_PROMPTS = "winrate/uncut_prompts"
MIN_UNCUT = 5  # fewest such prompts to report them at all (the controlled fits need more to be identified)
register_metric(UNCUT_PROMPTS, higher_is_better=None, unit="prompts",
                description="judged prompts where neither answer hit max_new_tokens: what the winrate/uncut_* rates read")


def uncut_key(key: str) -> str:
    """`winrate/lc_win_rate_pct` -> `winrate/uncut_lc_win_rate_pct`."""
    return key.replace("/", "/uncut_", 1)


for _key, _what in ((RAW, "raw win rate"), (LC, "LC win rate"), (STYLE, "style-controlled win rate")):
    register_metric(uncut_key(_key), higher_is_better=True, unit="pct", neutral=50.0,
                    description=f"the {_what} on the judged prompts where neither answer was cut at max_new_tokens: "
                                "a check of what censoring did to the headline rate. Complete cases: a prompt either "
                                "model loops on is left out, so a policy that starts looping is invisible here (the "
                                "gate's defaults read the rates on every prompt)",
                    missing_reason=f"fewer than {MIN_UNCUT} judged prompts with neither answer cut, or not identified "
                                   "on them")


def uncut_winrates(verdicts: list[float], reference: list[str], policy: list[str], hit_limit: tuple[list[bool], list[bool]],
                   summary: dict, *, n_bootstrap: int, seed: int) -> dict[str, float | str]:
    """`winrate/uncut_*`: raw, LC and style-controlled win rates (with stderr and interval) on the prompts whose
    two answers both ended before max_new_tokens. `summary`: the rates on every prompt, which these equal
    (copied, not refitted) when nothing was cut."""
    if not len(hit_limit[0]) == len(hit_limit[1]) == len(verdicts):
        raise ValueError(f"uncut_winrates: {len(verdicts)} verdicts but {len(hit_limit[0])} and {len(hit_limit[1])} "
                         "hit-limit flags")
    keep = [i for i, (r, p) in enumerate(zip(*hit_limit)) if not (r or p)]
    out: dict[str, float | str] = {UNCUT_PROMPTS: float(len(keep))}
    rates = (RAW, LC, STYLE)
    if len(keep) < MIN_UNCUT:
        return out | {f"{uncut_key(k)}_missing_reason": f"{len(keep)} judged prompts with neither answer cut at "
                                                         f"max_new_tokens, fewer than {MIN_UNCUT}" for k in rates}
    if len(keep) < len(verdicts):
        summary = winrate_statistics([verdicts[i] for i in keep], [len(reference[i]) for i in keep],
                                     [len(policy[i]) for i in keep], reference_texts=[reference[i] for i in keep],
                                     policy_texts=[policy[i] for i in keep], n_bootstrap=n_bootstrap,
                                     seed=seed).summary_with_reasons()
    for k in rates:
        out |= {uncut_key(k) + suffix: summary[k + suffix] for suffix in ("", "_stderr", "_ci_low", "_ci_high",
                                                                          "_missing_reason") if k + suffix in summary}
        if k in summary:  # the gate's sample size for these (harness.gate.sample_size), not winrate/n
            out[f"{uncut_key(k)}_n"] = float(len(keep))
    return out


def winrate_eval(items: list[JudgeItem], judge="rule", *, n_bootstrap: int, seed: int, cache_dir=None,
                 verbosity_gap_pct: float = 10.0,
                 hit_limit: tuple[list[bool], list[bool]] | None = None,
                 max_truncated_pct: float = MAX_TRUNCATED_PCT,
                 swap: PositionSwap | None = None) -> tuple[dict[str, float], list[float]]:
    """`judge`: a judge name, an `eval.judge` config or a judge object (see evals.judges.build_judge).
    A judge that fails raises (JudgeError): the eval fails, and the gate with it.

    The summary carries, for each controlled win rate that is not identified, a
    `<metric>_missing_reason` string (harness.gate quotes it when a rule reads the missing metric).
    `hit_limit`: (reference, policy) flags of answers cut at max_new_tokens; `winrate/lengths_censored`
    records whether either side's share is above `max_truncated_pct` (the judge then saw
    cut answers, and LC / style control corrected for the cut lengths, not the model's).
    `swap`: verdicts already judged (a sequential eval's batches), else the judge is asked here."""
    swap = swap or position_swap(build_judge(judge, cache_dir=cache_dir), items)
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
        summary |= uncut_winrates(verdicts, reference, policy, hit_limit, summary, n_bootstrap=n_bootstrap, seed=seed)
    return summary, verdicts


def judge_items(prompts: list, baseline: list, candidate: list) -> list[JudgeItem]:
    """One item per prompt, the baseline in the reference's seat (output_1); prompts keep their verifiers,
    which the rule judge reads."""
    return [JudgeItem(p.text, b.text, c.text, p) for p, b, c in zip(prompts, baseline, candidate)]


def head_to_head(prompts: list, baseline: list, candidate: list, eval_config, *, seed: int, cache_dir,
                 swap: PositionSwap | None = None) -> tuple[dict[str, float], list[float]]:
    """`candidate`'s answers (Completions) judged against `baseline`'s on the same prompts, both orders, with
    the judge and statistics of `eval_config` (an ExperimentConfig.eval): `winrate/*` keys, the candidate's
    win rate over the baseline, and the per-prompt verdicts. The one judging path of the win rate over the
    reference or the start, the head-to-head with the champion and `harness compare`."""
    return winrate_eval(judge_items(prompts, baseline, candidate), eval_config.judge,
                        n_bootstrap=eval_config.n_bootstrap, seed=seed, cache_dir=cache_dir,
                        verbosity_gap_pct=eval_config.verbosity_gap_pct,
                        hit_limit=([b.hit_limit for b in baseline], [c.hit_limit for c in candidate]),
                        max_truncated_pct=eval_config.max_truncated_pct, swap=swap)


def judged_winrate(ctx: EvalContext, baseline_out: list, n: int | None = None,
                   swap: PositionSwap | None = None) -> tuple[dict[str, float], list[float]]:
    """The policy's greedy answers judged against `baseline_out` (the reference's, or the start's): on the
    first `n` prompts when given (a sequential eval's stop), with verdicts already judged when given."""
    n = len(ctx.prompts) if n is None else n
    return head_to_head(ctx.prompts[:n], baseline_out[:n], ctx.policy_out[:n], ctx.eval, seed=ctx.config.seed,
                        cache_dir=ctx.cache_dir, swap=swap)


# the raw win rate is the mean of bounded per-prompt win scores: a betting confidence sequence applies;
# the regression read-outs (LC, style, the gap) get normal bounds at alpha spent across looks
BETTING, BOUNDED = {RAW}, (RAW, LC, STYLE, GAP)


def sequential_winrate(ctx: EvalContext, baseline_out: list, prefix: str = "winrate", judge=None
                       ) -> tuple[dict[str, float], list, list[dict]]:
    """eval.sequential: judge `batch_prompts` prompts at a time and stop once every gate rule on a `<prefix>/`
    metric (ctx.sequential_targets) is decided by its anytime-valid bound, or at the budget. `prefix` names
    the comparison: `winrate` (over the reference), `winrate_vs_champion` (head to head), `winrate_vs_start`.
    Returns the usual summary on the prompts judged, under `<prefix>/`, plus the anytime bounds the gate must
    read (evals.sequential); the verdicts (None for prompts not judged); the looks, for the report.
    `judge`: a judge object instead of eval.judge's (harness.gate_plan's simulated judge of known truth)."""
    e, seq = ctx.eval, ctx.eval.sequential
    items = judge_items(ctx.prompts, baseline_out, ctx.policy_out)
    budget = min(seq.max_prompts or len(items), len(items))
    judge = judge or build_judge(e.judge, cache_dir=ctx.cache_dir)
    targets = {m: rules for m, rules in ctx.sequential_targets.items() if m.startswith(f"{prefix}/")}
    # a rerun with a raised budget continues the test the first run planned (evals.sequential.recorded_plan)
    identity = {"eval": prefix, "judge": getattr(judge, "fingerprint", type(judge).__name__),
                "first_items": [[i.prompt, i.output_1, i.output_2] for i in items[:PLAN_FIRST_ITEMS]]}
    plan = recorded_plan(ctx.cache_dir, identity, budget, seq.batch_prompts)
    sequences = tracked_metrics(targets, [renamed_key(m, prefix) for m in BOUNDED], {renamed_key(RAW, prefix)}, budget,
                                seq.confidence, {renamed_key(RAW, prefix): 100.0}, planned_n=plan.budget)
    parts: list[PositionSwap] = []
    looks: list[int] = []
    while not looks or looks[-1] < budget:
        n = plan.next_look(looks[-1] if looks else 0, seq.batch_prompts, budget)
        parts.append(position_swap(judge, items[looks[-1] if looks else 0:n]))
        looks.append(n)
        verdicts = [v for p in parts for v in p.verdicts]
        stats = winrate_statistics(verdicts, [len(i.output_1) for i in items[:n]], [len(i.output_2) for i in items[:n]],
                                   reference_texts=[i.output_1 for i in items[:n]],
                                   policy_texts=[i.output_2 for i in items[:n]], n_bootstrap=0, seed=ctx.config.seed)
        for s in sequences:
            if s.method == "betting":
                s.look_betting(win_scores(verdicts), looks)
            else:
                key = renamed_key(s.metric, "winrate")
                s.look_spending(n, stats.summary.get(key), stats.summary.get(f"{key}_stderr"))
        deciding = [s for s in sequences if s.decides]
        if deciding and all(s.status != CONTINUE for s in deciding):
            break
    n = looks[-1]
    summary, verdicts = judged_winrate(ctx, baseline_out, n, swap=concat_swaps(parts))
    summary = {renamed_key(k, prefix): v for k, v in summary.items()}
    summary |= sequence_metrics(prefix, sequences, n, budget, judge_calls=2 * n)
    return summary, verdicts + [None] * (len(items) - n), [s.to_dict() for s in sequences]


def renamed_key(key: str, prefix: str) -> str:
    """`winrate/lc_win_rate_pct` -> `<prefix>/lc_win_rate_pct`: the same statistic of another comparison
    (`winrate_vs_champion`, `winrate_vs_start`)."""
    return f"{prefix}/{key.split('/', 1)[1]}"


def judged_comparison(ctx: EvalContext, baseline_out: list, prefix: str = "winrate"
                      ) -> tuple[dict[str, float], list, dict]:
    """The policy's answers judged against `baseline_out`, on every prompt or, with eval.sequential, until the
    rules on `<prefix>/` metrics are decided: (summary under `<prefix>/`, verdicts, extras for the report).
    What the win rate over the reference, the head-to-head with the champion and the win rate over the start
    each run."""
    if ctx.eval.sequential is not None:
        summary, verdicts, looks = sequential_winrate(ctx, baseline_out, prefix)
        return summary, verdicts, {"sequential": {prefix: looks}}
    summary, verdicts = judged_winrate(ctx, baseline_out)
    return {renamed_key(k, prefix): v for k, v in summary.items()}, verdicts, {}


@register_eval("winrate", owns=("winrate/",))
def winrate_vs_reference(ctx: EvalContext) -> EvalOutput:
    summary, verdicts, extras = judged_comparison(ctx, ctx.baseline_out or ctx.reference_out)
    return EvalOutput(summary, extras={"verdicts": verdicts} | extras)
