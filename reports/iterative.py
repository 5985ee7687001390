"""One page per iterative experiment: the rounds side by side, each against the previous round
and against the starting model, with the round that stopped the loop and why.

The page renders one document (reports.documents.IterativeDocument), built from a chain that has just
run or from MLflow (reports.from_mlflow.load_iterative_result).

Rendered with the shared Jinja2 environment (autoescape on); the only Markup is plotly's library
and the figure, whose labels are fixed strings and round numbers.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from reports.common import fig_html, finite, fmt, layout, plotlyjs, template_env, write_page_atomic
from reports.documents import IterativeDocument, RoundDocument, live_iterative_document

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


def _round_row(r: RoundDocument, out_dir: Path) -> dict:
    report = r["report"]
    return {
        "index": r["index"], "run_id": r["run_id"], "verdict": r["verdict"],
        "reference": "start" if r["reference_round"] == 0 else f"round {r['reference_round']}",
        "figures": [fmt(r["metrics"].get(key)) for _, key in COLUMNS],
        "pairs": r["pairs"], "first_failure": r["first_failure"],
        "link": os.path.relpath(report, out_dir) if report else None,
    }


def _rounds_plot(rows: list[RoundDocument]):
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    x = [r["index"] for r in rows]
    fig = make_subplots(rows=1, cols=2, subplot_titles=("LC win rate (%)", "KL k3 (nats/sequence)"))
    for col, (key_prev, key_start) in enumerate((("winrate/lc_win_rate_pct", "winrate_vs_start/lc_win_rate_pct"),
                                                 ("kl/seq_kl_k3", "kl_vs_start/seq_kl_k3")), start=1):
        prev = [finite(r["metrics"].get(key_prev)) for r in rows]
        start = [finite(r["metrics"].get(key_start)) for r in rows]
        fig.add_trace(go.Scatter(x=x, y=prev, mode="lines+markers", name="vs previous round",
                                 line={"color": "#4c6ef5"}, showlegend=col == 1), row=1, col=col)
        fig.add_trace(go.Scatter(x=x, y=start, mode="lines+markers", name="vs starting model",
                                 line={"color": "#f76707", "dash": "dot"}, showlegend=col == 1), row=1, col=col)
    fig.add_hline(y=50, line={"color": "#868e96", "dash": "dash"}, row=1, col=1)
    fig.update_xaxes(title_text="round", dtick=1)
    layout(fig, 360)
    return fig_html(fig, "rounds-plot", 360)


def render_iterative_page(doc: IterativeDocument, out_path: Path) -> Path:
    """Render the iterative page's document (reports.documents) to ``out_path`` (atomically)."""
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    rounds = doc["rounds"]
    stopped = rounds[-1] if rounds and doc["verdict"] != "PROMOTE" else None
    html = template_env().get_template("iterative.html").render(
        title=doc["title"], cell=doc["cell"], run_id=doc["run_id"], verdict=doc["verdict"],
        iterations=doc["iterations"], rounds=[_round_row(r, out_path.parent) for r in rounds],
        columns=[c for c, _ in COLUMNS], promoted_round=doc["promoted_round"],
        stopped_round=stopped["index"] if stopped else None,
        stop_reason=stopped["first_failure"] if stopped else None,
        ended_early=doc["stop_reason"] if not stopped and len(rounds) < doc["iterations"] else None,
        rounds_plot=_rounds_plot(rounds) if rounds else None, plotlyjs=plotlyjs(),
    )
    write_page_atomic(out_path, html)
    return out_path


def render_iterative_report(outcome: Any, config: Any, out_path: Path) -> Path:
    """The page of a chain that has just run (harness.iterative's IterativeResult and its config);
    `harness report PARENT_RUN_ID` renders the same document rebuilt from MLflow
    (reports.from_mlflow.load_iterative_result)."""
    return render_iterative_page(live_iterative_document(outcome, config), out_path)
