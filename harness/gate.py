"""The ship/no-ship gate: a pure function from measurements and rules to a decision.

Fail-closed: a crashed eval, a missing metric, a NaN/inf, a missing baseline each fail
their check, and PROMOTE needs every required check to pass. A metric's direction comes
from its declaration (evals.metrics), never from the rule.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Mapping

from evals.metrics import MetricSpec
from harness.config import GateRule

PROMOTE, BLOCK = "PROMOTE", "BLOCK"


@dataclass
class CheckResult:
    name: str
    metric: str
    passed: bool
    reason: str
    value: float | None = None
    bound: float | None = None
    baseline: float | None = None
    statistic: str = "point"
    required: bool = True


@dataclass
class GateDecision:
    verdict: str
    checks: list[CheckResult] = field(default_factory=list)

    @property
    def failed(self) -> list[CheckResult]:
        return [c for c in self.checks if not c.passed]

    @property
    def first_failure(self) -> str | None:
        failed = [c for c in self.failed if c.required] or self.failed
        return f"{failed[0].name}: {failed[0].reason}" if failed else None

    def to_dict(self) -> dict:
        return {"verdict": self.verdict, "checks": [asdict(c) for c in self.checks]}


def _finite(x: object) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _eval_of(metric: str) -> str:
    return metric.split("/", 1)[0]


def paired_test_key(metric: str, against: str, summary: Mapping[str, float]) -> str:
    """The p-value that can clear a regression: the paired test against the same baseline the rule
    compares with. Against the start, iterative rounds >= 2 carry their own test
    (`<metric>_delta_vs_start_pvalue`); a single pass starts from its reference, so the reference's applies."""
    if against == "start" and f"{metric}_delta_vs_start_pvalue" in summary:
        return f"{metric}_delta_vs_start_pvalue"
    return f"{metric}_delta_pvalue"


def check_rule(rule: GateRule, summary: Mapping[str, float], baselines: Mapping[str, Mapping[str, float] | None],
               spec: MetricSpec | None, errors: Mapping[str, str]) -> CheckResult:
    base = dict(name=rule.label, metric=rule.metric, statistic=rule.statistic, required=rule.required)
    if spec is None:
        return CheckResult(**base, passed=False, reason=f"unknown metric {rule.metric!r}")
    if _eval_of(rule.metric) in errors:
        return CheckResult(**base, passed=False, reason=f"eval '{_eval_of(rule.metric)}' failed: {errors[_eval_of(rule.metric)]}")
    key = rule.metric if rule.statistic == "point" else f"{rule.metric}_{rule.statistic}"
    value = summary.get(key)
    if value is None:  # the declaration may say what absence means (e.g. an uncalibrated judge) and how to fix it
        why = f": {spec.missing_reason}" if spec.missing_reason else ""
        return CheckResult(**base, passed=False, reason=f"metric {key!r} is missing{why}")
    if not _finite(value):
        return CheckResult(**base, value=value, passed=False, reason=f"{key} is {value} (not a finite number)")
    problems, bound, baseline = [], None, None
    if rule.min is not None:
        bound = rule.min
        if value < rule.min or (rule.strict and value == rule.min):
            problems.append(f"{rule.statistic} {value:.4g} {'<=' if rule.strict else '<'} min {rule.min:g}")
    if rule.max is not None:
        bound = rule.max
        if value > rule.max or (rule.strict and value == rule.max):
            problems.append(f"{rule.statistic} {value:.4g} {'>=' if rule.strict else '>'} max {rule.max:g}")
    if rule.max_regression is not None:
        if spec.higher_is_better is None:
            return CheckResult(**base, value=value, passed=False,
                               reason=f"{rule.metric} has no direction, so 'max_regression' cannot apply; use min/max")
        ref = baselines.get(rule.against)
        baseline = ref.get(rule.metric) if ref else None
        if baseline is None or not _finite(baseline):
            return CheckResult(**base, value=value, passed=False,
                               reason=f"no {rule.against} baseline for {rule.metric}" + ("" if ref else f" (no {rule.against})"))
        allowed = rule.max_regression * abs(baseline) if rule.relative else rule.max_regression
        bound = baseline - allowed if spec.higher_is_better else baseline + allowed
        worse = value < bound if spec.higher_is_better else value > bound
        if worse and rule.significance is not None:
            p_key = paired_test_key(rule.metric, rule.against, summary)
            p_value = summary.get(p_key)
            if p_value is None or not _finite(p_value):
                return CheckResult(**base, value=value, bound=bound, baseline=baseline, passed=False,
                                   reason=f"regression past {bound:.4g} and no paired test ({p_key}) to clear it")
            if p_value >= rule.significance:
                return CheckResult(**base, value=value, bound=bound, baseline=baseline, passed=True,
                                   reason=f"{value:.4g} below {bound:.4g} but not significant (paired p={p_value:.3g} >= {rule.significance:g})")
            problems.append(f"paired p={p_value:.3g} < {rule.significance:g}")
        if worse:
            direction = "dropped" if spec.higher_is_better else "rose"
            problems.append(f"{rule.statistic} {value:.4g} {direction} past {bound:.4g} "
                            f"({rule.against} {baseline:.4g}, allowed change {allowed:.4g})")
    if problems:
        return CheckResult(**base, value=value, bound=bound, baseline=baseline, passed=False, reason="; ".join(problems))
    return CheckResult(**base, value=value, bound=bound, baseline=baseline, passed=True,
                       reason=f"{rule.statistic} {value:.4g} within bounds")


def gate(summary: Mapping[str, float], baselines: Mapping[str, Mapping[str, float] | None], rules: list[GateRule],
         *, specs: Mapping[str, MetricSpec], errors: Mapping[str, str] | None = None,
         allow_promote_without_rules: bool = False) -> GateDecision:
    errors = errors or {}
    checks = [check_rule(rule, summary, baselines, specs.get(rule.metric), errors) for rule in rules]
    if not rules and not allow_promote_without_rules:
        checks.append(CheckResult(name="has_rules", metric="-", passed=False,
                                  reason="no gate rules: set gate.allow_promote_without_rules to ship without any"))
    # An eval that crashed blocks even if no rule reads it: its silence must not look like a pass.
    for eval_name, message in errors.items():
        if not any(_eval_of(r.metric) == eval_name for r in rules):
            checks.append(CheckResult(name=f"{eval_name}_ran", metric=f"{eval_name}/*", passed=False,
                                      reason=f"eval '{eval_name}' failed: {message}"))
    ok = all(c.passed for c in checks if c.required)
    return GateDecision(PROMOTE if ok else BLOCK, checks)


def default_rules(domain_tasks: list[str] | None = None) -> list[GateRule]:
    """The seed's failure modes as rules: a win that is real, not bought with length, near the
    reference, without the chosen-probability collapse, and no significant domain regression."""
    rules = [
        GateRule(name="lc_win_rate_beats_reference", metric="winrate/lc_win_rate_pct", min=50.0, strict=True,
                 statistic="ci_low"),
        GateRule(name="kl_budget", metric="kl/seq_kl_k3", max=10.0),
        GateRule(name="length_ratio_cap", metric="length/ratio_tokens", max=1.5),
        GateRule(name="verbosity_gap_cap", metric="winrate/raw_minus_lc_pct", max=10.0),
        GateRule(name="chosen_logp_drop_cap", metric="chosen_logp/chosen_delta", min=-20.0),
    ]
    from evals.domain import eval_name

    for task in domain_tasks or []:
        rules.append(GateRule(name=f"{eval_name(task)}_no_regression", metric=f"{eval_name(task)}/acc",
                              max_regression=0.05, against="reference", significance=0.05))
    return rules


def effective_rules(gate_config, domain_tasks: list[str] | None = None) -> list[GateRule]:
    if not gate_config.use_default_rules:
        return list(gate_config.rules)
    mine = {r.label for r in gate_config.rules}
    return [r for r in default_rules(domain_tasks) if r.label not in mine] + list(gate_config.rules)


def rules_vs_start(rules: list[GateRule]) -> list[GateRule]:
    """The same promises, kept against the model the iterations started from: a bound on a comparison
    (win rate, KL, length) applies to its `*_vs_start` measurement, an allowed regression is measured
    from the start's value. Without these, per-round drifts that each pass could add up: three rounds
    each 1.4x longer than the last are 2.7x the start. (chosen_logp/* has no vs-start measurement.)"""
    from evals.vs_start import VS_START  # winrate -> winrate_vs_start, kl -> kl_vs_start, length -> ...

    out = []
    for rule in rules:
        evaluation, metric = rule.metric.split("/", 1)
        update: dict = {}
        if evaluation in VS_START:
            update["metric"] = f"{VS_START[evaluation]}/{metric}"
        if rule.max_regression is not None and rule.against == "reference":
            update["against"] = "start"
        if update:
            out.append(rule.model_copy(update=update | {"name": f"{rule.label}_vs_start"}))
    return out
