"""One self-contained HTML page per experiment.

``render_experiment_report(result, out_path)`` turns the harness's result dict
(verdict, gate checks, metrics, training history, samples, data stats, config,
eval errors) into a single HTML file that opens from disk with no network
access: the CSS is inline, and plotly's JS is inlined once per page.

Every value that comes from the result (model text, prompts, config values,
metric keys, error messages) goes through Jinja2 autoescaping; the only markup
marked safe is what this module generates itself (plotly's library and the
figure divs, whose data are numbers and fixed labels only).

Any key of ``result`` may be missing or None: it renders as "—". NaN renders
as "NaN" and is highlighted.
"""

from __future__ import annotations

import functools
import json
import math
import numbers
import os
import pprint
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

import jinja2
from markupsafe import Markup

__all__ = ["render_experiment_report", "build_context"]

DASH = "—"

# Metric key suffixes that decorate a base metric rather than being one.
_STDERR = "_stderr"
_CI_LOW = "_ci_low"
_CI_HIGH = "_ci_high"
_SUFFIXES = (_STDERR, _CI_LOW, _CI_HIGH)

# Training-curve panels: (title, [(history key, trace label)]).
_CURVE_PANELS: tuple[tuple[str, tuple[tuple[str, str], ...]], ...] = (
    ("loss", (("loss", "train loss"), ("eval_loss", "eval loss"))),
    ("rewards/margins", (("rewards/margins", "rewards/margins"),)),
    ("log-probs", (("logps/chosen", "logps/chosen"), ("logps/rejected", "logps/rejected"))),
)

_POLICY_COLOR = "#4c6ef5"
_REFERENCE_COLOR = "#adb5bd"
_FONT = "-apple-system, BlinkMacSystemFont, 'Segoe UI', Roboto, Helvetica, Arial, sans-serif"

# A policy/reference length ratio at or above this is flagged in the samples table.
_INFLATED_RATIO = 1.5


# --------------------------------------------------------------------------- values


@dataclass(frozen=True)
class Val:
    """A formatted value: its text, and whether it is NaN (highlighted)."""

    text: str
    nan: bool = False
    missing: bool = False


_MISSING = Val(DASH, missing=True)


def _as_float(v: Any) -> float | None:
    """A real number as float, or None (bools, strings, None are not numbers here)."""
    if v is None or isinstance(v, bool):
        return None
    if isinstance(v, numbers.Real):
        try:
            return float(v)
        except (TypeError, ValueError, OverflowError):
            return None
    return None


def _fmt_float(x: float) -> str:
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "∞" if x > 0 else "−∞"
    if x == 0:
        return "0"
    ax = abs(x)
    if ax >= 1e6 or ax < 1e-3:
        return f"{x:.3e}"
    text = f"{x:.4f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def fmt(v: Any) -> Val:
    """Format any value for a table cell."""
    if v is None:
        return _MISSING
    if isinstance(v, bool):
        return Val("true" if v else "false")
    if isinstance(v, numbers.Integral):
        return Val(str(int(v)))
    x = _as_float(v)
    if x is not None:
        return Val(_fmt_float(x), nan=math.isnan(x))
    if isinstance(v, str):
        return Val(v) if v != "" else _MISSING
    try:
        return Val(json.dumps(v, default=str, ensure_ascii=False))
    except (TypeError, ValueError):
        return Val(str(v))


def _text(v: Any) -> str | None:
    """Model text / prompt as a display string (chat message lists are flattened)."""
    if v is None:
        return None
    if isinstance(v, str):
        return v
    if isinstance(v, (list, tuple)) and v and all(isinstance(m, Mapping) for m in v):
        lines = []
        for m in v:
            role = m.get("role")
            content = m.get("content")
            lines.append(f"[{role}] {content}" if role is not None else str(content))
        return "\n\n".join(lines)
    if isinstance(v, float) and math.isnan(v):
        return "NaN"
    try:
        return json.dumps(v, default=str, ensure_ascii=False, indent=2)
    except (TypeError, ValueError):
        return str(v)


def _mapping(v: Any) -> Mapping:
    return v if isinstance(v, Mapping) else {}


def _seq(v: Any) -> list:
    if isinstance(v, (list, tuple)):
        return list(v)
    return []


# --------------------------------------------------------------------------- sections


def _checks(raw: Any) -> list[dict]:
    rows = []
    for i, c in enumerate(_seq(raw)):
        c = _mapping(c)
        passed = c.get("passed")
        passed = passed if isinstance(passed, bool) else None
        required = c.get("required")
        rows.append(
            {
                "index": i,
                "name": fmt(c.get("name")),
                "metric": fmt(c.get("metric")),
                "value": fmt(c.get("value")),
                "bound": fmt(c.get("bound")),
                "baseline": fmt(c.get("baseline")),
                "statistic": fmt(c.get("statistic")),
                "passed": passed,
                "required": required if isinstance(required, bool) else None,
                "reason": fmt(c.get("reason")),
                "_raw_reason": c.get("reason"),
                "_raw_name": c.get("name"),
            }
        )
    # Failed first (required before optional), then unknown, then passed; stable.
    def key(r: dict) -> tuple[int, int, int]:
        rank = {False: 0, None: 1, True: 2}[r["passed"]]
        return (rank, 0 if r["required"] is not False else 1, r["index"])

    rows.sort(key=key)
    return rows


def _check_reason(c: dict) -> str:
    reason, name = c["_raw_reason"], c["_raw_name"]
    if reason not in (None, ""):
        return f"{name}: {reason}" if name not in (None, "") else str(reason)
    return f"{name if name not in (None, '') else 'a check'} failed"


def _why(checks: list[dict], errors: list[dict]) -> str:
    # checks are sorted: required failures first, then optional failures.
    failed = [c for c in checks if c["passed"] is False]
    if failed and failed[0]["required"] is not False:
        text = _check_reason(failed[0])
        if len(failed) > 1:
            text += f" (+{len(failed) - 1} more failed)"
        return text
    if failed:  # only optional checks failed
        n_req = sum(c["required"] is not False for c in checks)
        return f"all {n_req} required checks passed; optional {_check_reason(failed[0])}"
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
    metrics = _mapping(raw)
    specs = _mapping(specs_raw)
    keys = [k for k in metrics.keys()]
    str_keys = {str(k) for k in keys}

    def is_decoration(k: str) -> bool:
        return any(k.endswith(s) and k[: -len(s)] in str_keys for s in _SUFFIXES)

    rows = []
    for k in sorted(keys, key=lambda k: str(k)):
        ks = str(k)
        if is_decoration(ks):
            continue
        spec = _mapping(specs.get(k, specs.get(ks)))
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
    data = _mapping(raw)
    dropped_raw = data.get("dropped")
    dropped = []
    total = 0.0
    total_ok = True
    if isinstance(dropped_raw, Mapping):
        def by_count(kv: tuple) -> tuple[bool, float]:
            x = _finite(kv[1])
            return (x is None, -(x or 0.0))

        for reason, n in sorted(dropped_raw.items(), key=by_count):
            x = _as_float(n)
            if x is None or math.isnan(x):
                total_ok = False
            else:
                total += x
            dropped.append({"reason": fmt(reason), "count": fmt(n)})
    elif dropped_raw is not None:
        dropped.append({"reason": fmt("(unspecified)"), "count": fmt(dropped_raw)})
        x = _as_float(dropped_raw)
        total_ok = x is not None and not math.isnan(x)
        total = x or 0.0
    extra = [
        {"key": fmt(k), "value": fmt(v), "numeric": _as_float(v) is not None,
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
    if raw is None:
        return []
    if isinstance(raw, Mapping):
        return [{"name": fmt(k), "message": _text(v) or DASH} for k, v in raw.items()]
    if isinstance(raw, (list, tuple)):
        return [{"name": fmt(i), "message": _text(v) or DASH} for i, v in enumerate(raw)]
    text = _text(raw)
    return [{"name": fmt("error"), "message": text}] if text else []


def _verdict_label(v: Any) -> tuple[str, str]:
    """Judge preference (alpaca-eval: 1 reference, 2 policy, 1.5 tie) -> (label, css class)."""
    x = _as_float(v)
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
        label, cls = "reference wins", "loss"
    if x not in (1.0, 1.5, 2.0):
        label += f" ({_fmt_float(x)})"
    return label, cls


def _ratio(policy: float | None, reference: float | None) -> float | None:
    if policy is None or reference is None or math.isnan(policy) or math.isnan(reference):
        return None
    if reference <= 0:
        return math.inf if policy > 0 else None
    return policy / reference


def _samples(raw: Any) -> list[dict]:
    rows = []
    for i, s in enumerate(_seq(raw)):
        s = _mapping(s)
        ptok = _as_float(s.get("policy_tokens"))
        rtok = _as_float(s.get("reference_tokens"))
        ratio = _ratio(ptok, rtok)
        label, cls = _verdict_label(s.get("verdict"))
        rows.append(
            {
                "index": i + 1,
                "prompt": _text(s.get("prompt")),
                "reference": _text(s.get("reference")),
                "policy": _text(s.get("policy")),
                "verdict": label,
                "verdict_class": cls,
                "reference_tokens": fmt(s.get("reference_tokens")),
                "policy_tokens": fmt(s.get("policy_tokens")),
                "ratio": (Val(f"×{ratio:.2f}") if math.isfinite(ratio) else Val("×∞")) if ratio is not None else _MISSING,
                "inflated": ratio is not None and ratio >= _INFLATED_RATIO,
                "_ratio": ratio,
            }
        )
    # Most length-inflated first; samples without a ratio keep their order, last.
    rows.sort(key=lambda r: (r["_ratio"] is None, -(r["_ratio"] or 0.0), r["index"]))
    return rows


def _finite(v: Any) -> float | None:
    x = _as_float(v)
    return x if x is not None and math.isfinite(x) else None


def _judge_calibration(r: Mapping) -> dict:
    """The "Judge calibration" box: agreement with human labels (with its interval), position flips,
    length bias against the humans', or "uncalibrated" when the cell's judge has no stored calibration."""
    from evals.judge_calibration import CALIBRATE_COMMAND, calibration_summary

    metrics, info = _mapping(r.get("metrics")), _mapping(r.get("judge_calibration"))
    judge = _mapping(_mapping(r.get("config")).get("eval")).get("judge")
    name = judge.get("name") if isinstance(judge, Mapping) else judge
    box = {"judge": fmt(name), "fingerprint": fmt(info.get("judge_key")), "run_id": fmt(info.get("run_id")),
           "labels": fmt(info.get("labels")), "command": CALIBRATE_COMMAND}
    if _finite(metrics.get("judge/agreement_pct")) is None:
        return box | {"calibrated": False, "cls": "warn", "rows": []}
    rows = calibration_summary({k: v for k, v in metrics.items() if _finite(v) is not None})
    return box | {"calibrated": True, "cls": "", "rows": rows}


# --------------------------------------------------------------------------- plots


def _fig_html(fig: Any, div_id: str, height: int) -> Markup:
    html = fig.to_html(
        full_html=False,
        include_plotlyjs=False,
        div_id=div_id,
        default_height=f"{height}px",
        default_width="100%",
        config={"displaylogo": False, "responsive": True},
    )
    # Trusted: generated by plotly from numbers and this module's fixed labels.
    return Markup(html)


def _layout(fig: Any, height: int, **kw: Any) -> None:
    fig.update_layout(
        template="plotly_white",
        height=height,
        margin={"l": 50, "r": 20, "t": 50, "b": 45},
        font={"family": _FONT, "size": 12},
        legend={"orientation": "h", "yanchor": "bottom", "y": 1.08, "xanchor": "left", "x": 0},
        **kw,
    )


def curve_points(history: list, key: str) -> tuple[list[float], list[float]]:
    """(steps, values) of one logged series, skipping rows without a finite value; a row without
    a step counts as its position."""
    xs, ys = [], []
    for i, h in enumerate(history):
        y = _finite(h.get(key))
        if y is None:
            continue
        x = _finite(h.get("step"))
        xs.append(x if x is not None else i + 1)
        ys.append(y)
    return xs, ys


def _training_plot(history_raw: Any) -> Markup | None:
    history = [h for h in _seq(history_raw) if isinstance(h, Mapping)]
    if not history:
        return None
    panels = []
    for title, series in _CURVE_PANELS:
        traces = []
        for key, label in series:
            xs, ys = curve_points(history, key)
            if ys:
                traces.append((label, xs, ys))
        if traces:
            panels.append((title, traces))
    if not panels:
        return None

    from plotly.subplots import make_subplots
    import plotly.graph_objects as go

    fig = make_subplots(
        rows=1, cols=len(panels), subplot_titles=[t for t, _ in panels], horizontal_spacing=0.07
    )
    palette = ["#4c6ef5", "#2f9e44", "#ae3ec9", "#f76707", "#e03131"]  # one colour per series, across panels
    series = 0
    for col, (_, traces) in enumerate(panels, start=1):
        for label, xs, ys in traces:
            j, series = series, series + 1
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
    _layout(fig, 360)
    return _fig_html(fig, "plot-training", 360)


def _length_plot(samples_raw: Any) -> tuple[Markup | None, dict | None]:
    samples = [s for s in _seq(samples_raw) if isinstance(s, Mapping)]
    pol = [x for x in (_finite(s.get("policy_tokens")) for s in samples) if x is not None]
    ref = [x for x in (_finite(s.get("reference_tokens")) for s in samples) if x is not None]
    if not pol and not ref:
        return None, None

    import plotly.graph_objects as go

    fig = go.Figure()
    if ref:
        fig.add_trace(
            go.Histogram(x=ref, name="reference", marker_color=_REFERENCE_COLOR, opacity=0.75, bingroup=1)
        )
    if pol:
        fig.add_trace(go.Histogram(x=pol, name="policy", marker_color=_POLICY_COLOR, opacity=0.65, bingroup=1))
    _layout(fig, 340, barmode="overlay", xaxis_title="response length (tokens)", yaxis_title="samples")

    def stats(xs: list[float]) -> dict:
        if not xs:
            return {"n": fmt(0), "mean": _MISSING, "median": _MISSING}
        s = sorted(xs)
        m = len(s) // 2
        median = s[m] if len(s) % 2 else (s[m - 1] + s[m]) / 2
        return {"n": fmt(len(s)), "mean": fmt(sum(s) / len(s)), "median": fmt(median)}

    return _fig_html(fig, "plot-lengths", 340), {"policy": stats(pol), "reference": stats(ref)}


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


@functools.lru_cache(maxsize=1)
def _env() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("reports", "templates"),
        autoescape=True,  # explicit: select_autoescape() does not apply to from_string templates
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    return env


@functools.lru_cache(maxsize=1)
def _plotlyjs() -> Markup:
    from plotly.offline import get_plotlyjs

    return Markup(get_plotlyjs())


def build_context(result: Any) -> dict:
    """The template context for ``result`` (exposed for tests and other pages)."""
    r = _mapping(result)
    checks = _checks(r.get("checks"))
    errors = _errors(r.get("errors"))
    verdict_raw = r.get("verdict")
    verdict = str(verdict_raw).upper() if verdict_raw not in (None, "") else None
    verdict_class = {"PROMOTE": "promote", "BLOCK": "block"}.get(verdict or "", "unknown")
    samples = _samples(r.get("samples"))
    training = _mapping(r.get("training"))
    training_plot = _training_plot(training.get("history"))
    length_plot, length_stats = _length_plot(r.get("samples"))
    config_text, config_format = _config_text(r.get("config"))
    n_failed = sum(c["passed"] is False for c in checks)
    from reports.headline import key_numbers  # imports this module: keep the import here

    return {
        "experiment": fmt(r.get("experiment")),
        "cell": fmt(r.get("cell")),
        "run_id": fmt(r.get("run_id")),
        "verdict": verdict or DASH,
        "verdict_class": verdict_class,
        "why": _why(checks, errors),
        "key_numbers": key_numbers(r),
        "judge_calibration": _judge_calibration(r),
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
        "inflated_ratio": _fmt_float(_INFLATED_RATIO),
        "config_text": config_text,
        "config_format": config_format,
        "plotlyjs": _plotlyjs() if (training_plot is not None or length_plot is not None) else None,
    }


def render_html(result: Any) -> str:
    return _env().get_template("experiment.html").render(**build_context(result))


def _atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def render_experiment_report(result: dict, out_path: Path) -> Path:
    """Render ``result`` to a self-contained HTML page at ``out_path`` (atomically).

    Returns the path written.
    """
    out_path = Path(out_path)
    html = render_html(result)
    _atomic_write(out_path, html)
    return out_path
