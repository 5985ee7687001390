"""Iterative training measures each round against the previous round (its reference) and against
the model it started from. The second set reuses the same evals under `<eval>_vs_start/<metric>`,
declared here from the originals so direction and unit are never restated.
"""
from __future__ import annotations

from evals import kl, lc_winrate, length, pairwise  # noqa: F401  (their metrics must be registered first)
from evals.metrics import METRICS, register_metric

VS_START = {"winrate": "winrate_vs_start", "kl": "kl_vs_start", "length": "length_vs_start"}

for _key in list(METRICS):
    _eval, _metric = _key.split("/", 1)
    if _eval in VS_START and f"{VS_START[_eval]}/{_metric}" not in METRICS:
        _spec = METRICS.get(_key)
        register_metric(f"{VS_START[_eval]}/{_metric}", higher_is_better=_spec.higher_is_better, unit=_spec.unit,
                        description=f"{_spec.description} (against the starting model)")


def against_start(summary: dict[str, float]) -> dict[str, float]:
    """`winrate/lc_win_rate_pct_ci_low` -> `winrate_vs_start/lc_win_rate_pct_ci_low` (uncertainty suffixes ride along)."""
    out = {}
    for key, value in summary.items():
        evaluation, metric = key.split("/", 1)
        out[f"{VS_START.get(evaluation, evaluation)}/{metric}"] = value
    return out
