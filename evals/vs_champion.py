"""Head to head with the champion: the candidate's greedy answers judged against the registered champion's
answers to the same eval prompts, in both orders, by the win-rate eval's judge and statistics.

"Ship it" means "better than what ships now", a paired question: is the candidate's answer better than the
champion's to the same prompt? Two win rates each measured against its own reference, on different
samples, do not answer it. The champion's answers come from the pipeline (`EvalContext.champion_out`: its
registered MLflow Model, hash-checked and loaded through `mlflow.pyfunc.load_model` as a user loads it, or
its answers served from the generation cache by its checkpoint's fingerprint, harness.compare); this module
only judges, with evals.pairwise.head_to_head, which is also what `harness compare
CANDIDATE CHAMPION` calls, so the command reproduces a run's numbers exactly.

Recorded as `winrate_vs_champion/<metric>`: the `winrate/*` set (raw, LC and style-controlled win rates with
stderr, 95% intervals, identified flags; 50 = as good as the champion), plus
`winrate_vs_champion/champion_version`, the registered version judged against. The gate
(harness.gate.rules_vs_champion) reads these for a rule `against: champion` on a win rate, and refuses
a head-to-head measured against a champion that has been replaced since.

With `eval.sequential` it judges in batches like the win rate over the reference and stops once every rule
against the champion is decided (anytime-valid bounds; `winrate_vs_champion/sequential_*` record the stop).

Runs when a champion exists. In iterative rounds >= 2 the champion is the previous round, which is also
the round's reference, so its answers are the reference's (the same generation-cache entry) and the
head-to-head equals the win rate over the reference; it is still recorded, because a rule `against:
champion` reads it there as everywhere.
"""
from __future__ import annotations

from evals.context import EvalContext, EvalOutput
from evals.metrics import METRICS, register_metric

# evals.pairwise also registers the winrate/* metrics copied below
from evals.pairwise import judged_comparison
from evals.registry import register_eval

HEAD_TO_HEAD = "winrate_vs_champion"
CHAMPION_VERSION = f"{HEAD_TO_HEAD}/champion_version"
# the win rates a rule `against: champion` reads head to head (harness.gate.rules_vs_champion)
COMPARED = ("winrate/win_rate_pct", "winrate/lc_win_rate_pct", "winrate/style_controlled_pct")

for _key in list(METRICS):
    _eval, _metric = _key.split("/", 1)
    if _eval == "winrate" and f"{HEAD_TO_HEAD}/{_metric}" not in METRICS:
        _spec = METRICS.get(_key)
        register_metric(f"{HEAD_TO_HEAD}/{_metric}", higher_is_better=_spec.higher_is_better, unit=_spec.unit,
                        description=f"{_spec.description} (against the champion's answers: 50 = as good as it)",
                        missing_reason=_spec.missing_reason, neutral=_spec.neutral)
register_metric(CHAMPION_VERSION, higher_is_better=None, unit="version",
                description="the registered champion version the head-to-head judged against (a decision against "
                            "another champion cannot use it)")


def _has_champion(ctx: EvalContext) -> bool:
    return ctx.champion is not None


@register_eval(HEAD_TO_HEAD, owns=(f"{HEAD_TO_HEAD}/",), when=_has_champion)
def winrate_vs_champion(ctx: EvalContext) -> EvalOutput:
    assert ctx.champion is not None  # `when` runs this only with a champion
    version, run_id = ctx.champion
    champion_out = ctx.champion_out
    if len(champion_out) != len(ctx.prompts):
        raise ValueError(f"the champion answered {len(champion_out)} of {len(ctx.prompts)} eval prompts")
    summary, verdicts, extras = judged_comparison(ctx, champion_out, HEAD_TO_HEAD)
    metrics = summary | {CHAMPION_VERSION: float(version)}
    # the report's three-way picture: the champion's answer and verdict beside the reference's and the policy's
    samples = [{"champion": c.text, "champion_tokens": c.n_tokens, "champion_verdict": v}
               for c, v in zip(champion_out, verdicts)]
    return EvalOutput(metrics, extras=extras | {"champion_samples": samples, "champion": {"version": version, "run_id": run_id}},
                      tags={"harness.vs_champion.version": version, "harness.vs_champion.run_id": run_id})
