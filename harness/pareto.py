"""The LC-win-rate-against-KL front of a sweep: the one definition summary.csv (harness.sweep) and
the sweep page (reports.sweep) both draw."""
from __future__ import annotations

import math
from typing import Any, Mapping

LC, KL = "winrate/lc_win_rate_pct", "kl/seq_kl_k3"


def finite_number(x: Any) -> float | None:
    return float(x) if isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) else None


def pareto_front(metrics_by_cell: Mapping[str, Mapping[str, Any]]) -> set[str]:
    """Cells no competitor beats on both LC win rate (higher) and KL (lower). The reference itself
    (KL 0, LC win rate 50) competes: a cell that does not beat doing nothing is not on the front.
    Cells without both numbers (or with a non-finite one) are left out."""
    points = [(cell, finite_number(m.get(LC)), finite_number(m.get(KL))) for cell, m in metrics_by_cell.items()]
    points = [(c, lc, kl) for c, lc, kl in points if lc is not None and kl is not None]
    competitors = points + [(None, 50.0, 0.0)]
    return {c for c, lc, kl in points
            if not any(lc2 >= lc and kl2 <= kl and (lc2 > lc or kl2 < kl) for c2, lc2, kl2 in competitors if c2 != c)}
