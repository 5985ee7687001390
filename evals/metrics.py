"""Metric declarations: every metric states its direction and unit where it is defined.

The gate, MLflow and the report all read the same flat summary keyed `<eval>/<metric>`;
uncertainty rides along under `<eval>/<metric>_stderr`, `_ci_low`, `_ci_high`, `_skewness` (of the values
averaged, for a skew-aware bound) and, for a sequentially judged metric, `_anytime_low/_high/_confidence`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping

from harness.registry import Registry

UNCERTAINTY_SUFFIXES = ("_stderr", "_ci_low", "_ci_high", "_skewness", "_anytime_low", "_anytime_high",
                        "_anytime_confidence")

# What a run logs beside its measurements (harness.experiment): the training curves, the baselines it was
# gated against (`reference/<metric>`, `start/<metric>`) and the data pipeline's counters (the off-policy
# diagnostic `data/*_logp_*`, `data/offpolicy_*` is a measurement). A re-gate, a resumed sweep's summary and
# a page rebuilt from MLflow read a run's measurements through `measurements()`, as the live run has them.
NOT_MEASUREMENTS = ("train/", "reference/", "start/", "data/dropped_", "data/pairs")


def measurements(logged: Mapping[str, Any]) -> dict[str, Any]:
    """The eval measurements among a run's logged metrics."""
    return {k: v for k, v in logged.items() if not k.startswith(NOT_MEASUREMENTS)}


@dataclass(frozen=True)
class MetricSpec:
    key: str  # "<eval>/<metric>"
    higher_is_better: bool | None  # None: no preferred direction (e.g. a length ratio)
    unit: str
    description: str
    # what a missing value means, for the gate's message (e.g. "the judge is uncalibrated; run ...")
    missing_reason: str = ""
    # the value of the reference measured against itself (win rate 50, KL 0, length ratio 1): the
    # baseline every `against: reference` rule compares with, derived from here, never restated
    neutral: float | None = None
    # the per-sample values are skewed (KL, a ratio of means): the eval records `<key>_skewness` and the gate
    # bounds the mean with the skew-aware bound; without a finite skewness such a bound fails closed, never
    # falling back to the narrower normal one
    skewed: bool = False


METRICS: Registry[MetricSpec] = Registry("metric")


def register_metric(key: str, *, higher_is_better: bool | None, unit: str, description: str,
                    missing_reason: str = "", neutral: float | None = None, skewed: bool = False) -> MetricSpec:
    if "/" not in key:
        raise ValueError(f"metric key {key!r} must be '<eval>/<metric>'")
    return METRICS.add(key, MetricSpec(key, higher_is_better, unit, description, missing_reason, neutral, skewed))


def neutral_values(prefixes: tuple[str, ...] | None = None) -> dict[str, float]:
    """Every declared neutral value (optionally of the evals named by `prefixes`)."""
    return {k: METRICS.get(k).neutral for k in METRICS if METRICS.get(k).neutral is not None
            and (prefixes is None or k.split("/", 1)[0] in prefixes)}


def base_key(key: str) -> str:
    """`lc/win_rate_pct_stderr` -> `lc/win_rate_pct`."""
    for suffix in UNCERTAINTY_SUFFIXES:
        if key.endswith(suffix):
            return key[: -len(suffix)]
    return key


def sample_skewness(values: list[float], mean: float) -> float:
    """The adjusted Fisher-Pearson skewness G1 = g1 sqrt(n (n-1)) / (n-2) (scipy's skew(bias=False)); 0 when
    every value is equal (no spread: nothing to correct), NaN below three values (the gate then fails closed)."""
    n = len(values)
    m2 = sum((v - mean) ** 2 for v in values) / n if n else 0.0
    if m2 == 0:
        return 0.0
    if n < 3:
        return float("nan")
    m3 = sum((v - mean) ** 3 for v in values) / n
    return m3 / m2 ** 1.5 * math.sqrt(n * (n - 1)) / (n - 2)
