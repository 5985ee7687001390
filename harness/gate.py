"""The ship/no-ship gate: a pure function from measurements and rules to a decision.

Fail-closed: a crashed eval, a missing metric, a NaN/inf, a missing baseline each fail
their check, and PROMOTE needs every required check to pass. A metric's direction comes
from its declaration (evals.metrics), never from the rule.
"""
from __future__ import annotations

import functools
import math
from dataclasses import asdict, dataclass, field
from statistics import NormalDist
from typing import Any, Mapping, TypeGuard

from evals.metrics import MetricSpec
from evals.paired_accuracy import paired_drop_upper_bound
from evals.registry import owned_prefixes
from evals.sequential import SequentialRule
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
    """Items behind a metric: `<metric>_n`, else the eval's own `<eval>/n` or `<eval>/n_...` count."""
    evaluation = _eval_of(metric)
    for key in [f"{metric}_n", f"{evaluation}/n", *sorted(k for k in summary if k.startswith(f"{evaluation}/n_"))]:
        count = summary.get(key)
        if _finite(count):
            return int(count)
    return None


# Skew-aware bounds, for a metric declared skewed or recording `<key>_skewness`: the adjusted Fisher-Pearson
# skewness G1 of the per-item values whose mean `key` is (n from sample_size). The normal bound on the
# mean of right-skewed values (per-sequence KL) covers 69-90% at a nominal 95% with 6-16 samples: the t
# statistic's lower tail is long. Hall's (1992) cubic transformation takes the skewness out of the t
# statistic, but the sample skewness is biased low and noisy at these sizes, so the bound uses the
# widest of Hall's quantiles for any skewness up to the sample's plus SKEW_ALLOWANCE of its standard
# errors (normal theory), and is never narrower than the normal bound. Its coverage, simulated
# (docs/gate_validity.md, `python -m bench.gate_validity --only kl`): at least nominal at n = 6-64 for
# gamma, lognormal and 10%-mixture samples; wide below ~30 samples (up to ~4x the t bound), where the
# sample cannot tell a skewness of 0 from one of 4.
SKEW_ALLOWANCE = 5.0


def _hall_inverse(y: float, a: float) -> float:
    """The t with Hall's g(t) = t + a t^2 + a^2 t^3 / 3 + a / 2 = y (a = skewness / (3 sqrt n));
    g = ((1 + a t)^3 - 1) / (3a) + a / 2 increases in t for every a, so the inverse is unique."""
    if a == 0:
        return y
    u = 1 + 3 * a * (y - a / 2)
    return (math.copysign(abs(u) ** (1 / 3), u) - 1) / a


@functools.lru_cache(maxsize=512)
def _hall_widest(confidence: float, n: int) -> tuple[float, float]:
    """(y, a_max): the t distribution's (1 - confidence) quantile (n - 1 degrees of freedom), and the a at
    which Hall's quantile lies furthest below it. Past a_max the cubic pulls the quantile back toward 0,
    an artefact: a larger skewness must never narrow the bound. The quantile is unimodal in a on [0, 2]
    for every y <= 0 (golden-section search)."""
    from scipy.stats import t as student_t

    y = float(student_t.ppf(1 - confidence, n - 1))
    lo, hi = 0.0, 2.0
    for _ in range(80):
        left, right = lo + 0.382 * (hi - lo), hi - 0.382 * (hi - lo)
        if _hall_inverse(y, left) < _hall_inverse(y, right):
            hi = right
        else:
            lo = left
    return y, (lo + hi) / 2


def skew_aware_limit(value: float, stderr: float, skewness: object, n: int | None, side: str,
                     confidence: float) -> float | None:
    """The one-sided bound of a mean from its stderr, the values' skewness G1 and their count n; the low
    bound is the high bound of the negated values. None (fail closed) when the skewness is not finite or
    n is unknown; the mean itself when there is no spread (a no-change cell's KL: every value 0)."""
    if not _finite(skewness) or n is None or n < 2 or not 0.5 <= confidence < 1:
        return None
    if stderr == 0:
        return value
    if n < 3:  # no skewness from two values
        return None
    sign = 1.0 if side == "high" else -1.0
    y, a_max = _hall_widest(confidence, n)
    skew_se = math.sqrt(6 * n * (n - 1) / ((n - 2) * (n + 1) * (n + 3)))
    a = min(max((sign * skewness + SKEW_ALLOWANCE * skew_se) / (3 * math.sqrt(n)), 0.0), a_max)
    quantile = max(-_hall_inverse(y, a), _z(confidence))
    return value + sign * quantile * stderr


def confidence_limit(key: str, side: str, confidence: float, summary: Mapping[str, float]) -> float | None:
    """The one-sided `side` ("low"/"high") confidence bound of `summary[key]`: from its standard error
    (normal), else from a recorded 95% interval when that is at least as wide; None when neither exists.
    An eval that stopped sequentially leaves only its anytime bounds valid (anytime_limit)."""
    if stopped_sequentially(key, summary):
        return anytime_limit(key, side, confidence, summary)
    value, stderr = summary.get(key), summary.get(f"{key}_stderr")
    if _finite(value) and _finite(stderr) and stderr >= 0:
        if f"{key}_skewness" in summary or _declared_skewed(key):  # the skew-aware bound alone decides (fails closed)
            return skew_aware_limit(value, stderr, summary.get(f"{key}_skewness"), sample_size(key, summary), side,
                                    confidence)
        return value - _z(confidence) * stderr if side == "low" else value + _z(confidence) * stderr
    recorded = summary.get(f"{key}_ci_{side}")
    if _finite(recorded) and confidence <= RECORDED_CI_ONE_SIDED:
        return recorded
    return None


def _declared_skewed(key: str) -> bool:
    """The metric is declared skewed (evals.metrics.MetricSpec.skewed): a summary without its skewness (a NaN
    not recorded, an edited store) gets no bound rather than the normal one."""
    from evals.catalog import known_metrics

    spec = known_metrics().get(key)
    return spec is not None and spec.skewed


def stopped_sequentially(key: str, summary: Mapping[str, object]) -> bool:
    """Whether `key`'s eval judged sequentially (eval.sequential): its sample size was chosen by looking at
    the data, so a fixed-n bound from its stderr no longer holds its level (evals.sequential)."""
    return _sequential_key(key, summary) in summary


def _sequential_key(key: str, summary: Mapping[str, object]) -> str:
    """Where a sequential eval records the prompts it judged, or the items (a domain task's documents) it
    evaluated (evals.sequential.sequence_metrics)."""
    prefix = key.split("/", 1)[0]
    items = f"{prefix}/sequential_items_used"
    return items if items in summary else f"{prefix}/sequential_prompts_used"


def anytime_limit(key: str, side: str, confidence: float, summary: Mapping[str, float]) -> float | None:
    """The recorded anytime-valid bound, when recorded at `confidence` or above (a bound at a higher
    level is valid at any lower one); None otherwise: fail-closed, never a fixed-n bound instead."""
    level, bound = summary.get(f"{key}_anytime_confidence"), summary.get(f"{key}_anytime_{side}")
    if _finite(level) and _finite(bound) and level >= confidence - 1e-12:
        return bound
    return None


def sequential_targets(rules: list[GateRule], specs: Mapping[str, MetricSpec],
                       family_size: int = 1) -> dict[str, list[SequentialRule]]:
    """What a sequential eval must decide before it may stop: per metric, each bound rule compared with the
    reference (or a comparison with the start or, head to head, the champion: pass `rules` re-pointed by
    rules_vs_champion), at the rule's own level (with the sweep's Bonferroni share). An allowed regression on a
    comparison metric is a floor (or ceiling) at its neutral value minus (plus) the margin; on a per-item
    accuracy it is decided on the paired differences."""
    out: dict[str, list[SequentialRule]] = {}
    for rule in rules:
        spec = specs.get(rule.metric)
        if rule.statistic == "point" or spec is None:
            continue
        conf = rule_confidence(rule, family_size)
        if rule.max_regression is not None and _paired_per_item(rule, spec):  # decided on per-item differences
            out.setdefault(paired_delta_key(rule.metric, rule.against), []).append(
                SequentialRule("max_regression", rule.max_regression, conf, rule.label))
            continue
        if rule.against != "reference" and not _compares_with_its_baseline(rule):
            continue
        found = [SequentialRule("min", rule.min, conf, rule.label)] if rule.min is not None else []
        if rule.max is not None:
            found.append(SequentialRule("max", rule.max, conf, rule.label))
        if rule.max_regression is not None and spec.neutral is not None and spec.higher_is_better is not None:
            margin = rule.max_regression * abs(spec.neutral) if rule.relative else rule.max_regression
            if spec.higher_is_better:
                found.append(SequentialRule("min", spec.neutral - margin, conf, rule.label))
            else:
                found.append(SequentialRule("max", spec.neutral + margin, conf, rule.label))
        if found:
            out.setdefault(rule.metric, []).extend(found)
    return out


def _compares_with_its_baseline(rule: GateRule) -> bool:
    """A rule against the start on a `*_vs_start` comparison, or against the champion on the head-to-head: the
    metric itself measures the policy against that baseline, which sits at the metric's neutral value."""
    from evals.vs_start import VS_START

    evaluation = _eval_of(rule.metric)
    return (rule.against == "start" and evaluation in VS_START.values()) or (
        rule.against == "champion" and is_head_to_head(rule.metric))


def _paired_per_item(rule: GateRule, spec: MetricSpec) -> bool:
    """An absolute allowed regression on a per-item accuracy (no neutral value: each item is compared with the
    baseline's answer to it) against the reference or the start. A relative margin depends on the baseline's
    accuracy, known only inside the eval: its rule is not a stopping target (the eval still records the
    anytime bound it is read from)."""
    return (not rule.relative and spec.neutral is None and spec.higher_is_better is True
            and rule.against in ("reference", "start"))


def paired_delta_key(metric: str, against: str) -> str:
    """The paired difference (policy - baseline, per item) an allowed regression is tested on."""
    return f"{metric}_delta_vs_start" if against == "start" else f"{metric}_delta"


def _no_interval(key: str, summary: Mapping[str, Any] | None = None) -> str:
    if summary is not None and stopped_sequentially(key, summary):
        level = summary.get(f"{key}_anytime_confidence")
        recorded = f"recorded at {100 * level:.4g}%" if _finite(level) else "not recorded"
        return (f"{key} was judged sequentially (stopped by looking at the data): only its anytime-valid bound "
                f"holds, and it is {recorded}; a rule at a higher level cannot be shown from this run")
    if summary is not None and _finite(summary.get(f"{key}_stderr")) and (
            f"{key}_skewness" in summary or _declared_skewed(key)):
        n = sample_size(key, summary)
        return (f"{key} is skewed and bounded by its skewness, which is {summary.get(f'{key}_skewness', 'not recorded')} "
                f"from {n if n is not None else 'an unknown number of'} samples (at least 3 needed): the bound "
                "cannot be shown (set statistic: point to gate on the estimate alone, flagged)")
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
    stale = champion_mismatch(rule.metric, summary, baselines)
    if stale is not None:  # a head-to-head backs a decision only against the champion it was measured against
        return CheckResult(**base, passed=False, reason=stale)
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
        return dict(passed=False, bound=rule.min, reason=_no_interval(rule.metric, summary))
    # a bound that only touches the threshold shows nothing (a no-change cell sits exactly on it)
    ok = low > rule.min
    return dict(passed=ok, bound=rule.min, confidence_bound=low,
                reason=f"lower bound{level}{_anytime_note(rule.metric, summary)} {low:.4g} {'>' if ok else '<='} "
                       f"min {rule.min:g} (estimate {value:.4g})")


def _ceiling(rule, summary, value, confidence, level) -> dict:
    if confidence is None:
        ok = value < rule.max if rule.strict else value <= rule.max
        return dict(passed=ok, bound=rule.max, reason=f"point {value:.4g} {'<' if ok else '>=' if rule.strict else '>'} "
                                                       f"max {rule.max:g}")
    high = confidence_limit(rule.metric, "high", confidence, summary)
    if high is None:
        return dict(passed=False, bound=rule.max, reason=_no_interval(rule.metric, summary))
    ok = high < rule.max
    return dict(passed=ok, bound=rule.max, confidence_bound=high,
                reason=f"upper bound{level}{_anytime_note(rule.metric, summary)} {high:.4g} {'<' if ok else '>='} "
                       f"max {rule.max:g} (estimate {value:.4g})")


def _non_inferior(rule, summary, baselines, spec, value, confidence, level) -> dict:
    """Non-inferiority: the one-sided upper confidence bound of the drop (in the metric's bad direction)
    must stay below the allowed regression. Absence of evidence never clears a drop."""
    if spec.higher_is_better is None:
        return dict(passed=False, reason=f"{rule.metric} has no direction, so 'max_regression' cannot apply; use min/max")
    if is_head_to_head(rule.metric):
        return _head_to_head_non_inferior(rule, summary, spec, value, confidence, level)
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
    if stopped_sequentially(rule.metric, summary):
        if f"{delta_key}_anytime_confidence" in summary:  # per-item pairs evaluated sequentially
            return _anytime_paired_non_inferior(rule, summary, delta_key, sign, confidence, level, common)
        return _anytime_non_inferior(rule, summary, ref, sign, confidence, level, common)
    lost, gained, n = (summary.get(f"{delta_key}_reference_only"), summary.get(f"{delta_key}_policy_only"),
                       summary.get(f"{rule.metric}_n"))
    if rule.against != "champion" and spec.higher_is_better and _finite(lost) and _finite(gained) and _finite(n) and n > 0:
        # paired 0/1 outcomes per item: Tango's score bound, exact in level where a Wald bound is not
        drop = -summary.get(delta_key, (gained - lost) / n)
        upper = paired_drop_upper_bound(lost, gained, n, confidence)
        return _drop_check(common, upper, "paired drop", level, f"drop {drop:.4g} vs {rule.against} {baseline:.4g}, "
                                                                f"{int(lost)} items lost, {int(gained)} gained of {int(n)}")
    if rule.against != "champion" and _finite(summary.get(delta_key)) and _finite(summary.get(f"{delta_key}_stderr")):
        drop, stderr, how = -sign * summary[delta_key], summary[f"{delta_key}_stderr"], "paired"
    else:  # unpaired: the baseline's own error adds in; a reference/start value without one is exact (neutral)
        se_value = summary.get(f"{rule.metric}_stderr")
        se_base = ref.get(f"{rule.metric}_stderr", None if rule.against == "champion" else 0.0)
        if not (_finite(se_value) and _finite(se_base)):
            return dict(passed=False, **common, reason=_no_interval(rule.metric if not _finite(se_value)
                                                                    else f"the {rule.against}'s {rule.metric}"))
        if se_base == 0 and (f"{rule.metric}_skewness" in summary or _declared_skewed(rule.metric)):  # exact baseline:
            return _exact_baseline_non_inferior(rule, summary, sign, confidence, level, common)  # its skew-aware bound
        stderr, how = math.hypot(se_value, se_base), "unpaired"
    return _drop_check(common, drop + _z(confidence) * stderr, f"{how} drop", level,
                       f"drop {drop:.4g} vs {rule.against} {baseline:.4g}")


def _drop_check(common: dict, upper: float, label: str, level: str, detail: str) -> dict:
    """Non-inferiority decided: the drop's upper confidence bound below the allowed regression (strictly: a bound
    that only touches the margin shows nothing). The one verdict every `max_regression` path ends in."""
    margin = common["margin"]
    ok = upper < margin
    return dict(passed=ok, **common, confidence_bound=upper,
                reason=f"{label} upper bound{level} {upper:.4g} {'<' if ok else '>='} allowed {margin:.4g} ({detail})")


def _exact_baseline_non_inferior(rule, summary, sign, confidence, level, common) -> dict:
    """Against an exact baseline (the reference's KL of 0, its length ratio of 1) the drop's upper bound is the
    metric's own one-sided bound moved to the baseline: skew-aware where the eval records the skewness (a
    normal bound on right-skewed per-sequence KL covers 69-90% at a nominal 95% with 6-16 samples)."""
    limit = confidence_limit(rule.metric, "low" if sign > 0 else "high", confidence, summary)
    if limit is None:
        return dict(passed=False, **common, reason=_no_interval(rule.metric, summary))
    baseline = common["baseline"]
    return _drop_check(common, sign * (baseline - limit), "skew-aware drop", level,
                       f"drop {sign * (baseline - summary[rule.metric]):.4g} vs {rule.against} {baseline:.4g}")


def _anytime_non_inferior(rule, summary, ref, sign, confidence, level, common) -> dict:
    """A sequential eval's metric vs an exact baseline (the reference's neutral value): the drop's upper
    bound is the baseline minus the anytime bound; a fixed-n bound would not hold after the stop."""
    limit = anytime_limit(rule.metric, "low" if sign > 0 else "high", confidence, summary)
    if limit is None or _finite(ref.get(f"{rule.metric}_stderr")) and ref[f"{rule.metric}_stderr"] > 0:
        return dict(passed=False, **common, reason=_no_interval(rule.metric, summary))
    baseline = common["baseline"]
    return _drop_check(common, sign * (baseline - limit), "drop", level + _anytime_note(rule.metric, summary),
                       f"vs {rule.against} {baseline:.4g}")


def _anytime_paired_non_inferior(rule, summary, delta_key, sign, confidence, level, common) -> dict:
    """A sequential eval's per-item paired differences (policy - baseline): the drop's upper bound is minus
    the anytime lower bound of their mean (a fixed-n bound, Tango's included, would not hold after the stop)."""
    limit = anytime_limit(delta_key, "low" if sign > 0 else "high", confidence, summary)
    if limit is None:
        return dict(passed=False, **common, reason=_no_interval(delta_key, summary))
    return _drop_check(common, -sign * limit, "paired drop", level + _anytime_note(rule.metric, summary),
                       f"drop {-sign * summary.get(delta_key, math.nan):.4g} vs {rule.against} {common['baseline']:.4g}")


def _anytime_note(metric: str, summary: Mapping[str, object]) -> str:
    """' (anytime-valid, N prompts)' for a sequentially judged metric, else ''."""
    key = _sequential_key(metric, summary)
    used, unit = summary.get(key), key.rsplit("_", 2)[-2]
    return f" (anytime-valid, {int(used)} {unit})" if isinstance(used, (int, float)) and math.isfinite(used) else ""


def summary_reason(metric: str, summary: Mapping[str, object]) -> str:
    """Why an eval left a metric out (e.g. LC not identified), when it says so: `<metric>_missing_reason`."""
    reason = summary.get(f"{metric}_missing_reason")
    return reason if isinstance(reason, str) else ""


def gate(summary: Mapping[str, float], baselines: Mapping[str, Mapping[str, float] | None], rules: list[GateRule],
         *, specs: Mapping[str, MetricSpec], errors: Mapping[str, str] | None = None,
         allow_promote_without_rules: bool = False, family_size: int = 1) -> GateDecision:
    errors = errors or {}
    rules = rules_vs_champion(rules, baselines.get("champion"))
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
    if against:  # regressions only: a floor or ceiling has no baseline (and `against: champion` on a floor
        # would re-point it to the head-to-head, rules_vs_champion)
        rules = [r.model_copy(update={"against": against}) if r.max_regression is not None else r for r in rules]
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
        # the copy is a promise about the start: an allowed regression (from the reference or from the champion)
        # is measured from the start, never from the champion's own `*_vs_start` values (a round-1 champion
        # has none, and they compare another model with the start)
        if rule.against != "start" and (rule.max_regression is not None or rule.against == "champion"):
            update["against"] = "start"
        if update:
            out.append(rule.model_copy(update=update | {"name": f"{rule.label}_vs_start"}))
    return out


# ---------------------------------------------------------------------------- head to head with the champion

# the champion baseline carries the registered version it was read as (harness.promotion.champion_baseline),
# so that a head-to-head measured against another champion cannot pass
REGISTERED_VERSION = "registry/champion_version"


def is_head_to_head(metric: str) -> bool:
    from evals.vs_champion import HEAD_TO_HEAD

    return metric.startswith(f"{HEAD_TO_HEAD}/")


def rules_vs_champion(rules: list[GateRule], champion: Mapping[str, float] | None) -> list[GateRule]:
    """The one place `against: champion` on a win rate (raw, LC, style-controlled: evals.vs_champion.COMPARED)
    becomes a paired question: the rule reads the head-to-head `winrate_vs_champion/<metric>` (the
    candidate's answers judged against the champion's on the same prompts), where the champion sits at 50.
    `min: m` then needs the head-to-head lower bound above m (`min: 50`: shown better than the champion),
    `max_regression: d` needs it above 50 - d (non-inferior to the champion, paired), `max` is a ceiling on it.
    With no champion yet (a first promotion) nothing is re-pointed and the rule means what it always did: a
    floor reads the win rate over the reference, an allowed regression fails for want of a champion."""
    if champion is None:
        return list(rules)
    from evals.vs_champion import COMPARED, HEAD_TO_HEAD

    return [rule.model_copy(update={"metric": f"{HEAD_TO_HEAD}/{rule.metric.split('/', 1)[1]}", "name": rule.label})
            if rule.against == "champion" and rule.metric in COMPARED else rule for rule in rules]


def champion_mismatch(metric: str, summary: Mapping[str, Any], baselines: Mapping[str, Mapping[str, float] | None]
                      ) -> str | None:
    """Why a head-to-head metric cannot back a decision now, or None: it must have been measured against the
    champion the decision is made against (the registered version recorded with it equals the current
    champion's). A champion that moved after the measurement fails the rule: the evidence is against the
    old one."""
    if not is_head_to_head(metric):
        return None
    from evals.vs_champion import CHAMPION_VERSION

    champion = baselines.get("champion")
    measured = summary.get(CHAMPION_VERSION)
    current = champion.get(REGISTERED_VERSION) if champion else None
    now = "there is no champion now" if not champion else (
        f"the champion is now version {current:g}" if _finite(current) else "the current champion's version is unknown")
    if not _finite(measured):
        return f"no head-to-head with the champion in this run (none existed when it was evaluated); {now}"
    if not (_finite(current) and current == measured):
        return (f"measured head to head against champion version {measured:g}, but {now}: that evidence is "
                "against another champion (re-run the cell, or `harness compare RUN CHAMPION_RUN` to look)")
    return None


def _head_to_head_non_inferior(rule, summary, spec, value, confidence, level) -> dict:
    """`max_regression: d` on a head-to-head win rate: the champion sits at 50 (a tie) on the same prompts,
    so non-inferiority is the paired win rate's lower bound above 50 - d."""
    even = spec.neutral if _finite(spec.neutral) else 50.0
    margin = rule.max_regression * abs(even) if rule.relative else rule.max_regression
    bound = even - margin
    common = dict(bound=bound, baseline=even, margin=margin)
    if confidence is None:
        ok = value >= bound
        return dict(passed=ok, **common, reason=f"point {value:.4g} {'>=' if ok else '<'} {bound:.4g} (head to head, "
                                                f"the champion at {even:g} less the allowed {margin:.4g})")
    low = confidence_limit(rule.metric, "low", confidence, summary)
    if low is None:
        return dict(passed=False, **common, reason=_no_interval(rule.metric, summary))
    ok = low > bound
    return dict(passed=ok, **common, confidence_bound=low,
                reason=f"head-to-head lower bound{level}{_anytime_note(rule.metric, summary)} {low:.4g} "
                       f"{'>' if ok else '<='} {bound:.4g} (the champion at "
                       f"{even:g} less the allowed {margin:.4g}; estimate {value:.4g})")
