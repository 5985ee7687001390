"""One self-contained HTML page per sweep: which cell, why, and is the win real or just longer answers?

``render_sweep_report(sweep, out_path, cell_pages)`` takes the sweep's document
(reports.documents.SweepDocument, built by reports.from_mlflow.load_sweep_result for a live sweep and
for ``harness report`` alike)::

    {"sweep": name, "sweep_key": key or None, "run_id": parent run id,
     "cells": [document, ...],        # each a CellDocument, the one a cell page renders
     "champion": {"cell": key, "run_id": id} or None,
     "pareto": [cell keys on the LC-win-rate-vs-KL front] or None (then computed here),
     "selection": the one-champion rule and its outcome (harness.sweep) or None,
     "gate_plan": harness.gate_plan's plan for the sweep or None (then the plan its cells carry)}

and writes one HTML file: a headline (the champion and whether its win survives length
control), the verdict table (sortable by clicking a header, links to each cell's page), what
the sweep's gate could detect (the plan's table and the family-wise rate of an all-equal sweep), and
plots (LC win rate against KL with the front, the champion and the reference marked; length
distributions of each cell against the reference; training curves; domain deltas).

Same rules as the cell page: Jinja2 autoescaping for every value; the only Markup is plotly's
library and figure divs, whose strings are this module's fixed labels and cell labels reduced
to a safe character set (``plot_label``). Any key may be missing or None.
"""
from __future__ import annotations

import math
import os
import re
import urllib.parse
from pathlib import Path
from typing import Any, Iterable, Mapping

from markupsafe import Markup

from reports.common import (
    CURVE_PANELS,
    DASH,
    as_float,
    check_rows,
    curve_points,
    fig_html,
    finite,
    fmt,
    fmt_float,
    layout,
    mapping,
    plotlyjs,
    seq,
    template_env,
    write_page_atomic,
)
from reports.headline import (
    DELTA_SUFFIX,
    GAP_WARN,
    INFLATED_RATIO,
    LC,
    LONGER_RATIO,
    PVALUE_SUFFIX,
    SIGNIFICANCE,
    cell_metrics,
    domain_deltas,
    lc_class,
    ratio_class,
    win_facts,
)
from reports.headline import (
    num as _num,
)
from reports.headline import (
    signed as _signed,
)

__all__ = ["render_sweep_report", "build_sweep_context", "pareto_front", "plot_label", "cell_metrics"]

_PALETTE = ("#4c6ef5", "#f76707", "#2f9e44", "#ae3ec9", "#1098ad", "#9c755f", "#e64980", "#fab005",
            "#495057", "#74c0fc", "#8ce99a", "#ffa8a8")
_VERDICT_COLORS = {"PROMOTE": "#1a7f37", "BLOCK": "#cf222e"}
REFERENCE_COLOR = "#868e96"
_CHAMPION_COLOR = "#f5b301"


# --------------------------------------------------------------------------- helpers


def plot_label(text: Any, limit: int = 48) -> str:
    """A string safe to hand to plotly (which renders a subset of HTML in labels): only
    letters, digits and ``._-+=:/ ()β``; anything else becomes ``?``."""
    s = "" if text is None else str(text)
    s = re.sub(r"[^A-Za-z0-9._\-+=:/ ()β]", "?", s)
    return s[:limit] + ("…" if len(s) > limit else "")


def short_labels(keys: list[str]) -> dict[str, str]:
    """Plot labels: cell keys without their content hash (``dpo-b0.1-s0``) when that keeps
    them apart, else the full keys; always passed through ``plot_label``."""
    short = [re.sub(r"-[0-9a-f]{6,}$", "", k) for k in keys]
    chosen = short if len(set(short)) == len(set(keys)) else keys
    return {k: plot_label(s) for k, s in zip(keys, chosen)}


def _cell_key(result: Mapping, index: int) -> str:
    cell = result.get("cell")
    return str(cell) if cell not in (None, "") else f"cell {index + 1}"


def pareto_front(cells: Iterable[Any]) -> list[str]:
    """Cell keys on the LC-win-rate-vs-KL front, in cell order: `harness.sweep.pareto_front` (the one
    definition, also behind summary.csv's `pareto_lc_vs_kl`) over these cells' finite numbers."""
    from harness.pareto import KL, LC
    from harness.pareto import pareto_front as front_of

    points = {}
    for i, c in enumerate(cells):
        m = cell_metrics(c)
        points[_cell_key(mapping(c), i)] = {LC: m["lc"], KL: m["kl"]}
    front = front_of(points)
    return [k for k in points if k in front]


def _span(low: float | None, high: float | None) -> float:
    """An error bar's length from `low` to `high`; 0 (no bar) when either end is missing."""
    return high - low if low is not None and high is not None else 0.0


def _sort_value(x: float | None) -> str:
    return "" if x is None else repr(float(x))


def _href(page: Any, base_dir: Path) -> str | None:
    """A relative, URL-quoted href from the sweep report's folder to a cell page."""
    if page in (None, ""):
        return None
    try:
        rel = os.path.relpath(Path(page).resolve(), base_dir.resolve())
    except ValueError:  # another drive on Windows
        return None
    return urllib.parse.quote(Path(rel).as_posix())


def _domain_tasks(cells: list[Mapping]) -> list[str]:
    tasks: list[str] = []
    for c in cells:
        for k in mapping(c.get("metrics")):
            ks = str(k)
            if ks.endswith(DELTA_SUFFIX):
                task = ks[: -len(DELTA_SUFFIX)]
                if task not in tasks:
                    tasks.append(task)
    return sorted(tasks)


def _domain_label(task: str) -> str:
    return task.removeprefix("domain_")


# --------------------------------------------------------------------------- rows


def _row(result: Mapping, index: int, *, champion: str | None, pareto: set[str], tasks: list[str],
         href: str | None) -> dict:
    key = _cell_key(result, index)
    config = mapping(result.get("config"))
    m = cell_metrics(result)
    metrics = mapping(result.get("metrics"))
    checks = check_rows(result.get("checks"))
    failed = [c for c in checks if c["passed"] is False]
    errors = result.get("errors")
    n_errors = len(errors) if isinstance(errors, (Mapping, list, tuple)) else (1 if errors else 0)
    verdict_raw = result.get("verdict")
    verdict = str(verdict_raw).upper() if verdict_raw not in (None, "") else DASH

    lc_cls = lc_class(m)
    ratio_cls = ratio_class(m["len_ratio"])
    gap_warn = m["gap"] is not None and m["gap"] > GAP_WARN
    domain = [d | {"sort": _sort_value(d["value"])} for d in domain_deltas(metrics, tasks)]

    return {
        "index": index,
        "key": key,
        "run_id": fmt(result.get("run_id")),
        "href": href,
        "variant": fmt(config.get("variant")),
        "beta": fmt(config.get("beta")),
        "beta_sort": _sort_value(finite(config.get("beta"))),
        "seed": fmt(config.get("seed")),
        "lc": _num(m["lc"], 2), "lc_sort": _sort_value(m["lc"]), "lc_cls": lc_cls,
        "lc_ci": (_num(m["lc_lo"], 2), _num(m["lc_hi"], 2)) if m["lc_lo"] is not None or m["lc_hi"] is not None else None,
        "lc_nan": (lc_value := as_float(metrics.get(LC))) is not None and math.isnan(lc_value),
        "raw": _num(m["raw"], 2), "raw_sort": _sort_value(m["raw"]),
        "gap": _signed(m["gap"], 2) if m["gap"] is not None else None, "gap_warn": gap_warn,
        "kl": _num(m["kl"], 3), "kl_sort": _sort_value(m["kl"]),
        "kl_stderr": _num(m["kl_stderr"], 3) if m["kl_stderr"] is not None else None,
        "ratio": f"×{m['len_ratio']:.2f}" if m["len_ratio"] is not None else DASH,
        "ratio_sort": _sort_value(m["len_ratio"]), "ratio_cls": ratio_cls,
        "chosen": _signed(m["chosen"], 2), "chosen_sort": _sort_value(m["chosen"]),
        "chosen_stderr": _num(m["chosen_stderr"], 2) if m["chosen_stderr"] is not None else None,
        "domain": domain,
        "verdict": verdict,
        "verdict_class": {"PROMOTE": "promote", "BLOCK": "block"}.get(verdict, "unknown"),
        "failed": [{"name": c["name"], "reason": c["reason"], "required": c["required"] is not False} for c in failed],
        "n_failed": len(failed),
        "n_errors": n_errors,
        "champion": champion is not None and key == champion,
        "pareto": key in pareto,
        "_m": m,
    }


def _headline(rows: list[dict], champion_key: str | None, champion_run: Any) -> dict:
    """The one-paragraph answer: which cell, why, and is the win real or just longer answers."""
    n = len(rows)
    counts = {v: sum(r["verdict"] == v for r in rows) for v in ("PROMOTE", "BLOCK")}
    champ = next((r for r in rows if r["key"] == champion_key), None) if champion_key else None
    out: dict[str, Any] = {"n": n, "promote": counts["PROMOTE"], "block": counts["BLOCK"],
                           "other": n - counts["PROMOTE"] - counts["BLOCK"], "champion": champ,
                           "champion_key": champion_key, "champion_run": fmt(champion_run), "facts": []}
    if champ is not None:
        facts = win_facts(champ["_m"])
        if champ["_m"]["kl"] is not None:
            facts.append(("", f"KL to the reference {champ['kl']} nats per sequence"))
        out["facts"] = facts
    else:
        reasons: dict[str, int] = {}
        for r in rows:
            for f in r["failed"]:
                name = f["name"].text
                reasons[name] = reasons.get(name, 0) + 1
        out["top_failures"] = sorted(reasons.items(), key=lambda kv: (-kv[1], kv[0]))[:5]
    return out


# --------------------------------------------------------------------------- plots


def _color(i: int) -> str:
    return _PALETTE[i % len(_PALETTE)]


def _frontier_plot(cells: list[Mapping], keys: list[str], champion: str | None, pareto: list[str],
                   names: dict[str, str]) -> tuple[Markup | None, int]:
    import plotly.graph_objects as go

    pts = []
    for c, key in zip(cells, keys):
        m = cell_metrics(c)
        if m["lc"] is None or m["kl"] is None:
            continue
        verdict = str(c.get("verdict") or "").upper()
        pts.append((key, m, verdict))
    missing = len(cells) - len(pts)
    if not pts:
        return None, missing

    fig = go.Figure()
    fig.add_hline(y=50, line={"color": REFERENCE_COLOR, "dash": "dot", "width": 1})
    front = sorted((p for p in pts if p[0] in set(pareto)), key=lambda p: p[1]["kl"] or 0.0)  # kl is set: see above
    if len(front) >= 1:
        fig.add_trace(go.Scatter(
            x=[0.0] + [p[1]["kl"] for p in front], y=[50.0] + [p[1]["lc"] for p in front], mode="lines",
            name="front (LC vs KL)", line={"color": "#495057", "width": 1.5, "dash": "dash"}, hoverinfo="skip"))
    fig.add_trace(go.Scatter(x=[0.0], y=[50.0], mode="markers+text", name="reference",
                             marker={"symbol": "diamond", "size": 13, "color": REFERENCE_COLOR},
                             text=["reference"], textposition="bottom right",
                             hovertemplate="reference<br>KL 0, LC win rate 50<extra></extra>"))
    many = len(pts) > 12
    for verdict, name in (("PROMOTE", "passed gate"), ("BLOCK", "blocked"), ("", "no verdict")):
        group = [p for p in pts if (p[2] if p[2] in ("PROMOTE", "BLOCK") else "") == verdict]
        if not group:
            continue
        labels = [names[p[0]] for p in group]
        fig.add_trace(go.Scatter(
            x=[p[1]["kl"] for p in group], y=[p[1]["lc"] for p in group],
            mode="markers" if many else "markers+text", name=name, text=labels, textposition="top center",
            textfont={"size": 11},
            marker={"size": 11, "color": _VERDICT_COLORS.get(verdict, "#6e7781"), "line": {"width": 1, "color": "#fff"}},
            error_y={"type": "data", "symmetric": False, "thickness": 1.2, "width": 3,
                     "array": [_span(p[1]["lc"], p[1]["lc_hi"]) for p in group],
                     "arrayminus": [_span(p[1]["lc_lo"], p[1]["lc"]) for p in group]},
            error_x={"type": "data", "thickness": 1.2, "width": 3,
                     "array": [p[1]["kl_stderr"] or 0 for p in group]},
            hovertemplate="%{text}<br>KL %{x:.3f}<br>LC win rate %{y:.2f}<extra></extra>",
        ))
    champ = [p for p in pts if champion is not None and p[0] == champion]
    if champ:
        fig.add_trace(go.Scatter(
            x=[champ[0][1]["kl"]], y=[champ[0][1]["lc"]], mode="markers", name="champion",
            marker={"symbol": "star", "size": 24, "color": _CHAMPION_COLOR, "line": {"width": 1.5, "color": "#7a5a00"}},
            text=[names[champ[0][0]]], hovertemplate="champion %{text}<extra></extra>"))
    layout(fig, 440, xaxis_title="KL(policy‖reference), nats per sequence (k3) — lower is closer",
            yaxis_title="LC win rate vs reference, %")
    fig.update_xaxes(rangemode="tozero")
    return fig_html(fig, "plot-frontier", 440), missing


def _tokens(samples: Any, key: str) -> list[float]:
    return [x for x in (finite(mapping(s).get(key)) for s in seq(samples)) if x is not None]


def _lengths_plot(cells: list[Mapping], keys: list[str], names: dict[str, str]) -> Markup | None:
    import plotly.graph_objects as go

    ref: list[float] = []
    for c in cells:  # every cell of a sweep answers the same prompts with the same reference
        ref = _tokens(c.get("samples"), "reference_tokens")
        if ref:
            break
    series = [(names[k], _tokens(c.get("samples"), "policy_tokens"), _color(i))
              for i, (c, k) in enumerate(zip(cells, keys))]
    series = [s for s in series if s[1]]
    if not series and not ref:
        return None
    fig = go.Figure()
    # plotly draws the first horizontal box at the bottom: add cells reversed, reference last (on top)
    for label, xs, color in reversed(series):
        fig.add_trace(go.Box(x=xs, name=label, marker_color=color, boxmean=True, boxpoints="all", jitter=0.4,
                             pointpos=0, marker={"size": 3, "opacity": 0.5}, line={"width": 1.5}, orientation="h"))
    if ref:
        fig.add_trace(go.Box(x=ref, name="reference", marker_color=REFERENCE_COLOR, boxmean=True, boxpoints="all",
                             jitter=0.4, pointpos=0, marker={"size": 3, "opacity": 0.5}, orientation="h"))
    height = max(240, 90 + 46 * (len(series) + (1 if ref else 0)))
    layout(fig, height, xaxis_title="response length, tokens (box: quartiles, dashed: mean)", showlegend=False)
    fig.update_layout(margin={"l": 180, "r": 20, "t": 20, "b": 45})
    return fig_html(fig, "plot-sweep-lengths", height)


def _training_plot(cells: list[Mapping], keys: list[str], names: dict[str, str]) -> Markup | None:
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    panels = [(title, series) for title, series in CURVE_PANELS]
    fig = make_subplots(rows=1, cols=len(panels), subplot_titles=[t for t, _ in panels], horizontal_spacing=0.07)
    any_trace = False
    for i, (c, key) in enumerate(zip(cells, keys)):
        history = [h for h in seq(mapping(c.get("training")).get("history")) if isinstance(h, Mapping)]
        shown = False
        for col, (_, series) in enumerate(panels, start=1):
            for j, (hkey, label) in enumerate(series):
                xs, ys = curve_points(history, hkey)
                if not ys:
                    continue
                name = names[key]
                fig.add_trace(go.Scatter(
                    x=xs, y=ys, name=name, legendgroup=name, showlegend=not shown,
                    mode="lines+markers" if len(xs) <= 30 else "lines",
                    line={"color": _color(i), "width": 2, "dash": "dash" if j == 1 else "solid"},
                    marker={"size": 4}, hovertemplate=f"{name} {plot_label(label)}<br>step %{{x}}: %{{y:.4g}}<extra></extra>",
                ), row=1, col=col)
                shown = any_trace = True
    if not any_trace:
        return None
    for col in range(1, len(panels) + 1):
        fig.update_xaxes(title_text="step", row=1, col=col)
    layout(fig, 380)
    fig.update_layout(legend={"y": 1.16})
    return fig_html(fig, "plot-sweep-training", 380)


def _domain_plot(cells: list[Mapping], keys: list[str], tasks: list[str], names: dict[str, str]) -> Markup | None:
    if not tasks:
        return None
    import plotly.graph_objects as go

    fig = go.Figure()
    any_bar = False
    for i, (c, key) in enumerate(zip(cells, keys)):
        m = mapping(c.get("metrics"))
        ys, texts = [], []
        for t in tasks:
            d = finite(m.get(t + DELTA_SUFFIX))
            p = finite(m.get(t + PVALUE_SUFFIX))
            ys.append(d)
            texts.append("" if d is None else (f"p={p:.2g}" + ("*" if p < SIGNIFICANCE else "") if p is not None else ""))
        if all(y is None for y in ys):
            continue
        any_bar = True
        fig.add_trace(go.Bar(x=[plot_label(_domain_label(t)) for t in tasks], y=ys, name=names[key],
                             marker_color=_color(i), text=texts, textposition="outside", cliponaxis=False))
    if not any_bar:
        return None
    fig.add_hline(y=0, line={"color": "#495057", "width": 1})
    layout(fig, 360, barmode="group", yaxis_title="accuracy change vs reference (* p < 0.05, McNemar)")
    return fig_html(fig, "plot-domain", 360)


# --------------------------------------------------------------------------- render


def build_sweep_context(sweep: Any, out_dir: Path, cell_pages: Mapping[str, Any] | None = None) -> dict:
    s = mapping(sweep)
    cells = [mapping(c) for c in seq(s.get("cells"))]
    keys = [_cell_key(c, i) for i, c in enumerate(cells)]
    champion_raw = mapping(s.get("champion"))
    champion = champion_raw.get("cell")
    champion = str(champion) if champion not in (None, "") else None
    if champion is None and champion_raw.get("run_id"):
        champion = next((k for c, k in zip(cells, keys) if c.get("run_id") == champion_raw.get("run_id")), None)
    pareto_raw = s.get("pareto")
    pareto = [str(p) for p in seq(pareto_raw)] if pareto_raw is not None else pareto_front(cells)
    tasks = _domain_tasks(cells)

    pages = dict(cell_pages or {})
    rows = []
    for i, (c, key) in enumerate(zip(cells, keys)):
        page = pages.get(key)
        if page is None and cell_pages is None:  # the standard layout: <out_dir>/cells/<cell>/report.html
            guess = out_dir / "cells" / key / "report.html"
            page = guess if guess.is_file() else None
        rows.append(_row(c, i, champion=champion, pareto=set(pareto), tasks=tasks, href=_href(page, out_dir)))

    names = short_labels(keys)
    frontier, n_unplotted = _frontier_plot(cells, keys, champion, pareto, names)
    lengths = _lengths_plot(cells, keys, names)
    training = _training_plot(cells, keys, names)
    domain = _domain_plot(cells, keys, tasks, names)
    any_plot = any(p is not None for p in (frontier, lengths, training, domain))
    name = s.get("sweep")
    selected = mapping(s.get("selection")).get("winner_cell")
    return {
        "selection": _selection(s.get("selection")),
        "gate_plan": sweep_gate_plan(s, cells, keys, selected if selected not in (None, "", "-") else champion),
        "judges": _judges(cells),
        "sweep": fmt(name),
        "title": str(name) if name not in (None, "") else "sweep",
        "run_id": fmt(s.get("run_id")),
        "rows": rows,
        "tasks": [_domain_label(t) for t in tasks],
        "headline": _headline(rows, champion, champion_raw.get("run_id")),
        "pareto_count": sum(r["pareto"] for r in rows),
        "frontier_plot": frontier,
        "n_unplotted": n_unplotted,
        "lengths_plot": lengths,
        "training_plot": training,
        "domain_plot": domain,
        "significance": fmt_float(SIGNIFICANCE),
        "inflated_ratio": fmt_float(INFLATED_RATIO),
        "longer_ratio": fmt_float(LONGER_RATIO),
        "gap_warn": fmt_float(GAP_WARN),
        "plotlyjs": plotlyjs() if any_plot else None,
    }


def _selection(raw: Any) -> dict | None:
    """The sweep's one-champion rule and its outcome (harness.sweep records it on the parent run)."""
    sel = mapping(raw)
    if not sel.get("rule"):
        return None
    passed = [str(p) for p in seq(sel.get("passed"))]
    winner = sel.get("winner_cell")
    # plain text: the template writes these into a sentence (escaped), not through the val() macro
    return {"rule": fmt(sel.get("rule")).text, "winner": fmt(winner).text if winner not in (None, "", "-") else None,
            "score": _num(finite(sel.get("winner_score")), 4) if finite(sel.get("winner_score")) is not None else None,
            "promotion": fmt(sel.get("promotion")).text,
            "not_selected": [fmt(p).text for p in passed if p != winner]}


def _pct(x: float | None, spec: str = ".1f") -> str | None:
    return None if x is None else format(100 * x, spec)


def sweep_gate_plan(sweep: Mapping, cells: list[Mapping], keys: list[str], selected: str | None) -> dict | None:
    """What this sweep's gate could detect (harness.gate_plan; the table every cell page shows), how often
    an all-equal sweep of these cells would ship one of them (with its Monte-Carlo error), and what that
    means for the selected champion. The plan is the sweep's own when given, else the one its cells
    carry - the selected cell's first: cells share rules and family size, and each plan is simulated at
    the number of prompts that cell evaluated."""
    from reports.experiment import gate_plan_rows

    carried = sorted(((k, mapping(c.get("gate_plan"))) for c, k in zip(cells, keys) if mapping(c.get("gate_plan"))),
                     key=lambda kp: kp[0] != selected)
    own = mapping(sweep.get("gate_plan"))
    plan = own or (carried[0][1] if carried else {})
    table = gate_plan_rows(plan)
    if table is None:
        return None
    sizes = mapping(plan.get("sizes"))
    evaluated = sorted({int(n) for n in (finite(mapping(p.get("sizes")).get("n_prompts")) for _, p in carried)
                        if n is not None})
    rate, rate_se = finite(plan.get("family_wise_rate")), finite(plan.get("family_wise_mc_stderr"))
    level, cell_level = finite(plan.get("stated_level")), finite(plan.get("cell_level"))
    family = finite(plan.get("family_size"))
    return table | {
        "source": fmt(sizes.get("n_prompts_source")),
        "from_cell": fmt(None if own or not carried else carried[0][0]),
        "evaluated_range": fmt(f"{evaluated[0]}-{evaluated[-1]}" if len(evaluated) > 1 else None),
        "family_wise": fmt(_pct(rate)), "family_wise_mc": fmt(_pct(rate_se)),
        "level": fmt(_pct(level, ".3g")), "cell_level": fmt(_pct(cell_level, ".3g")),
        "meaning": _plan_meaning(rate, rate_se, level, int(family) if family else None, selected),
    }


def _plan_meaning(rate: float | None, rate_se: float | None, level: float | None, family: int | None,
                  selected: str | None) -> str:
    """One sentence: what the family-wise rate says about the selected champion."""
    if rate is None or not family or family < 2:
        return ("No family-wise rate in this plan (one cell, or a plan recorded before the sweep's was "
                "computed): each cell's own false-promote rate is the row \"equal_quality\".")
    odds = f"{_pct(rate)}% (± {_pct(rate_se or 0.0)}) of the time"
    stated = f" (stated level {_pct(level, '.3g')}%)" if level is not None else ""
    if selected is None:
        return (f"If none of these {family} cells were better than the reference, the sweep would still promote one "
                f"of them {odds}{stated}; this sweep selected none.")
    return (f"If none of these {family} cells were better than the reference, the sweep would still select and "
            f"promote one of them {odds}{stated}: that is the false-alarm rate behind {selected}'s promotion (not "
            f"the chance that it is a false alarm). Its win rate was picked as the best of {family} on the same "
            "prompts, so its estimate is optimistic (winner's curse): expect less on fresh prompts.")


def _judges(cells: list[Mapping]) -> list[dict]:
    """One calibration box per distinct judge the cells used (usually one): agreement with human
    labels, or "uncalibrated" with the command, as on each cell page."""
    from reports.common import judge_calibration_box

    boxes: dict[tuple, dict] = {}
    for cell in cells:
        box = judge_calibration_box(cell)
        key = (box["judge"].text, box["fingerprint"].text, box["calibrated"])
        boxes.setdefault(key, box | {"n_cells": 0})["n_cells"] += 1
    return list(boxes.values())


def render_sweep_html(sweep: Any, out_dir: Path, cell_pages: Mapping[str, Any] | None = None) -> str:
    return template_env().get_template("sweep.html").render(**build_sweep_context(sweep, out_dir, cell_pages))


def render_sweep_report(sweep: Mapping[str, Any], out_path: Path, cell_pages: dict[str, str] | None = None) -> Path:
    """Render the sweep page to ``out_path`` (atomically) and return the path.

    ``cell_pages`` maps cell keys to the paths of their pages; the table links to them with
    hrefs relative to ``out_path``'s folder. Without it, ``<folder>/cells/<cell>/report.html``
    is linked where that file exists.
    """
    out_path = Path(out_path)
    html = render_sweep_html(sweep, out_path.parent, cell_pages)
    write_page_atomic(out_path, html)
    return out_path
