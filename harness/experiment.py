"""One experiment cell end to end: data -> train -> generate -> evals -> gate -> promote -> report.

Every stage returns a value; an eval that raises is recorded under `errors` and fails the
gate (fail-closed). A crash outside the evals ends the MLflow run as FAILED, never FINISHED.
"""
from __future__ import annotations

import contextlib
import os
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from rich.console import Console
from rich.markup import escape

from evals.catalog import known_metrics
from evals.context import EvalContext, greedy_answers
from evals.eval_prompts import annotation_rows, prepare_eval_prompts, write_annotations
from evals.registry import EvalsOutcome, run_evals
from harness.config import ExperimentConfig
from harness.errors import HarnessInputError
from harness.gate import GateDecision, gate, rules_for, rules_vs_champion, sequential_targets
from harness.promotion import champion_baseline, promote_run, record_decision, record_evidence
from harness.recording import (
    gate_plan_for_report,
    record_inputs,
    redacted_config,
    reference_baseline,
    report_or_recorded_failure,
    start_values,
)
from harness.recording import write_generations as _write_generations

console = Console(stderr=True)


@dataclass
class ExperimentResult:
    run_id: str
    cell: str
    verdict: str
    metrics: dict[str, float]
    decision: GateDecision
    report: str
    errors: dict[str, str] = field(default_factory=dict)
    champion_version: str | None = None
    policy_fingerprint: str = ""
    adapter_dir: Path | None = None
    policy: Any = field(default=None, repr=False)  # the trained PEFT model (iterative rounds merge it)
    # what promotion needs once the run has ended: (decide, champion the decision saw, version tags)
    pending_promotion: Any = field(default=None, repr=False)

    def to_json(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "cell": self.cell, "verdict": self.verdict, "metrics": self.metrics,
                "checks": self.decision.to_dict()["checks"], "report": self.report, "errors": self.errors,
                "champion_version": self.champion_version}


def _stage(name: str) -> None:
    console.print(f"[bold cyan]>[/] {name}")


def check_output_dir(path: Path) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".write-probe-{os.getpid()}"
        probe.write_text("ok")
        probe.unlink()
    except OSError as exc:
        raise HarnessInputError(f"output_dir: {path} is not writable ({exc.strerror or exc})") from None


def load_base(config: ExperimentConfig):
    """(the configured model loaded, the config as the run records it). A hub model's `model.revision` is set to
    the commit it loaded, so that what is registered, compared or judged head to head later rebuilds on that
    commit, not on whatever the hub's branch points to by then. Name the run's cell from the user's config,
    before this."""
    from harness.models import load_model

    m = config.model
    loaded = load_model(m.name, config.resolved_cache_dir, trust_remote_code=m.trust_remote_code,
                        allow_pickle_weights=m.allow_pickle_weights, dtype=m.dtype, revision=m.revision)
    if loaded.revision is not None and m.revision != loaded.revision:
        config = config.model_copy(update={"model": m.model_copy(update={"revision": loaded.revision})})
    return loaded, config


def run_cell(config: ExperimentConfig, *, config_path: str = "", hooks: dict[str, Callable] | None = None,
             extra_tags: dict[str, str] | None = None, promote: bool = True) -> ExperimentResult:
    """One cell (harness.lifecycle.run_experiment is the entry that also runs iterative chains).
    `hooks` lets tests inject faults through the public path: {"eval:kl": fn(metrics) -> metrics}
    may raise or return corrupted metrics; {"gate": fn(decision) -> decision}; "promotion:before_alias"
    and "promotion:after_alias" (harness.promotion) may raise. `promote=False`: gate and record, never
    move the alias (a sweep's cells: the sweep promotes its one selected cell)."""
    from harness.data.loading import load_preference_data
    from harness.tracking import Tracker

    hooks = hooks or {}
    check_output_dir(config.output_dir)
    cell = config.cell_key()
    random.seed(config.seed)

    _stage(f"loading {config.model.name}")
    loaded, config = load_base(config)

    _stage("preference data")
    data = load_preference_data(config, loaded.model, loaded.tokenizer, loaded.fingerprint)
    prompt_set = prepare_eval_prompts(config, data)  # a bad eval set or an overlap stops here: nothing recorded
    console.print(f"  {len(data.train)} training pairs, {len(data.heldout)} held out, dropped {dict(data.dropped) or 'none'}")

    tracker = Tracker(config.output_dir, config.name, tracking_uri=config.registry.tracking_uri)
    tags = {"harness.cell": cell, "harness.variant": config.variant, "harness.config_path": config_path,
            **(extra_tags or {})}
    return recorded_cell_run(tracker, config, loaded, data, cell, tags, hooks, promote=promote, prompt_set=prompt_set)


def recorded_cell_run(tracker, config: ExperimentConfig, loaded, data, cell: str, tags: dict[str, str],
                      hooks: dict[str, Callable], *, start=None, lineage: tuple[Path, ...] = (),
                      promote: bool = True, prompt_set=None) -> ExperimentResult:
    """One MLflow run around train -> evaluate -> decide. A crash ends the run FAILED with the error in
    its tags, never FINISHED. Promotion comes after the run ended FINISHED with its evidence recorded."""
    from harness.tracking import flatten

    prompt_set = prompt_set or prepare_eval_prompts(config, data)
    tracker.start_run(cell, tags={**tags, "harness.status": "running"})
    with ended_as_finished_or_failed(tracker):
        tracker.log_params(flatten(config.model_dump(mode="json")))
        tracker.log_params({f"data.stats.{k}": v for k, v in flatten(data.stats()).items()})
        tracker.log_metrics({f"data/dropped_{k}": v for k, v in data.dropped.items()} | {"data/pairs": len(data.train)})
        tracker.log_params({f"eval_prompts.{k}": v for k, v in prompt_set.describe().items()})
        if prompt_set.snapshot is not None:
            tracker.log_artifact(prompt_set.snapshot, "eval_prompts")
        result = _train_evaluate_decide(config, loaded, data, tracker, cell, config.output_dir / "cells" / cell, hooks,
                                        prompt_set, start=start, lineage=lineage)
    if promote and result.verdict == "PROMOTE":
        _promote_finished_run(tracker, config, result, hooks)
    return result


def _promote_finished_run(tracker, config: ExperimentConfig, result: ExperimentResult, hooks) -> None:
    """The last step: under the champion lock, evidence re-checked, champion re-read (re-decided if it
    moved), alias moved, restored on failure. A verdict changed here re-renders the run's page."""
    decide, seen, version_tags = result.pending_promotion
    registry = config.registry
    outcome = promote_run(tracker, registry, decide, cell=result.cell, seen=seen, decision=result.decision,
                          version_tags=version_tags, hooks=hooks)
    changed = outcome.decision.verdict != result.verdict
    result.decision, result.verdict, result.champion_version = outcome.decision, outcome.decision.verdict, outcome.version
    if outcome.version:
        console.print(f"  promoted: {registry.model_name} version {outcome.version} is now '{registry.alias}'")
    else:
        console.print(f"  [red]not promoted:[/] {outcome.decision.first_failure}")
    if changed and result.report:
        from reports.from_mlflow import render_from_mlflow

        result.report = report_or_recorded_failure(tracker, lambda: render_from_mlflow(tracker, result.run_id),
                                                   lambda msg: console.print(f"  [red]{msg}[/]"))


@contextlib.contextmanager
def ended_as_finished_or_failed(tracker):
    """The tracker's current run ends FINISHED when the block completes, FAILED (the error in its
    tags, verdict BLOCK) when it raises - a crash is never recorded as a pass."""
    status = "FAILED"
    try:
        yield
        status = "FINISHED"
    except BaseException as exc:
        tracker.set_tags({"harness.status": "failed", "harness.verdict": "BLOCK",
                          "harness.error": f"{type(exc).__name__}: {exc}"[:1000]})
        raise
    finally:
        tracker.end_run(status)


def _train_evaluate_decide(config, loaded, data, tracker, cell, cell_dir, hooks, prompt_set, *, start=None,
                           lineage: tuple[Path, ...] = ()) -> ExperimentResult:
    """train -> context -> evals -> decide -> record -> report. `loaded` is what this cell trains on and
    is measured against (TRL's reference: the base with adapters disabled). In iterative rounds >= 2
    that is round k-1's merged checkpoint, `start` is the model the experiment started from (also
    measured against), and `lineage` holds the earlier rounds' adapters, which the registered
    checkpoint needs to be rebuilt on the start model."""
    # heavy (torch, TRL, lm-eval): imported when a cell runs, not whenever the CLI starts
    from evals.judge_calibration import cell_judge_calibration
    from harness.compare import champion_answers

    prompts = list(prompt_set.items)
    texts = [p.text for p in prompts]
    _stage("reference generations (cached by content, shared by every cell on this reference)")
    reference_out = greedy_answers(config, loaded.model, loaded.tokenizer, texts, loaded.fingerprint, "reference")
    trained, policy_fp = _train(config, loaded, data, tracker, cell_dir)
    _stage("policy generations")
    ctx = EvalContext(config=config, tokenizer=loaded.tokenizer, policy=trained.model, policy_fingerprint=policy_fp,
                      reference_fingerprint=loaded.fingerprint, prompts=prompts, reference_out=reference_out,
                      policy_out=greedy_answers(config, trained.model, loaded.tokenizer, texts, policy_fp, "policy"),
                      baseline_out=prompt_set.baseline_answers(), baseline_name=prompt_set.baseline_name,
                      cache_dir=config.resolved_cache_dir, train=data.train, heldout=data.heldout,
                      start=start.model if start is not None else None,
                      start_fingerprint=start.fingerprint if start is not None else "",
                      calibration=lambda: cell_judge_calibration(tracker, config.eval.judge, config.resolved_cache_dir))
    rules = rules_for(config, iterating=start is not None)
    # what ships now, judged head to head with the policy (evals.vs_champion) when there is a champion
    ctx.champion = tracker.champion(config.registry.model_name, config.registry.alias)
    ctx.champion_answers = champion_answers(tracker, config.registry.model_name, ctx.champion, texts,
                                            max_new_tokens=config.eval.max_new_tokens,
                                            cache_dir=config.resolved_cache_dir)
    if config.eval.sequential is not None:  # with a champion, rules against it read the head-to-head
        compared = rules_vs_champion(rules, {} if ctx.champion is not None else None)
        ctx.sequential_targets = sequential_targets(compared, known_metrics(), config.gate.family_size)
    outcome = _evaluate(ctx, tracker, cell_dir, hooks)
    baselines = record_baselines(tracker, outcome, iterating=start is not None)
    uploaded = record_inputs(tracker, config, outcome.errors, trained.adapter_dir, lineage)

    def decide(champion_metrics: dict | None) -> GateDecision:
        decision = gate(outcome.metrics, baselines | {"champion": champion_metrics}, rules, specs=known_metrics(),
                        errors=outcome.errors, allow_promote_without_rules=config.gate.allow_promote_without_rules,
                        family_size=config.gate.family_size)
        return hooks["gate"](decision) if "gate" in hooks else decision

    _stage("gate")
    # decided and recorded now, against the champion of this moment; the alias moves only after
    # generations, report, evidence and run status are written (recorded_cell_run -> promote_run)
    seen = tracker.champion(config.registry.model_name, config.registry.alias)
    decision = decide(champion_baseline(tracker, seen))
    record_decision(tracker, decision)
    _stage("report")
    report = _report(tracker, config, cell, cell_dir, ctx, outcome, decision, trained, data, prompt_set)
    record_evidence(tracker, uploaded)  # last: after every metric and artifact a later gate reads
    tracker.set_tags({"harness.status": "finished"})
    # a later round's checkpoint is an adapter stack: say so on the registered version
    stack_tags = {"harness.adapter_stack": "true", "harness.rounds_in_stack": str(len(lineage) + 1)} if lineage else {}
    return ExperimentResult(run_id=tracker.run_id, cell=cell, verdict=decision.verdict, metrics=outcome.metrics,
                            decision=decision, report=report, errors=outcome.errors, champion_version=None,
                            policy_fingerprint=policy_fp, adapter_dir=trained.adapter_dir, policy=trained.model,
                            pending_promotion=(decide, seen, stack_tags))


def _train(config, loaded, data, tracker, cell_dir):
    from harness.compare import checkpoint_fingerprint
    from harness.training import train_cell

    _stage(f"training {config.variant} (beta={config.beta:g}, {config.training.max_steps} steps)")
    trained = train_cell(config, loaded.model, loaded.tokenizer, data.train, cell_dir,
                         base_fingerprint=loaded.fingerprint)
    tracker.log_history(trained.history)
    tracker.log_params({f"trl.{k}": v for k, v in trained.trl_params.items()})
    tracker.log_metrics({"train/seconds": trained.seconds})
    return trained, checkpoint_fingerprint(trained.adapter_dir, loaded.fingerprint)


def _evaluate(ctx: EvalContext, tracker, cell_dir: Path, hooks) -> EvalsOutcome:
    """Every registered eval (evals.registry); a crash is recorded with its traceback, never raised."""
    outcome = run_evals(ctx, hooks, on_stage=lambda name: _stage(f"eval: {name}"))
    for name, message in outcome.errors.items():
        console.print(f"  [red]eval {name} failed:[/] {escape(message)}")  # scrubbed by run_evals; no markup
        (cell_dir / "errors").mkdir(parents=True, exist_ok=True)
        (cell_dir / "errors" / f"{name}.txt").write_text(outcome.tracebacks[name])
    tracker.log_metrics(outcome.metrics)
    if outcome.tags:
        tracker.set_tags(outcome.tags)
    return outcome


def record_baselines(tracker, outcome: EvalsOutcome, *, iterating: bool) -> dict[str, dict[str, float]]:
    """The reference (and, iterating, the start) measured against itself, logged as `reference/*`
    (`start/*`): what `against: reference|start` rules compare with."""
    reference = reference_baseline(outcome.metrics, outcome.reference)
    # round 1 (and every single pass) starts from its reference, so the two baselines coincide
    start_baseline = start_values(outcome.metrics, outcome.start) if iterating else reference
    tracker.log_metrics({f"reference/{k}": v for k, v in reference.items()})
    if iterating:
        tracker.log_metrics({f"start/{k}": v for k, v in start_baseline.items()})
    return {"reference": reference, "start": start_baseline}


def _report(tracker, config, cell, cell_dir, ctx: EvalContext, outcome: EvalsOutcome, decision, trained, data,
            prompt_set) -> str:
    from reports.documents import live_cell_document  # the same document `harness report RUN` rebuilds

    result_doc = live_cell_document(
        experiment=config.name, run_id=tracker.run_id, cell=cell, config=redacted_config(config), ctx=ctx,
        outcome=outcome, decision=decision, trained=trained, data=data.stats(),
        gate_plan=gate_plan_for_report(config, tracker, evaluated_prompts=len(ctx.prompts)))
    if result_doc["sequential"]:  # the looks, for the page and for a page rebuilt from MLflow
        tracker.log_json(result_doc["sequential"], "sequential.json")
    texts = {k: v for k, v in result_doc["metrics"].items() if isinstance(v, str)}
    if texts:  # e.g. why LC is missing: MLflow metrics hold numbers only, and the rebuilt page quotes them
        tracker.log_json(texts, "metric_texts.json")
    _write_generations(cell_dir / "generations.jsonl", result_doc["samples"])
    tracker.log_artifact(cell_dir / "generations.jsonl")
    if outcome.extras.get("verdicts"):  # the judged pairs as alpaca-eval annotations: `harness lc-winrate` reads them
        tracker.log_artifact(write_annotations(cell_dir / "annotations.jsonl", annotation_rows(
            prompt_set, [o.text for o in ctx.policy_out], outcome.extras["verdicts"], policy_name=cell,
            reference_outputs=[r.text for r in ctx.reference_out])))

    def render() -> Path:
        from reports.experiment import render_experiment_report

        path = render_experiment_report(result_doc, cell_dir / "report.html")
        tracker.log_artifact(path)
        return path

    return report_or_recorded_failure(tracker, render, lambda msg: console.print(f"  [red]{msg}[/]"))
