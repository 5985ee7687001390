"""Every metric the harness can produce, for config checks and the report.

Importing the eval modules registers their metrics (each module declares its own).
"""
from __future__ import annotations

import difflib
import importlib

from evals.metrics import METRICS, MetricSpec

EVAL_MODULES = ("evals.pairwise", "evals.kl", "evals.length", "evals.chosen_drop", "evals.domain", "evals.diversity",
                "evals.ifeval_offline", "evals.vs_start", "evals.judge_calibration", "evals.offpolicy_gap")


def _load() -> None:
    for name in EVAL_MODULES:
        importlib.import_module(name)


def known_metrics() -> dict[str, MetricSpec]:
    _load()
    return {name: METRICS.get(name) for name in METRICS}


def suggest_metric(name: str) -> list[str]:
    return difflib.get_close_matches(name, list(known_metrics()), n=3, cutoff=0.5)
