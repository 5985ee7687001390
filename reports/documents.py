"""The document each page renders, one model per page: `CellDocument`, `SweepDocument`, `IterativeDocument`.

A page's document comes from a live result (the pipeline, just before it renders the page) or from what
MLflow holds (`harness report`, reports.from_mlflow). Both constructors end in the page's one assembly
function (`cell_document`, `sweep_document`, `iterative_document`), whose keyword-only arguments are the
document's keys: a key added to a page is produced for both sources, or neither call runs. Documents
are plain dicts at run time (TypedDict); the renderers read them with `.get`, so a partial dict (a
test's, an old run's) still renders, each missing key as "—".

The live constructors take the pipeline's objects by their attributes (named in each docstring), not
their classes: harness imports reports, never the other way round.
"""
from __future__ import annotations

from typing import Any, Mapping, TypedDict

__all__ = ["CellDocument", "SweepDocument", "RoundDocument", "IterativeDocument", "cell_document",
           "live_cell_document", "live_samples", "metric_specs", "sweep_document", "round_document",
           "iterative_document", "live_iterative_document"]


# --------------------------------------------------------------------------- cell


class CellDocument(TypedDict):
    """One cell's page (reports.experiment)."""

    experiment: str | None
    run_id: str
    cell: str
    verdict: str | None
    config: dict[str, Any]  # redacted (harness.recording.redacted_config)
    metrics: dict[str, Any]  # `<eval>/<metric>` measurements only (numbers; `<metric>_missing_reason` texts)
    metric_specs: dict[str, dict[str, Any]]  # metric -> higher_is_better, unit, description
    checks: list[dict[str, Any]]  # the gate decision's checks
    training: dict[str, Any]  # {"history": [{"step": n, <metric>: value}], "seconds": s (when known)}
    samples: list[dict[str, Any]]  # one per held-out prompt: prompt, reference, policy, verdict, tokens, champion's
    data: dict[str, Any]  # the preference data's stats (harness.data.loading)
    errors: dict[str, str]  # eval (or "run") -> message
    judge_calibration: dict[str, Any]
    sequential: dict[str, Any]  # the sequential looks (reports.sequential), {} for a fixed-size run
    gate_plan: dict[str, Any] | None  # harness.gate_plan's plan at this run's sizes
    champion: dict[str, Any] | None  # the champion judged head to head: {"version", "run_id"}


def metric_specs() -> dict[str, dict[str, Any]]:
    """Every declared metric's direction, unit and description (evals.catalog), as the page shows them."""
    try:
        from evals.catalog import known_metrics

        return {k: {"higher_is_better": s.higher_is_better, "unit": s.unit, "description": s.description}
                for k, s in known_metrics().items() if s is not None}
    except Exception:  # a view: an eval package that fails to import must not take the page down
        return {}


def cell_document(*, experiment: str | None, run_id: str, cell: str, verdict: str | None, config: dict[str, Any],
                  metrics: dict[str, Any], checks: list[dict[str, Any]], training: dict[str, Any],
                  samples: list[dict[str, Any]], data: dict[str, Any], errors: dict[str, str],
                  judge_calibration: dict[str, Any], sequential: dict[str, Any], gate_plan: dict[str, Any] | None,
                  champion: dict[str, Any] | None) -> CellDocument:
    """The cell page's document: every key, for both sources, is produced here."""
    return CellDocument(experiment=experiment, run_id=run_id, cell=cell, verdict=verdict, config=config,
                        metrics=metrics, metric_specs=metric_specs(), checks=checks, training=training,
                        samples=samples, data=data, errors=errors, judge_calibration=judge_calibration,
                        sequential=sequential, gate_plan=gate_plan, champion=champion)


def live_samples(ctx: Any, outcome: Any) -> list[dict[str, Any]]:
    """One row per held-out prompt, as generations.jsonl records it. `ctx`: evals.context.EvalContext
    (prompts, reference_out, policy_out); `outcome`: evals.registry.EvalsOutcome (extras)."""
    verdicts = outcome.extras.get("verdicts") or [None] * len(ctx.prompts)
    samples = [{"prompt": p.text, "reference": r.text, "policy": o.text, "verdict": v,
                "reference_tokens": r.n_tokens, "policy_tokens": o.n_tokens}
               for p, r, o, v in zip(ctx.prompts, ctx.reference_out, ctx.policy_out, verdicts)]
    if getattr(ctx, "baseline_out", None):  # eval.prompts alpaca_eval: the verdict compared the named baseline's answer
        name = getattr(ctx, "baseline_name", None) or "baseline"
        for sample, answer in zip(samples, ctx.baseline_out):  # the reference's stay: the length eval reads them
            sample.update({"baseline": answer.text, "baseline_name": name,
                           "baseline_tokens": len(ctx.tokenizer(answer.text, add_special_tokens=False)["input_ids"])})
    for sample, champion in zip(samples, outcome.extras.get("champion_samples") or []):
        sample.update(champion)  # the champion's answer and the head-to-head verdict (evals.vs_champion)
    return samples


def live_cell_document(*, experiment: str | None, run_id: str, cell: str, config: dict[str, Any], ctx: Any,
                       outcome: Any, decision: Any, trained: Any, data: dict[str, Any],
                       gate_plan: dict[str, Any] | None) -> CellDocument:
    """The cell page from the pipeline's objects (harness.experiment): `ctx` and `outcome` as in
    `live_samples` (plus outcome.metrics, .errors), `decision` a harness.gate.GateDecision (verdict,
    to_dict()), `trained` the training result (history, seconds); `config` already redacted."""
    return cell_document(
        experiment=experiment, run_id=run_id, cell=cell, verdict=decision.verdict, config=config,
        metrics=outcome.metrics, checks=decision.to_dict()["checks"],
        training={"history": trained.history, "seconds": trained.seconds}, samples=live_samples(ctx, outcome),
        data=data, errors=outcome.errors, judge_calibration=outcome.extras.get("judge_calibration", {}),
        sequential=outcome.extras.get("sequential", {}), gate_plan=gate_plan,
        champion=outcome.extras.get("champion"))


# --------------------------------------------------------------------------- sweep


class SweepDocument(TypedDict):
    """One sweep's page (reports.sweep). A live sweep renders its page from MLflow (harness.sweep calls
    reports.from_mlflow), so reports.from_mlflow.load_sweep_result is its one constructor."""

    sweep: str
    sweep_key: str | None
    run_id: str
    cells: list[CellDocument]
    champion: dict[str, Any] | None  # {"cell", "run_id"}
    pareto: list[str] | None  # cell keys on the LC-win-rate-vs-KL front; None: the page computes it
    selection: dict[str, Any] | None  # the one-champion rule and its outcome (harness.sweep)
    gate_plan: dict[str, Any] | None  # the sweep's own plan; None: the page shows the plan its cells carry


def sweep_document(*, sweep: str, sweep_key: str | None, run_id: str, cells: list[CellDocument],
                   champion: dict[str, Any] | None, selection: dict[str, Any] | None,
                   pareto: list[str] | None = None, gate_plan: dict[str, Any] | None = None) -> SweepDocument:
    return SweepDocument(sweep=sweep, sweep_key=sweep_key, run_id=run_id, cells=cells, champion=champion,
                         pareto=pareto, selection=selection, gate_plan=gate_plan)


# --------------------------------------------------------------------------- iterative


class RoundDocument(TypedDict):
    """One round's row on the iterative page."""

    index: int
    run_id: str
    verdict: str
    reference_round: int  # what the round trained against: 0 = the starting model
    metrics: dict[str, float]  # round 1's include its "vs start" figures (its reference is the start)
    pairs: int | None
    first_failure: str | None
    report: str  # the round's cell page ("" when there is none)


class IterativeDocument(TypedDict):
    """One iterative chain's page (reports.iterative)."""

    title: str | None  # the experiment's name
    cell: str
    run_id: str  # the parent run
    verdict: str
    iterations: int  # rounds configured
    rounds: list[RoundDocument]
    promoted_round: int | None
    stop_reason: str | None  # why fewer than `iterations` rounds ran


def round_document(*, index: int, run_id: str, verdict: str, reference_round: int, metrics: Mapping[str, float],
                   pairs: int | None, first_failure: str | None, report: str) -> RoundDocument:
    metrics = dict(metrics)
    if index == 1:  # round 1's reference is the start: its "vs start" figures are its "vs prev" ones
        from evals.vs_start import against_start

        metrics |= against_start(metrics)
    return RoundDocument(index=index, run_id=run_id, verdict=verdict, reference_round=reference_round,
                         metrics=metrics, pairs=pairs, first_failure=first_failure, report=report)


def iterative_document(*, title: str | None, cell: str, run_id: str, verdict: str, iterations: int,
                       rounds: list[RoundDocument], promoted_round: int | None,
                       stop_reason: str | None) -> IterativeDocument:
    return IterativeDocument(title=title, cell=cell, run_id=run_id, verdict=verdict, iterations=iterations,
                             rounds=rounds, promoted_round=promoted_round, stop_reason=stop_reason)


def live_iterative_document(outcome: Any, config: Any) -> IterativeDocument:
    """The iterative page from harness.iterative's IterativeResult (rounds: index, reference["round"],
    data, result.run_id/verdict/metrics/report/decision.first_failure) and its config (name, iterations)."""
    rounds = [round_document(index=r.index, run_id=r.result.run_id, verdict=r.result.verdict,
                             reference_round=r.reference["round"], metrics=r.result.metrics,
                             pairs=r.data.get("pairs"), first_failure=r.result.decision.first_failure,
                             report=r.result.report or "")
              for r in outcome.rounds]
    return iterative_document(title=config.name, cell=outcome.cell, run_id=outcome.run_id, verdict=outcome.verdict,
                              iterations=config.iterations, rounds=rounds, promoted_round=outcome.promoted_round,
                              stop_reason=getattr(outcome, "stop_reason", None))
