"""One page per iterative experiment: the rounds side by side, each against the previous round
and against the starting model, with the round that stopped the loop and why.

Rendered with the shared Jinja2 environment (autoescape on); the only Markup is plotly's library
and the figure, whose labels are fixed strings and round numbers.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from reports.common import fig_html, finite, fmt, layout, plotlyjs, template_env, write_page_atomic

# (label, key) per column; "vs prev" metrics are measured against the round's reference
COLUMNS = [
    ("LC win % vs prev", "winrate/lc_win_rate_pct"),
    ("LC win % vs start", "winrate_vs_start/lc_win_rate_pct"),
    ("KL k3 vs prev", "kl/seq_kl_k3"),
    ("KL k3 vs start", "kl_vs_start/seq_kl_k3"),
    ("length ratio vs prev", "length/ratio_tokens"),
    ("length ratio vs start", "length_vs_start/ratio_tokens"),
    ("chosen log-p Δ", "chosen_logp/chosen_delta"),
]


def _round_metrics(r: Any) -> dict:
    """Round 1's reference is the start: its "vs start" figures are its "vs prev" ones."""
    m = r.result.metrics
    if r.index != 1:
        return m
    from evals.vs_start import against_start

    return m | against_start(m)


def _round_row(r: Any, out_dir: Path) -> dict:
    m = _round_metrics(r)
    report = r.result.report
    return {
        "index": r.index, "run_id": r.result.run_id, "verdict": r.result.verdict,
        "reference": "start" if r.reference["round"] == 0 else f"round {r.reference['round']}",
        "figures": [fmt(m.get(key)) for _, key in COLUMNS],
        "pairs": r.data.get("pairs"), "first_failure": r.result.decision.first_failure,
        "link": os.path.relpath(report, out_dir) if report else None,
    }


def _rounds_plot(rows: list[Any]):
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    x = [r.index for r in rows]
    fig = make_subplots(rows=1, cols=2, subplot_titles=("LC win rate (%)", "KL k3 (nats/sequence)"))
    for col, (key_prev, key_start) in enumerate((("winrate/lc_win_rate_pct", "winrate_vs_start/lc_win_rate_pct"),
                                                 ("kl/seq_kl_k3", "kl_vs_start/seq_kl_k3")), start=1):
        prev = [finite(_round_metrics(r).get(key_prev)) for r in rows]
        start = [finite(_round_metrics(r).get(key_start)) for r in rows]
        fig.add_trace(go.Scatter(x=x, y=prev, mode="lines+markers", name="vs previous round",
                                 line={"color": "#4c6ef5"}, showlegend=col == 1), row=1, col=col)
        fig.add_trace(go.Scatter(x=x, y=start, mode="lines+markers", name="vs starting model",
                                 line={"color": "#f76707", "dash": "dot"}, showlegend=col == 1), row=1, col=col)
    fig.add_hline(y=50, line={"color": "#868e96", "dash": "dash"}, row=1, col=1)
    fig.update_xaxes(title_text="round", dtick=1)
    layout(fig, 360)
    return fig_html(fig, "rounds-plot", 360)


def render_iterative_report(outcome: Any, config: Any, out_path: Path) -> Path:
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    rows = [_round_row(r, out_path.parent) for r in outcome.rounds]
    stopped = outcome.rounds[-1] if outcome.rounds and outcome.verdict != "PROMOTE" else None
    stop_reason = getattr(outcome, "stop_reason", None)
    html = template_env().get_template("iterative.html").render(
        title=config.name, cell=outcome.cell, run_id=outcome.run_id, verdict=outcome.verdict,
        iterations=config.iterations, rounds=rows, columns=[c for c, _ in COLUMNS],
        promoted_round=outcome.promoted_round,
        stopped_round=stopped.index if stopped else None,
        stop_reason=stopped.result.decision.first_failure if stopped else None,
        ended_early=stop_reason if not stopped and len(outcome.rounds) < config.iterations else None,
        rounds_plot=_rounds_plot(outcome.rounds) if outcome.rounds else None, plotlyjs=plotlyjs(),
    )
    write_page_atomic(out_path, html)
    return out_path


def _count(value: float | None) -> int | None:
    return None if value is None else int(value)


def render_iterative_from_mlflow(tracker, run_id: str, out_path: Path, children: list) -> Path:
    """Rebuild the page from the parent run and its round runs (`harness report PARENT_RUN_ID`)."""
    from types import SimpleNamespace

    parent = tracker.get_run(run_id)
    tags = parent.data.tags
    rounds = []
    for child in sorted(children, key=lambda c: int(c.data.tags.get("harness.round", "0"))):
        t = child.data.tags
        metrics = {k: v for k, v in child.data.metrics.items() if not k.startswith(("train/", "reference/", "start/"))}
        reason = t.get("harness.block_reason", "-")
        decision = SimpleNamespace(first_failure=None if reason == "-" else reason)
        result = SimpleNamespace(run_id=child.info.run_id, verdict=t.get("harness.verdict", "FAILED"), metrics=metrics,
                                 report="", decision=decision)
        rounds.append(SimpleNamespace(index=int(t.get("harness.round", "0")), result=result,
                                      reference={"round": int(t.get("harness.reference_round", "0"))},
                                      data={"pairs": _count(child.data.metrics.get("data/pairs"))}))
    promoted = tags.get("harness.promoted_round", "-")
    stop_reason = tags.get("harness.stop_reason", "-")
    outcome = SimpleNamespace(rounds=rounds, cell=tags.get("harness.cell", run_id), run_id=run_id,
                              stop_reason=None if stop_reason == "-" else stop_reason,
                              verdict=tags.get("harness.verdict", "FAILED"),
                              promoted_round=int(promoted) if promoted.isdigit() else None)
    config = SimpleNamespace(name=tracker.experiment_name(parent.info.experiment_id),
                             iterations=int(tags.get("harness.iterations", len(rounds))))
    return render_iterative_report(outcome, config, out_path)
