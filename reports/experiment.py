"""One self-contained HTML page per experiment.

``render_experiment_report(result, out_path)`` turns the cell's document
(reports.documents.CellDocument: verdict, gate checks, metrics, training history, samples,
data stats, config, eval errors, ...) into a single HTML file that opens from disk with no network
access: the CSS is inline, and plotly's JS is inlined once per page.

Every value that comes from the result (model text, prompts, config values,
metric keys, error messages) goes through Jinja2 autoescaping; the only markup
marked safe is what this module generates itself (plotly's library and the
figure divs, whose data are numbers and fixed labels only).

Any key of ``result`` may be missing or None: it renders as "—". NaN renders
as "NaN" and is highlighted.
"""

from __future__ import annotations

import json
import math
import pprint
from pathlib import Path
from typing import Any, Mapping

from markupsafe import Markup

from harness.redaction import scrub_text
from reports.common import (
    CURVE_PANELS,
    DASH,
    MISSING,
    POLICY_COLOR,
    REFERENCE_COLOR,
    Val,
    as_float,
    check_reason,
    check_rows,
    curve_points,
    fig_html,
    finite,
    fmt,
    fmt_float,
    judge_calibration_box,
    layout,
    mapping,
    plotlyjs,
    seq,
    template_env,
    text_or_none,
    write_page_atomic,
)
from reports.headline import key_numbers
from reports.sequential import sequential_plots, sequential_rows

__all__ = ["render_experiment_report", "build_context"]


# Metric key suffixes that decorate a base metric rather than being one.
_STDERR = "_stderr"
_CI_LOW = "_ci_low"
_CI_HIGH = "_ci_high"
_SUFFIXES = (_STDERR, _CI_LOW, _CI_HIGH, "_skewness", "_anytime_low", "_anytime_high", "_anytime_confidence")


# A policy/reference length ratio at or above this is flagged in the samples table.
_INFLATED_RATIO = 1.5


# --------------------------------------------------------------------------- values


# --------------------------------------------------------------------------- sections


def _why(checks: list[dict], errors: list[dict]) -> str:
    # checks are sorted: required failures first, then optional failures.
    failed = [c for c in checks if c["passed"] is False]
    if failed and failed[0]["required"] is not False:
        text = check_reason(failed[0])
        if len(failed) > 1:
            text += f" (+{len(failed) - 1} more failed)"
        return text
    if failed:  # only optional checks failed
        n_req = sum(c["required"] is not False for c in checks)
        return f"all {n_req} required checks passed; optional {check_reason(failed[0])}"
    if not checks:
        text = "no gate checks recorded"
    elif all(c["passed"] is True for c in checks):
        text = f"all {len(checks)} checks passed"
    else:
        unknown = sum(c["passed"] is None for c in checks)
        text = f"{len(checks) - unknown} of {len(checks)} checks passed, {unknown} without a result"
    if errors:
        text += f"; {len(errors)} eval{'s' if len(errors) != 1 else ''} crashed"
    return text


def _arrow(spec: Mapping) -> tuple[str, str]:
    hib = spec.get("higher_is_better")
    if hib is True:
        return "↑", "higher is better"
    if hib is False:
        return "↓", "lower is better"
    return DASH, "no preferred direction" if "higher_is_better" in spec else "no spec"


def _metrics(raw: Any, specs_raw: Any) -> list[dict]:
    metrics = mapping(raw)
    specs = mapping(specs_raw)
    keys = [k for k in metrics.keys()]
    str_keys = {str(k) for k in keys}

    def is_decoration(k: str) -> bool:
        return any(k.endswith(s) and k[: -len(s)] in str_keys for s in _SUFFIXES)

    rows = []
    for k in sorted(keys, key=lambda k: str(k)):
        ks = str(k)
        if is_decoration(ks):
            continue
        spec = mapping(specs.get(k, specs.get(ks)))
        arrow, arrow_title = _arrow(spec)
        lo = metrics.get(ks + _CI_LOW)
        hi = metrics.get(ks + _CI_HIGH)
        rows.append(
            {
                "key": ks,
                "value": fmt(metrics.get(k)),
                "stderr": fmt(metrics.get(ks + _STDERR)) if (ks + _STDERR) in metrics else None,
                "ci": (fmt(lo), fmt(hi)) if (lo is not None or hi is not None) else None,
                "unit": fmt(spec.get("unit")),
                "arrow": arrow,
                "arrow_title": arrow_title,
                "description": spec.get("description") if isinstance(spec.get("description"), str) else None,
            }
        )
    return rows


def _data(raw: Any) -> dict:
    data = mapping(raw)
    dropped_raw = data.get("dropped")
    dropped = []
    total = 0.0
    total_ok = True
    if isinstance(dropped_raw, Mapping):
        def by_count(kv: tuple) -> tuple[bool, float]:
            x = finite(kv[1])
            return (x is None, -(x or 0.0))

        for reason, n in sorted(dropped_raw.items(), key=by_count):
            x = as_float(n)
            if x is None or math.isnan(x):
                total_ok = False
            else:
                total += x
            dropped.append({"reason": fmt(reason), "count": fmt(n)})
    elif dropped_raw is not None:
        dropped.append({"reason": fmt("(unspecified)"), "count": fmt(dropped_raw)})
        x = as_float(dropped_raw)
        total_ok = x is not None and not math.isnan(x)
        total = x or 0.0
    extra = [
        {"key": fmt(k), "value": fmt(v), "numeric": as_float(v) is not None,
         "list_items": [fmt(i) for i in v] if isinstance(v, (list, tuple)) and v else None}
        for k, v in data.items()
        if k not in ("pairs", "dropped", "dropped_total")  # both shown as "rows dropped"
    ]
    return {
        "present": bool(data),
        "pairs": fmt(data.get("pairs")),
        "dropped": dropped,
        "dropped_total": fmt(int(total) if total_ok and float(total).is_integer() else total) if dropped and total_ok else None,
        "extra": extra,
    }


def _errors(raw: Any) -> list[dict]:
    """Eval errors, scrubbed of secrets (the harness scrubs them where they are made; this page is logged
    to MLflow and may be rendered from errors recorded by an older harness)."""
    if raw is None:
        return []

    def message(v: Any) -> str:
        return scrub_text(text_or_none(v) or "") or DASH

    if isinstance(raw, Mapping):
        return [{"name": fmt(k), "message": message(v)} for k, v in raw.items()]
    if isinstance(raw, (list, tuple)):
        return [{"name": fmt(i), "message": message(v)} for i, v in enumerate(raw)]
    text = message(raw)
    return [{"name": fmt("error"), "message": text}] if text != DASH else []


def _verdict_label(v: Any, baseline: str = "reference") -> tuple[str, str]:
    """Judge preference (alpaca-eval: 1 the baseline - the reference, or the champion head to head -,
    2 the policy, 1.5 tie) -> (label, css class)."""
    x = as_float(v)
    if x is None:
        if v is None:
            return DASH, "missing"
        return str(v), ""
    if math.isnan(x):
        return "NaN", "nan"
    if abs(x - 1.5) < 1e-9:
        label, cls = "tie", "tie"
    elif x > 1.5:
        label, cls = "policy wins", "win"
    else:
        label, cls = f"{baseline} wins", "loss"
    if x not in (1.0, 1.5, 2.0):
        label += f" ({fmt_float(x)})"
    return label, cls


def _ratio(policy: float | None, reference: float | None) -> float | None:
    if policy is None or reference is None or math.isnan(policy) or math.isnan(reference):
        return None
    if reference <= 0:
        return math.inf if policy > 0 else None
    return policy / reference


def _samples(raw: Any) -> list[dict]:
    rows: list[tuple[tuple[bool, float, int], dict[str, Any]]] = []
    for i, s in enumerate(seq(raw)):
        s = mapping(s)
        # the answer the verdict compared: a named baseline's (eval.prompts alpaca_eval), else the reference's
        compared = "baseline" if s.get("baseline") is not None else "reference"
        ptok = as_float(s.get("policy_tokens"))
        rtok = as_float(s.get(f"{compared}_tokens"))
        ratio = _ratio(ptok, rtok)
        label, cls = _verdict_label(s.get("verdict"), text_or_none(s.get("baseline_name")) or "reference")
        champion_label, champion_cls = _verdict_label(s.get("champion_verdict"), "champion")
        # most length-inflated first; samples without a ratio keep their order, last
        rows.append((
            (ratio is None, -(ratio or 0.0), i),
            {
                "index": i + 1,
                "prompt": text_or_none(s.get("prompt")),
                "reference": text_or_none(s.get(compared)),
                "policy": text_or_none(s.get("policy")),
                "verdict": label,
                "verdict_class": cls,
                # head to head (evals.vs_champion): the champion's answer to the same prompt, and the verdict
                "champion": text_or_none(s.get("champion")),
                "champion_verdict": champion_label,
                "champion_verdict_class": champion_cls,
                "reference_tokens": fmt(s.get(f"{compared}_tokens")),
                "policy_tokens": fmt(s.get("policy_tokens")),
                "ratio": (Val(f"×{ratio:.2f}") if math.isfinite(ratio) else Val("×∞")) if ratio is not None else MISSING,
                "inflated": ratio is not None and ratio >= _INFLATED_RATIO,
            },
        ))
    return [row for _, row in sorted(rows, key=lambda pair: pair[0])]


# --------------------------------------------------------------------------- plots


def _training_plot(history_raw: Any) -> Markup | None:
    history = [h for h in seq(history_raw) if isinstance(h, Mapping)]
    if not history:
        return None
    panels = []
    for title, series in CURVE_PANELS:
        traces = []
        for key, label in series:
            xs, ys = curve_points(history, key)
            if ys:
                traces.append((label, xs, ys))
        if traces:
            panels.append((title, traces))
    if not panels:
        return None

    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    fig = make_subplots(
        rows=1, cols=len(panels), subplot_titles=[t for t, _ in panels], horizontal_spacing=0.07
    )
    palette = ["#4c6ef5", "#2f9e44", "#ae3ec9", "#f76707", "#e03131"]  # one colour per series, across panels
    n_traces = 0
    for col, (_, traces) in enumerate(panels, start=1):
        for label, xs, ys in traces:
            j, n_traces = n_traces, n_traces + 1
            fig.add_trace(
                go.Scatter(
                    x=xs,
                    y=ys,
                    name=label,
                    mode="lines+markers" if len(xs) <= 30 else "lines",
                    line={"color": palette[j % len(palette)], "width": 2},
                    marker={"size": 4},
                ),
                row=1,
                col=col,
            )
        fig.update_xaxes(title_text="step", row=1, col=col)
    layout(fig, 360)
    return fig_html(fig, "plot-training", 360)


def _length_plot(samples_raw: Any) -> tuple[Markup | None, dict | None]:
    samples = [s for s in seq(samples_raw) if isinstance(s, Mapping)]
    pol = [x for x in (finite(s.get("policy_tokens")) for s in samples) if x is not None]
    ref = [x for x in (finite(s.get("reference_tokens")) for s in samples) if x is not None]
    if not pol and not ref:
        return None, None

    import plotly.graph_objects as go

    fig = go.Figure()
    if ref:
        fig.add_trace(
            go.Histogram(x=ref, name="reference", marker_color=REFERENCE_COLOR, opacity=0.75, bingroup=1)
        )
    if pol:
        fig.add_trace(go.Histogram(x=pol, name="policy", marker_color=POLICY_COLOR, opacity=0.65, bingroup=1))
    layout(fig, 340, barmode="overlay", xaxis_title="response length (tokens)", yaxis_title="samples")

    def stats(xs: list[float]) -> dict:
        if not xs:
            return {"n": fmt(0), "mean": MISSING, "median": MISSING}
        s = sorted(xs)
        m = len(s) // 2
        median = s[m] if len(s) % 2 else (s[m - 1] + s[m]) / 2
        return {"n": fmt(len(s)), "mean": fmt(sum(s) / len(s)), "median": fmt(median)}

    return fig_html(fig, "plot-lengths", 340), {"policy": stats(pol), "reference": stats(ref)}


# --------------------------------------------------------------------------- config


def _config_text(config: Any) -> tuple[str, str]:
    """(text, format) for the config <pre>; the template escapes the text."""
    if config is None:
        return DASH, ""
    if isinstance(config, str):
        return config, "text"
    try:
        import yaml

        return yaml.safe_dump(config, sort_keys=False, allow_unicode=True, default_flow_style=False, width=100), "YAML"
    except Exception:
        pass
    try:
        return json.dumps(config, indent=2, default=str, ensure_ascii=False), "JSON"
    except Exception:
        return pprint.pformat(config, width=100), "repr"


# --------------------------------------------------------------------------- render


def gate_plan_rows(raw: Any) -> dict | None:
    """What the gate could and could not have detected at this cell's eval sizes (harness.gate_plan)."""
    plan = mapping(raw)
    if not plan:
        return None
    sizes = mapping(plan.get("sizes"))
    rows = [{"scenario": fmt(s.get("scenario")), "description": fmt(s.get("description")),
             "expected": fmt(s.get("expected")),
             "promote": fmt(None if s.get("promote_rate") is None else f"{100 * s['promote_rate']:.1f}%"),
             "mc": fmt(None if s.get("mc_stderr") is None else f"±{100 * s['mc_stderr']:.1f}"),
             "used": fmt(_plan_used(s, sizes))}
            for s in map(mapping, seq(plan.get("scenarios")))]
    return {"rows": rows, "sims": fmt(plan.get("sims")), "n_prompts": fmt(sizes.get("n_prompts")),
            "sequential": bool(mapping(plan.get("sequential"))),
            "domain_items": fmt(", ".join(f"{k} {v}" for k, v in mapping(sizes.get("domain_items")).items()) or None),
            "family_size": fmt(plan.get("family_size")),
            "not_simulated": fmt(", ".join(map(str, seq(plan.get("not_simulated")))) or None),
            # what the simulated cells assume (harness.gate_plan.Assumptions; `harness gate plan --assume` changes them)
            "assumptions": fmt(", ".join(f"{k} {fmt_float(v) if isinstance(v, float) else v}"
                                         for k, v in mapping(plan.get("assumptions")).items()) or None)}


def _plan_used(scenario: Mapping, sizes: Mapping) -> str | None:
    """eval.sequential: the mean prompts judged and documents used by the simulated cells, e.g. "23 of 24
    prompts; domain_arith_mc 106 of 120"."""
    prompts = finite(scenario.get("mean_prompts_judged"))
    if prompts is None:
        return None
    items = mapping(sizes.get("domain_items"))
    used = [f"{prompts:.0f} of {sizes.get('n_prompts')} prompts"]
    used += [f"{task} {finite(v) or 0:.0f} of {items.get(task)}" for task, v in mapping(scenario.get("mean_items_used")).items()]
    return "; ".join(used)


_WINRATES = (("raw", "winrate/win_rate_pct", None), ("length-controlled (LC)", "winrate/lc_win_rate_pct",
                                                       "winrate/lc_identified"),
             ("style-controlled", "winrate/style_controlled_pct", "winrate/style_identified"))


def winrate_rows(result: Any, evaluation: str = "winrate") -> dict | None:
    """Raw, LC and style-controlled win rates side by side, which of them a gate rule read, and why a
    controlled one is missing (evals.winrate_stats leaves it out when the answers do not identify it).
    `evaluation`: "winrate" (over the reference) or "winrate_vs_champion" (head to head, the same keys)."""
    r = mapping(result)
    m = mapping(r.get("metrics"))
    if finite(m.get(f"{evaluation}/win_rate_pct")) is None:
        return None
    read_by_gate = {str(mapping(c).get("metric")) for c in seq(r.get("checks"))}

    def row(label: str, key: str, flag: str | None) -> dict:
        value = finite(m.get(key))
        reason = m.get(f"{key}_missing_reason")
        if not isinstance(reason, str) or not reason:
            reason = f"not identified ({flag} = 0)" if flag and finite(m.get(flag)) == 0.0 else "not measured"
        return {"id": key.split("/")[1], "label": label, "key": key, "missing": value is None,
                "value": fmt(value), "stderr": fmt(finite(m.get(key + _STDERR))),
                "lo": fmt(finite(m.get(key + _CI_LOW))), "hi": fmt(finite(m.get(key + _CI_HIGH))),
                "gated": key in read_by_gate, "reason": fmt(reason if value is None else None)}

    named = [(label, key.replace("winrate/", f"{evaluation}/"), flag and flag.replace("winrate/", f"{evaluation}/"))
             for label, key, flag in _WINRATES]
    rows = [row(label, key, flag) for label, key, flag in named]
    limit = finite(mapping(mapping(r.get("config")).get("eval")).get("max_truncated_pct"))
    # the same rates on the prompts where neither answer was cut (evals.pairwise.uncut_winrates)
    uncut_n, judged = finite(m.get(f"{evaluation}/uncut_prompts")), finite(m.get(f"{evaluation}/n"))
    uncut = None
    if uncut_n is not None:
        from evals.pairwise import uncut_key

        uncut = {"prompts": fmt(uncut_n), "judged": fmt(judged), "all": uncut_n == judged,
                 "rows": [row(label, uncut_key(key), None) for label, key, _ in named]}
    return {"rows": rows, "censored": finite(m.get(f"{evaluation}/lengths_censored")) == 1.0,
            "max_truncated_pct": None if limit is None else fmt_float(limit),
            "gate_reads_none": not any(row["gated"] for row in rows), "uncut": uncut}


def head_to_head_rows(result: Any) -> dict | None:
    """The policy judged against the champion's answers on the same prompts (evals.vs_champion): the three
    win rates, which champion (registered version and run), and the command that reproduces them."""
    r = mapping(result)
    table = winrate_rows(r, "winrate_vs_champion")
    if table is None:
        return None
    champion = mapping(r.get("champion"))
    version = champion.get("version")
    if version is None and finite(mapping(r.get("metrics")).get("winrate_vs_champion/champion_version")) is not None:
        version = f"{mapping(r.get('metrics'))['winrate_vs_champion/champion_version']:g}"
    run_id = text_or_none(champion.get("run_id"))
    return table | {"version": fmt(version), "champion_run": fmt(run_id),
                    "command": f"harness compare {r.get('run_id') or 'RUN'} {run_id or 'CHAMPION_RUN'} --json"}


def build_context(result: Any) -> dict:
    """The template context for ``result`` (exposed for tests and other pages)."""
    r = mapping(result)
    checks = check_rows(r.get("checks"))
    errors = _errors(r.get("errors"))
    verdict_raw = r.get("verdict")
    verdict = str(verdict_raw).upper() if verdict_raw not in (None, "") else None
    verdict_class = {"PROMOTE": "promote", "BLOCK": "block"}.get(verdict or "", "unknown")
    samples = _samples(r.get("samples"))
    training = mapping(r.get("training"))
    training_plot = _training_plot(training.get("history"))
    length_plot, length_stats = _length_plot(r.get("samples"))
    sequential_plots_ = sequential_plots(r.get("sequential"))
    config_text, config_format = _config_text(r.get("config"))
    n_failed = sum(c["passed"] is False for c in checks)

    return {
        "experiment": fmt(r.get("experiment")),
        "cell": fmt(r.get("cell")),
        "run_id": fmt(r.get("run_id")),
        "verdict": verdict or DASH,
        "verdict_class": verdict_class,
        "why": _why(checks, errors),
        "key_numbers": key_numbers(r),
        "winrates": winrate_rows(r),
        "head_to_head": head_to_head_rows(r),
        "champion_samples": any(s["champion"] is not None for s in samples),
        "judge_calibration": judge_calibration_box(r),
        "checks": checks,
        "n_failed": n_failed,
        "n_passed": sum(c["passed"] is True for c in checks),
        "metrics": _metrics(r.get("metrics"), r.get("metric_specs")),
        "data": _data(r.get("data")),
        "errors": errors,
        "training_plot": training_plot,
        "length_plot": length_plot,
        "length_stats": length_stats,
        "samples": samples,
        # whose answers the judge compared the policy with: the reference's, or a named baseline's (alpaca_eval)
        "samples_baseline": next((name for x in seq(r.get("samples"))
                                  if (name := text_or_none(mapping(x).get("baseline_name")))), "reference"),
        "inflated_ratio": fmt_float(_INFLATED_RATIO),
        "config_text": config_text,
        "config_format": config_format,
        "gate_plan": gate_plan_rows(r.get("gate_plan")),
        "sequential_rows": sequential_rows(r.get("sequential")),
        "sequential_plots": sequential_plots_,
        "plotlyjs": plotlyjs() if sequential_plots_ or any(p is not None for p in (training_plot, length_plot)) else None,
    }


def render_html(result: Any) -> str:
    return template_env().get_template("experiment.html").render(**build_context(result))


def render_experiment_report(result: Mapping[str, Any], out_path: Path) -> Path:
    """Render ``result`` to a self-contained HTML page at ``out_path`` (atomically).

    Returns the path written.
    """
    out_path = Path(out_path)
    html = render_html(result)
    write_page_atomic(out_path, html)
    return out_path
