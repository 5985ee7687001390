"""The eval registry: every eval is one decorated function next to its maths.

    @register_eval("kl", owns=("kl/",))
    def kl_eval(ctx: EvalContext) -> dict[str, float]: ...

`owns` names the metric-key prefixes the eval produces: when it crashes, exactly the gate rules on
those metrics fail (and a required `<eval>_ran` check of its own), nothing else. `when` says whether
the eval applies to this cell (e.g. only in iterative rounds >= 2). Adding an eval = one decorated
function plus its `register_metric` declarations, in any module of the `evals` package (evals.catalog
imports them all).
"""
from __future__ import annotations

import traceback
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from evals.context import EvalContext, EvalOutput
from harness.redaction import scrub_text
from harness.registry import Registry


@dataclass(frozen=True)
class EvalSpec:
    name: str
    run: Callable[[EvalContext], EvalOutput | dict]
    owns: tuple[str, ...]  # metric-key prefixes, e.g. ("winrate/",) or ("domain_",)
    when: Callable[[EvalContext], bool]


EVALS: Registry[EvalSpec] = Registry("eval")


def register_eval(name: str, *, owns: tuple[str, ...], when: Callable[[EvalContext], bool] | None = None):
    def decorate(fn: Callable[[EvalContext], EvalOutput | dict]) -> Callable[[EvalContext], EvalOutput | dict]:
        EVALS.add(name, EvalSpec(name, fn, tuple(owns), when or (lambda ctx: True)))
        return fn

    return decorate


def owned_prefixes(errors: Mapping[str, str]) -> dict[str, tuple[str, ...]]:
    """For each crashed eval (by name), the metric prefixes whose rules its crash fails. An unknown name
    (an eval this process does not know) owns `<name>/`."""
    return {name: EVALS.get(name).owns if name in EVALS else (f"{name}/",) for name in errors}


@dataclass
class EvalsOutcome:
    metrics: dict[str, Any] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)  # eval name -> "Type: message"
    tracebacks: dict[str, str] = field(default_factory=dict)
    reference: dict[str, float] = field(default_factory=dict)
    start: dict[str, float] = field(default_factory=dict)
    extras: dict[str, Any] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)


def run_evals(ctx: EvalContext, hooks: Mapping[str, Callable] | None = None,
              on_stage: Callable[[str], None] = lambda name: None) -> EvalsOutcome:
    """Every registered eval that applies, in registration order. An eval that raises is recorded
    under `errors` and the others go on: the gate fails closed on it. `hooks["eval:<name>"]` (tests)
    may raise or corrupt an eval's metrics, through this same path."""
    hooks = hooks or {}
    out = EvalsOutcome()
    for name in EVALS:
        spec = EVALS.get(name)
        if not spec.when(ctx):
            continue
        on_stage(name)
        try:
            produced = spec.run(ctx)
            result = produced if isinstance(produced, EvalOutput) else EvalOutput(metrics=dict(produced))
            if f"eval:{name}" in hooks:
                result.metrics = hooks[f"eval:{name}"](result.metrics)
        except Exception as exc:  # recorded; the gate fails closed on it
            # scrubbed here, where they are made: the message and traceback reach the console, errors/*.txt, the
            # gate's reasons, the report and MLflow, and a failed request's message may hold its URL's password
            out.errors[name] = scrub_text(f"{type(exc).__name__}: {exc}")
            out.tracebacks[name] = scrub_text(traceback.format_exc())
            continue
        out.metrics.update(result.metrics)
        out.reference.update(result.reference)
        out.start.update(result.start)
        for key, value in result.extras.items():  # e.g. "sequential": {eval: looks}, from several evals
            merged = out.extras.get(key)
            out.extras[key] = {**merged, **value} if isinstance(merged, dict) and isinstance(value, dict) else value
        out.tags.update(result.tags)
    return out
