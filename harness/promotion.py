"""All registry side effects: record a gate decision, promote a validated run, force with a reason.

Promotion re-reads the champion just before moving the alias: if another gate moved it in
the meantime, the decision is re-made against the new champion, so two racing gates never
promote a run that would not beat the champion it replaces.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Callable

from harness.gate import PROMOTE, GateDecision


@dataclass
class PromotionOutcome:
    decision: GateDecision
    version: str | None  # registered model version when promoted


def record_decision(tracker, decision: GateDecision, *, name: str = "gate_decision.json") -> None:
    tracker.log_json(decision.to_dict(), name)
    tags = {"harness.verdict": decision.verdict,
            "harness.failed_checks": ",".join(c.name for c in decision.failed) or "-"}
    tags["harness.block_reason"] = decision.first_failure or "-"
    tracker.set_tags(tags)


def decide_and_promote(tracker, registry, decide: Callable[[dict | None], GateDecision], *, cell: str,
                       max_rounds: int = 5, version_tags: dict[str, str] | None = None) -> PromotionOutcome:
    """decide(champion_metrics or None) -> GateDecision; promote when it says PROMOTE and the champion
    has not changed between deciding and moving the alias."""
    version = None
    decision = None
    for _ in range(max_rounds):
        seen = tracker.champion(registry.model_name, registry.alias)
        decision = decide(tracker.run_metrics(seen[1]) if seen else None)
        if decision.verdict != PROMOTE:
            break
        if version is None:
            version = tracker.create_version(registry.model_name, "checkpoint",
                                             tags={"harness.cell": cell, "harness.validated": "true",
                                                   **(version_tags or {})})
        if tracker.champion(registry.model_name, registry.alias) == seen:  # nobody moved it meanwhile
            tracker.set_alias(registry.model_name, registry.alias, version)
            tracker.set_tags({"harness.model_version": version, "harness.promoted": "true"})
            break
    else:
        decision = GateDecision("BLOCK", decision.checks if decision else [])
    assert decision is not None
    record_decision(tracker, decision)
    promoted = decision.verdict == PROMOTE
    return PromotionOutcome(decision, version if promoted else None)


def force_promote(tracker, registry, *, cell: str, reason: str, user: str) -> str:
    """Promotion of a run the gate did not validate: allowed only with a reason, and recorded."""
    version = tracker.create_version(registry.model_name, "checkpoint",
                                     tags={"harness.cell": cell, "harness.validated": "false",
                                           "harness.forced": "true", "harness.force_reason": reason})
    tracker.set_alias(registry.model_name, registry.alias, version)
    tracker.set_tags({"harness.model_version": version, "harness.promoted": "true", "harness.forced": "true",
                      "harness.force_reason": reason, "harness.forced_by": user})
    tracker.log_json({"forced": True, "reason": reason, "by": user, "version": version}, "forced_promotion.json")
    return version


def dump(decision: GateDecision) -> str:
    return json.dumps(decision.to_dict(), indent=1)


@dataclass
class RecordedRun:
    run_id: str
    cell: str
    config: object  # ExperimentConfig
    metrics: dict[str, float]
    reference: dict[str, float]
    errors: dict[str, str]
    verdict: str | None
    start: dict[str, float] = field(default_factory=dict)  # iterative rounds >= 2: the starting model's values


def load_recorded(tracker, run_id: str, config_override=None) -> RecordedRun:
    from harness.config import validate_config

    run = tracker.client.get_run(run_id)
    if run.data.tags.get("harness.role") == "iterative":
        from harness.errors import HarnessInputError

        rounds = [r.info.run_id for r in tracker.client.search_runs(
            [run.info.experiment_id], filter_string=f"tags.`mlflow.parentRunId` = '{run_id}'")]
        raise HarnessInputError(f"run {run_id} is an iterative experiment's parent run; gate or promote one of its "
                                f"rounds: {', '.join(rounds) or 'none recorded'}")
    all_metrics = dict(run.data.metrics)
    config = config_override or validate_config(tracker.load_json(run_id, "config.json"), source=f"run {run_id} config.json")
    # data/ counters are not measurements; the off-policy diagnostic (data/*_logp_*, data/offpolicy_*) is
    metrics = {k: v for k, v in all_metrics.items()
               if not k.startswith(("train/", "reference/", "start/", "data/dropped_", "data/pairs"))}
    judge_fingerprint = run.data.tags.get("harness.judge_calibration.fingerprint")
    if judge_fingerprint:  # judge/* describe the judge, not the cell: its newest calibration applies (maybe done since)
        from evals.judge_calibration import stored_calibration

        stored = stored_calibration(tracker, judge_fingerprint)
        metrics = {k: v for k, v in metrics.items() if not k.startswith("judge/")} | (stored.metrics if stored else {})
    return RecordedRun(
        run_id=run_id, cell=run.data.tags.get("harness.cell", "?"), config=config, metrics=metrics,
        reference={k.removeprefix("reference/"): v for k, v in all_metrics.items() if k.startswith("reference/")},
        start={k.removeprefix("start/"): v for k, v in all_metrics.items() if k.startswith("start/")},
        errors=tracker.load_json(run_id, "eval_errors.json"), verdict=run.data.tags.get("harness.verdict"),
    )


def regate(recorded: RecordedRun, champion_metrics: dict | None, *, against: str | None = None) -> GateDecision:
    from evals.catalog import known_metrics
    from harness.gate import effective_rules, gate, rules_vs_start

    config = recorded.config
    rules = effective_rules(config.gate, config.eval.domain_tasks)
    if against:
        rules = [r.model_copy(update={"against": against}) for r in rules]
    if recorded.start and config.iteration.gate_vs_start:  # an iterative round >= 2: its start rules as recorded
        rules += rules_vs_start(effective_rules(config.gate, config.eval.domain_tasks))
    baselines = {"reference": recorded.reference, "start": recorded.start or recorded.reference,
                 "champion": champion_metrics}
    return gate(recorded.metrics, baselines, rules,
                specs=known_metrics(), errors=recorded.errors,
                allow_promote_without_rules=config.gate.allow_promote_without_rules)
