"""Iterative on-policy preference optimization: rounds of sample -> judge -> pair -> train.

Static preference data goes off-policy as the model improves, so production recipes (Llama 3's
six rounds, Tulu 3) re-sample every round from the latest policy. Round 1 trains on `data` with
the starting model as reference. After a round passes its gate its LoRA adapter is merged into
the weights (`merge_and_unload`), and round k trains a fresh adapter on that merged model: with
adapters disabled TRL sees round k-1's policy, so the previous checkpoint is the reference for
training and for every "vs reference" eval, while a pristine copy of the starting model stays
in memory for the "vs start" evals and gate rules. The loop stops at the first blocked round and
never promotes past it; each promoted round moves the registry alias.

MLflow: one parent run for the experiment (its metrics logged with step = round, so MLflow plots
them round over round) and one child run per round, tagged with the round and its reference.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

from harness.config import ExperimentConfig
from harness.experiment import (
    ExperimentResult,
    check_output_dir,
    console,
    ended_as_finished_or_failed,
    load_base,
    recorded_cell_run,
)
from harness.gate import PROMOTE
from harness.recording import redacted_config, report_or_recorded_failure


@dataclass
class Round:
    index: int
    reference: dict[str, Any]  # what this round trained against: round 0 = the starting model
    result: ExperimentResult
    data: dict[str, Any] = field(default_factory=dict)  # the round's preference data stats (pairs, dropped)

    def to_json(self) -> dict[str, Any]:
        return {"round": self.index, "run_id": self.result.run_id, "cell": self.result.cell,
                "reference": self.reference, "verdict": self.result.verdict, "metrics": self.result.metrics,
                "checks": self.result.decision.to_dict()["checks"], "report": self.result.report,
                "policy_fingerprint": self.result.policy_fingerprint, "data": self.data}


@dataclass
class IterativeResult:
    run_id: str  # the parent run
    cell: str
    verdict: str  # the last round's verdict: BLOCK when the loop stopped at a blocked round
    rounds: list[Round]
    report: str
    promoted_round: int | None = None
    stop_reason: str | None = None  # why fewer than `iterations` rounds ran
    errors: dict[str, str] = field(default_factory=dict)

    @property
    def metrics(self) -> dict[str, float]:
        return self.rounds[-1].result.metrics if self.rounds else {}

    @property
    def decision(self):
        return self.rounds[-1].result.decision

    @property
    def champion_version(self) -> str | None:
        promoted = [r.result.champion_version for r in self.rounds if r.result.champion_version]
        return promoted[-1] if promoted else None

    def to_json(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "cell": self.cell, "verdict": self.verdict, "metrics": self.metrics,
                "checks": self.decision.to_dict()["checks"] if self.rounds else [], "report": self.report,
                "promoted_round": self.promoted_round, "champion_version": self.champion_version,
                "stop_reason": self.stop_reason, "errors": self.rounds[-1].result.errors if self.rounds else {},
                "rounds": [r.to_json() for r in self.rounds]}


def round_hooks(hooks: dict[str, Callable], index: int) -> dict[str, Callable]:
    """Hooks for every round ("eval:kl") plus those for this round only ("round2:eval:kl")."""
    prefix = f"round{index}:"
    out = {k: v for k, v in hooks.items() if not k.startswith("round")}
    out.update({k[len(prefix):]: v for k, v in hooks.items() if k.startswith(prefix)})
    return out


def run_iterative(config: ExperimentConfig, *, config_path: str = "", hooks: dict[str, Callable] | None = None,
                  extra_tags: dict[str, str] | None = None) -> IterativeResult:
    from harness.data.loading import NoTrainingSignal, build_round, load_preference_data
    from harness.data.rounds import pool_prompts
    from harness.tracking import Tracker, flatten

    hooks = hooks or {}
    check_output_dir(config.output_dir)
    cell = config.cell_key()
    console.print(f"[bold cyan]>[/] loading {config.model.name} (iterative: {config.iterations} rounds)")
    start, config = load_base(config)
    tok = start.tokenizer
    # round 1's data is checked before anything is recorded: bad input exits 2 with no run behind it
    console.print("[bold cyan]>[/] round 1: preference data")
    base = replace(start, model=copy.deepcopy(start.model))  # the start stays pristine
    data = load_preference_data(config, base.model, tok, base.fingerprint)
    if config.iteration.prompt_pool != "builtin:verifiable":  # later rounds' prompts, checked before any run exists
        pool_prompts(config.iteration.prompt_pool, config.data.n_prompts, config.seed)

    parent = Tracker(config.output_dir, config.name, tracking_uri=config.registry.tracking_uri)
    parent_id = parent.start_run(cell, tags={"harness.cell": cell, "harness.variant": config.variant,
                                             "harness.role": "iterative", "harness.iterations": str(config.iterations),
                                             "harness.config_path": config_path, "harness.status": "running",
                                             **(extra_tags or {})})
    rounds: list[Round] = []
    lineage: list[Path] = []
    reference = {"round": 0, "model": config.model.name, "fingerprint": start.fingerprint, "run_id": None,
                 "checkpoint": None}
    stop_reason = None
    with ended_as_finished_or_failed(parent):
        parent.log_params(flatten(config.model_dump(mode="json")))
        parent.log_json(redacted_config(config), "config.json")
        for index in range(1, config.iterations + 1):
            if index > 1:
                console.print(f"[bold cyan]>[/] round {index}: on-policy data from round {index - 1}'s policy")
                try:
                    data = build_round(config, base.model, tok, base.fingerprint, index)
                except NoTrainingSignal as exc:  # every answer tied: nothing left to learn, not bad input
                    stop_reason = f"round {index} not run: {exc}"
                    console.print(f"  [yellow]{stop_reason}[/]")
                    break
            console.print(f"  {len(data.train)} training pairs, dropped {dict(data.dropped) or 'none'}")
            child = Tracker(config.output_dir, config.name, tracking_uri=config.registry.tracking_uri)
            tags = {"mlflow.parentRunId": parent_id, "harness.role": "round", "harness.round": str(index),
                    "harness.cell": f"{cell}-round{index}", "harness.variant": config.variant,
                    "harness.reference_round": str(reference["round"]),
                    "harness.reference_fingerprint": reference["fingerprint"],
                    "harness.reference_run_id": reference["run_id"] or "-",
                    "harness.reference_checkpoint": reference["checkpoint"] or config.model.name}
            result = recorded_cell_run(child, config, base, data, f"{cell}-round{index}", tags, round_hooks(hooks, index),
                                       start=start if index > 1 else None, lineage=tuple(lineage))
            rounds.append(Round(index, dict(reference), result, data.stats()))
            parent.log_metrics(result.metrics, step=index)
            parent.log_metrics({"round/verdict_promote": float(result.verdict == PROMOTE)}, step=index)
            verdict_color = "green" if result.verdict == PROMOTE else "red"
            console.print(f"  round {index}: [bold {verdict_color}]{result.verdict}[/]"
                          + (f" ({result.decision.first_failure})" if result.verdict != PROMOTE else ""))
            if result.verdict != PROMOTE:
                stop_reason = f"round {index} blocked: {result.decision.first_failure}"
                break  # never train on, or promote past, a round that did not pass
            lineage.append(result.adapter_dir)
            reference = {"round": index, "model": config.model.name, "fingerprint": result.policy_fingerprint,
                         "run_id": result.run_id, "checkpoint": str(result.adapter_dir)}
            if index < config.iterations:
                # round k+1 trains a fresh adapter on round k's merged weights; disabled adapters = round k
                base = replace(base, model=result.policy.merge_and_unload(),
                                           fingerprint=result.policy_fingerprint)
            result.policy = None
        promoted = [r.index for r in rounds if r.result.verdict == PROMOTE]
        outcome = IterativeResult(run_id=parent_id, cell=cell, verdict=rounds[-1].result.verdict, rounds=rounds,
                                  report="", promoted_round=promoted[-1] if promoted else None, stop_reason=stop_reason)
        parent.set_tags({"harness.verdict": outcome.verdict, "harness.rounds_run": str(len(rounds)),
                         "harness.promoted_round": str(outcome.promoted_round or "-"),
                         "harness.block_reason": rounds[-1].result.decision.first_failure or "-",
                         "harness.stop_reason": stop_reason or "-", "harness.status": "finished"})
        outcome.report = _write_report(outcome, config, parent)
        return outcome


def _write_report(outcome: IterativeResult, config: ExperimentConfig, tracker) -> str:
    from reports.iterative import render_iterative_report

    def render() -> Path:
        path = render_iterative_report(outcome, config, config.output_dir / "iterative" / outcome.cell / "report.html")
        tracker.log_artifact(path)
        return path

    return report_or_recorded_failure(tracker, render, lambda msg: console.print(f"  [red]{msg}[/]"))
