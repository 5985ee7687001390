"""The cell page's picture of a sequential eval (eval.sequential): for each win-rate or domain rule, its
anytime bounds against the number of prompts judged (documents evaluated), the rule's threshold (minus the
margin for an allowed regression, read on the paired differences), and where the eval stopped.

Input: the result document's `sequential` entry, {eval: [MetricSequence.to_dict(), ...]}
(evals.sequential), written by the pipeline and logged as the run's `sequential.json` artifact.
"""
from __future__ import annotations

from typing import Any, Mapping

from markupsafe import Markup

from reports.common import fig_html, finite, fmt, layout, mapping, seq

_PALETTE = ["#4c6ef5", "#2f9e44", "#ae3ec9", "#f76707", "#e03131"]


def _deciding(raw: Any) -> list[tuple[str, Mapping, list[Mapping]]]:
    """(eval, sequence, looks) of every sequence that decided a rule and was looked at."""
    out = []
    for name, sequences in mapping(raw).items():
        for s in map(mapping, seq(sequences)):
            looks = [mapping(look) for look in seq(s.get("looks"))]
            if s.get("decides") and looks:
                out.append((name, s, looks))
    return out


def sequential_rows(raw: Any) -> list[dict]:
    """One row per sequence a rule decided: metric, rule, status, prompts used, the last bounds."""
    rows = []
    for name, s, looks in _deciding(raw):
        rule = mapping(s.get("rule"))
        confidence = finite(rule.get("confidence"))
        rows.append({"eval": name, "metric": str(s.get("metric", "")), "rule": str(rule.get("name", "")),
                     "kind": str(rule.get("kind", "")), "threshold": fmt(finite(rule.get("threshold"))),
                     "confidence": fmt(None if confidence is None else f"{100 * confidence:.4g}%"),
                     "status": str(s.get("status", "")), "method": str(s.get("method", "")),
                     "n": fmt(looks[-1].get("n")), "max_n": fmt(s.get("max_n")),
                     # a rerun with a raised budget continues the first run's test (evals.sequential.recorded_plan)
                     "planned": fmt(planned) if (planned := finite(s.get("planned_n"))) not in (None, finite(s.get("max_n")))
                     else None,
                     "low": fmt(finite(looks[-1].get("low"))), "high": fmt(finite(looks[-1].get("high")))})
    return rows


def sequential_plots(raw: Any) -> list[Markup]:
    """One plot per eval (their scales differ: a win rate in percent, an accuracy, a paired difference): the
    bounds (lines) of every rule-deciding sequence against prompts judged or documents evaluated, its
    threshold (dotted) and the stop (a vertical line)."""
    by_eval: dict[str, list[tuple[Mapping, list[Mapping]]]] = {}
    for name, s, looks in _deciding(raw):
        by_eval.setdefault(name, []).append((s, looks))
    return [_plot(name, sequences, k) for k, (name, sequences) in enumerate(by_eval.items())]


def _plot(name: str, sequences: list[tuple[Mapping, list[Mapping]]], k: int) -> Markup:
    import plotly.graph_objects as go

    fig = go.Figure()
    stop = 0
    for j, (s, looks) in enumerate(sequences):
        rule: Mapping = mapping(s.get("rule"))
        color = _PALETTE[j % len(_PALETTE)]
        label = f"{s.get('metric')} ({rule.get('name') or rule.get('kind')})"
        ns = [finite(look.get("n")) for look in looks]
        stop = max([stop, *(int(n) for n in ns if n is not None)])
        # an allowed regression is decided by the paired differences' lower bound against minus the margin
        side = "high" if rule.get("kind") == "max" else "low"
        fig.add_trace(go.Scatter(x=ns, y=[finite(look.get(side)) for look in looks], mode="lines+markers",
                                 name=f"{label}: {'lower' if side == 'low' else 'upper'} bound",
                                 line={"color": color, "width": 2}, marker={"size": 5}))
        threshold = finite(rule.get("threshold"))
        if threshold is not None and rule.get("kind") == "max_regression":
            threshold = -threshold
        if threshold is not None:
            fig.add_hline(y=threshold, line={"color": color, "dash": "dot", "width": 1})
    fig.add_vline(x=stop, line={"color": "#868e96", "dash": "dash"}, annotation_text=f"stopped at {stop}")
    unit = "prompts judged" if name.startswith("winrate") else "documents evaluated"
    layout(fig, 340, xaxis_title=unit, yaxis_title="anytime-valid bound")
    return fig_html(fig, f"plot-sequential-{k}", 340)
