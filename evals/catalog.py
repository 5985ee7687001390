"""Every eval and metric the harness has, for config checks, the gate and the report.

Each module of the `evals` package declares its own metrics (`register_metric`) and, if it is an
eval, registers it (`register_eval`) next to its maths; importing the package's modules is what
registers them. Every module is imported, so a new eval is one new file.
"""
from __future__ import annotations

import difflib
import functools
import importlib
import pkgutil

import evals
from evals.metrics import METRICS, MetricSpec


@functools.cache
def load_all() -> tuple[str, ...]:
    names = tuple(f"evals.{m.name}" for m in pkgutil.iter_modules(evals.__path__) if not m.ispkg)
    for name in names:
        importlib.import_module(name)
    return names


def known_metrics() -> dict[str, MetricSpec]:
    load_all()
    return {name: METRICS.get(name) for name in METRICS}


def suggest_metric(name: str) -> list[str]:
    return difflib.get_close_matches(name, list(known_metrics()), n=3, cutoff=0.5)
