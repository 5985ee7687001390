"""The ship/no-ship gate: a pure function from measurements and rules to a decision.

Fail-closed: a crashed eval, a missing metric, a NaN/inf, a missing baseline each fail
their check, and PROMOTE needs every required check to pass. A metric's direction comes
from its declaration (evals.metrics), never from the rule.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from statistics import NormalDist
from typing import Any, Mapping, TypeGuard

from evals.metrics import MetricSpec
from evals.paired_accuracy import paired_drop_upper_bound
from evals.registry import owned_prefixes
from harness.config import GateRule

PROMOTE, BLOCK = "PROMOTE", "BLOCK"


@dataclass
class CheckResult:
    name: str
    metric: str
    passed: bool
    reason: str
    value: float | None = None  # the point estimate
    bound: float | None = None  # the rule's threshold: min, max, or the baseline moved by the allowed regression
    baseline: float | None = None
    statistic: str = "bound"  # "bound": a one-sided confidence bound decided; "point": the estimate alone (flagged)
    required: bool = True
    confidence: float | None = None  # one-sided level of the bound, after the sweep's Bonferroni share
    confidence_bound: float | None = None  # the lower/upper confidence bound that was compared with `bound`
    margin: float | None = None  # the allowed regression, in the metric's units
    n: int | None = None  # items behind the estimate, where the eval records it

    @property
    def point_estimate_only(self) -> bool:
        return self.statistic == "point"


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
        return {"verdict": self.verdict,
                "checks": [asdict(c) | {"point_estimate_only": c.point_estimate_only} for c in self.checks]}


# Intervals recorded as `_ci_low`/`_ci_high` are two-sided 95%: each end is a one-sided 97.5% bound.
RECORDED_CI_ONE_SIDED = 0.975


def _finite(x: object) -> TypeGuard[float]:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _eval_of(metric: str) -> str:
    return metric.split("/", 1)[0]


def rule_confidence(rule: GateRule, family_size: int = 1) -> float:
    """One-sided level of the rule's bound. A sweep of K cells gives each cell alpha/K (Bonferroni),
    so an all-equal sweep ships any cell with probability at most alpha."""
    return 1.0 - (1.0 - rule.confidence) / max(family_size, 1)


def _z(confidence: float) -> float:
    return NormalDist().inv_cdf(confidence)


def sample_size(metric: str, summary: Mapping[str, float]) -> int | None:
    """Items behind a metric: `<metric>_n`, else the eval's own `<eval>/n_...` count."""
    for key in [f"{metric}_n", *sorted(k for k in summary if k.startswith(f"{_eval_of(metric)}/n_"))]:
        count = summary.get(key)
        if _finite(count):
            return int(count)
    return None


def confidence_limit(key: str, side: str, confidence: float, summary: Mapping[str, float]) -> float | None:
    """The one-sided `side` ("low"/"high") confidence bound of `summary[key]`: from its standard error
    (normal), else from a recorded 95% interval when that is at least as wide; None when neither exists."""
    value, stderr = summary.get(key), summary.get(f"{key}_stderr")
    if _finite(value) and _finite(stderr) and stderr >= 0:
        return value - _z(confidence) * stderr if side == "low" else value + _z(confidence) * stderr
    recorded = summary.get(f"{key}_ci_{side}")
    if _finite(recorded) and confidence <= RECORDED_CI_ONE_SIDED:
        return recorded
    return None


def paired_delta_key(metric: str, against: str) -> str:
    """The paired difference (policy - baseline, per item) an allowed regression is tested on."""
    return f"{metric}_delta_vs_start" if against == "start" else f"{metric}_delta"


def _no_interval(key: str) -> str:
    return (f"no standard error or interval for {key}: the bound cannot be shown "
            "(set statistic: point to gate on the estimate alone, flagged)")


def _crashed_owner(metric: str, errors: Mapping[str, str]) -> str | None:
    """The crashed eval that owns `metric` (evals.registry `owns` prefixes), if any."""
    return next((name for name, prefixes in owned_prefixes(errors).items() if metric.startswith(prefixes)), None)


def check_rule(rule: GateRule, summary: Mapping[str, float], baselines: Mapping[str, Mapping[str, float] | None],
               spec: MetricSpec | None, errors: Mapping[str, str], family_size: int = 1) -> CheckResult:
    point = rule.statistic == "point"
    confidence = None if point else rule_confidence(rule, family_size)
    base: dict[str, Any] = dict(name=rule.label, metric=rule.metric, statistic=rule.statistic,
                                required=rule.required, confidence=confidence, n=sample_size(rule.metric, summary))
    if spec is None:
        return CheckResult(**base, passed=False, reason=f"unknown metric {rule.metric!r}")
    crashed = _crashed_owner(rule.metric, errors)
    if crashed is not None:
        return CheckResult(**base, passed=False, reason=f"eval '{crashed}' failed: {errors[crashed]}")
    value = summary.get(rule.metric)
    if value is None:  # the declaration may say what absence means (e.g. an uncalibrated judge) and how to fix it
        reason = summary_reason(rule.metric, summary) or spec.missing_reason
        why = f": {reason}" if reason else ""
        return CheckResult(**base, passed=False, reason=f"metric {rule.metric!r} is missing{why}")
    if not _finite(value):
        return CheckResult(**base, value=value, passed=False, reason=f"{rule.metric} is {value} (not a finite number)")
    base["value"] = value
    level = "" if confidence is None else f" at {100 * confidence:.4g}%"
    checks = []
    if rule.min is not None:
        checks.append(_floor(rule, summary, value, confidence, level))
    if rule.max is not None:
        checks.append(_ceiling(rule, summary, value, confidence, level))
    if rule.max_regression is not None:
        checks.append(_non_inferior(rule, summary, baselines, spec, value, confidence, level))
    # every bound of the rule must hold: one failed part fails the rule, nothing else can clear it
    failed = [c for c in checks if not c["passed"]]
    shown = failed or checks
    merged = {k: v for c in shown for k, v in c.items() if k not in ("passed", "reason")}
    reason = "; ".join(c["reason"] for c in shown)
    if point:
        reason += " [point estimate only: no error rate]"
    return CheckResult(**base | merged, passed=not failed, reason=reason)


def _floor(rule, summary, value, confidence, level) -> dict:
    if confidence is None:
        ok = value > rule.min if rule.strict else value >= rule.min
        return dict(passed=ok, bound=rule.min, reason=f"point {value:.4g} {'>' if ok else '<=' if rule.strict else '<'} "
                                                       f"min {rule.min:g}")
    low = confidence_limit(rule.metric, "low", confidence, summary)
    if low is None:
        return dict(passed=False, bound=rule.min, reason=_no_interval(rule.metric))
    # a bound that only touches the threshold shows nothing (a no-change cell sits exactly on it)
    ok = low > rule.min
    return dict(passed=ok, bound=rule.min, confidence_bound=low,
                reason=f"lower bound{level} {low:.4g} {'>' if ok else '<='} min {rule.min:g} (estimate {value:.4g})")


def _ceiling(rule, summary, value, confidence, level) -> dict:
    if confidence is None:
        ok = value < rule.max if rule.strict else value <= rule.max
        return dict(passed=ok, bound=rule.max, reason=f"point {value:.4g} {'<' if ok else '>=' if rule.strict else '>'} "
                                                       f"max {rule.max:g}")
    high = confidence_limit(rule.metric, "high", confidence, summary)
    if high is None:
        return dict(passed=False, bound=rule.max, reason=_no_interval(rule.metric))
    ok = high < rule.max
    return dict(passed=ok, bound=rule.max, confidence_bound=high,
                reason=f"upper bound{level} {high:.4g} {'<' if ok else '>='} max {rule.max:g} (estimate {value:.4g})")


def _non_inferior(rule, summary, baselines, spec, value, confidence, level) -> dict:
    """Non-inferiority: the one-sided upper confidence bound of the drop (in the metric's bad direction)
    must stay below the allowed regression. Absence of evidence never clears a drop."""
    if spec.higher_is_better is None:
        return dict(passed=False, reason=f"{rule.metric} has no direction, so 'max_regression' cannot apply; use min/max")
    ref = baselines.get(rule.against)
    baseline = ref.get(rule.metric) if ref else None
    if baseline is None or not _finite(baseline):
        return dict(passed=False, reason=f"no {rule.against} baseline for {rule.metric}" + ("" if ref else f" (no {rule.against})"))
    margin = rule.max_regression * abs(baseline) if rule.relative else rule.max_regression
    sign = 1.0 if spec.higher_is_better else -1.0
    bound = baseline - sign * margin
    common = dict(bound=bound, baseline=baseline, margin=margin)
    drop = sign * (baseline - value)  # > 0: worse than the baseline
    if confidence is None:
        ok = drop <= margin
        return dict(passed=ok, **common, reason=f"point drop {drop:.4g} {'<=' if ok else '>'} allowed {margin:.4g} "
                                                f"({rule.against} {baseline:.4g})")
    delta_key = paired_delta_key(rule.metric, rule.against)
    lost, gained, n = (summary.get(f"{delta_key}_reference_only"), summary.get(f"{delta_key}_policy_only"),
                       summary.get(f"{rule.metric}_n"))
    if rule.against != "champion" and spec.higher_is_better and _finite(lost) and _finite(gained) and _finite(n) and n > 0:
        # paired 0/1 outcomes per item: Tango's score bound, exact in level where a Wald bound is not
        drop = -summary.get(delta_key, (gained - lost) / n)
        upper = paired_drop_upper_bound(lost, gained, n, confidence)
        ok = upper < margin
        return dict(passed=ok, **common, confidence_bound=upper,
                    reason=f"paired drop upper bound{level} {upper:.4g} {'<' if ok else '>='} allowed {margin:.4g} "
                           f"(drop {drop:.4g} vs {rule.against} {baseline:.4g}, {int(lost)} items lost, "
                           f"{int(gained)} gained of {int(n)})")
    if rule.against != "champion" and _finite(summary.get(delta_key)) and _finite(summary.get(f"{delta_key}_stderr")):
        drop, stderr, how = -sign * summary[delta_key], summary[f"{delta_key}_stderr"], "paired"
    else:  # unpaired: the baseline's own error adds in; a reference/start value without one is exact (neutral)
        se_value = summary.get(f"{rule.metric}_stderr")
        se_base = ref.get(f"{rule.metric}_stderr", None if rule.against == "champion" else 0.0)
        if not (_finite(se_value) and _finite(se_base)):
            return dict(passed=False, **common, reason=_no_interval(rule.metric if not _finite(se_value)
                                                                    else f"the {rule.against}'s {rule.metric}"))
        stderr, how = math.hypot(se_value, se_base), "unpaired"
    upper = drop + _z(confidence) * stderr
    ok = upper < margin
    return dict(passed=ok, **common, confidence_bound=upper,
                reason=f"{how} drop upper bound{level} {upper:.4g} {'<' if ok else '>='} allowed {margin:.4g} "
                       f"(drop {drop:.4g} vs {rule.against} {baseline:.4g})")


def summary_reason(metric: str, summary: Mapping[str, object]) -> str:
    """Why an eval left a metric out (e.g. LC not identified), when it says so: `<metric>_missing_reason`."""
    reason = summary.get(f"{metric}_missing_reason")
    return reason if isinstance(reason, str) else ""


def gate(summary: Mapping[str, float], baselines: Mapping[str, Mapping[str, float] | None], rules: list[GateRule],
         *, specs: Mapping[str, MetricSpec], errors: Mapping[str, str] | None = None,
         allow_promote_without_rules: bool = False, family_size: int = 1) -> GateDecision:
    errors = errors or {}
    checks = [check_rule(rule, summary, baselines, specs.get(rule.metric), errors, family_size) for rule in rules]
    if not rules and not allow_promote_without_rules:
        checks.append(CheckResult(name="has_rules", metric="-", passed=False,
                                  reason="no gate rules: set gate.allow_promote_without_rules to ship without any"))
    # Every eval that crashed is a required failing check of its own, whether or not (and however
    # optionally) a rule reads it: nothing can forgive a crash.
    for eval_name, message in errors.items():
        checks.append(CheckResult(name=f"{eval_name}_ran", metric=f"{eval_name}/*", passed=False,
                                  reason=f"eval '{eval_name}' failed: {message}"))
    ok = all(c.passed for c in checks if c.required)
    return GateDecision(PROMOTE if ok else BLOCK, checks)


def default_rules(domain_tasks: list[str] | None = None) -> list[GateRule]:
    """The seed's failure modes as rules, each decided on a one-sided 95% confidence bound: a win
    that is shown (LC lower bound above 50), not bought with length, near the reference, without the
    chosen-probability collapse, and domain accuracy shown non-inferior within 10 points."""
    rules = [
        GateRule(name="lc_win_rate_beats_reference", metric="winrate/lc_win_rate_pct", min=50.0),
        GateRule(name="kl_budget", metric="kl/seq_kl_k3", max=10.0),
        GateRule(name="length_ratio_cap", metric="length/ratio_tokens", max=1.5),
        GateRule(name="verbosity_gap_cap", metric="winrate/raw_minus_lc_pct", max=10.0),
        GateRule(name="chosen_logp_drop_cap", metric="chosen_logp/chosen_delta", min=-20.0),
    ]
    from evals.domain import eval_name

    for task in domain_tasks or []:
        rules.append(GateRule(name=f"{eval_name(task)}_no_regression", metric=f"{eval_name(task)}/acc",
                              max_regression=0.10, against="reference"))
    return rules


def effective_rules(gate_config, domain_tasks: list[str] | None = None) -> list[GateRule]:
    if not gate_config.use_default_rules:
        return list(gate_config.rules)
    mine = {r.label for r in gate_config.rules}
    return [r for r in default_rules(domain_tasks) if r.label not in mine] + list(gate_config.rules)


def rules_for(config, *, iterating: bool, against: str | None = None) -> list[GateRule]:
    """The rules a run is gated by - the one assembly runs and re-gates share: the configured rules (with
    the defaults when asked), every regression compared `against` one baseline when given, and in
    iterative rounds >= 2 the same promises against the start (as configured, never re-pointed)."""
    rules = effective_rules(config.gate, config.eval.domain_tasks)
    if against:
        rules = [r.model_copy(update={"against": against}) for r in rules]
    if iterating and config.iteration.gate_vs_start:
        rules += rules_vs_start(effective_rules(config.gate, config.eval.domain_tasks))
    return rules


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
