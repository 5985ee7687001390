"""What every report page shares: value formatting (`fmt`, `Val`: NaN highlighted, missing as "—"),
the Jinja2 environment (autoescaping on), plotly figure helpers (inlined once per page, no network),
the gate-check rows and judge-calibration box that cell and sweep pages both show, and the atomic
page writer."""
from __future__ import annotations

import functools
import json
import math
import numbers
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import jinja2
from markupsafe import Markup

from harness.atomic_io import write_text_atomic

DASH = "—"


# Training-curve panels: (title, [(history key, trace label)]).
CURVE_PANELS: tuple[tuple[str, tuple[tuple[str, str], ...]], ...] = (
    ("loss", (("loss", "train loss"), ("eval_loss", "eval loss"))),
    ("rewards/margins", (("rewards/margins", "rewards/margins"),)),
    ("log-probs", (("logps/chosen", "logps/chosen"), ("logps/rejected", "logps/rejected"))),
)


POLICY_COLOR = "#4c6ef5"


REFERENCE_COLOR = "#adb5bd"


FONT = "-apple-system, BlinkMacSystemFont, 'Segoe UI', Roboto, Helvetica, Arial, sans-serif"


@dataclass(frozen=True)
class Val:
    """A formatted value: its text, and whether it is NaN (highlighted)."""

    text: str
    nan: bool = False
    missing: bool = False


MISSING = Val(DASH, missing=True)


def as_float(v: Any) -> float | None:
    """A real number as float, or None (bools, strings, None are not numbers here)."""
    if v is None or isinstance(v, bool):
        return None
    if isinstance(v, numbers.Real):
        try:
            return float(v)
        except (TypeError, ValueError, OverflowError):
            return None
    return None


def fmt_float(x: float) -> str:
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
        return MISSING
    if isinstance(v, bool):
        return Val("true" if v else "false")
    if isinstance(v, numbers.Integral):
        return Val(str(int(v)))
    x = as_float(v)
    if x is not None:
        return Val(fmt_float(x), nan=math.isnan(x))
    if isinstance(v, str):
        return Val(v) if v != "" else MISSING
    try:
        return Val(json.dumps(v, default=str, ensure_ascii=False))
    except (TypeError, ValueError):
        return Val(str(v))


def text_or_none(v: Any) -> str | None:
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


def mapping(v: Any) -> Mapping:
    return v if isinstance(v, Mapping) else {}


def seq(v: Any) -> list:
    if isinstance(v, (list, tuple)):
        return list(v)
    return []


def check_rows(raw: Any) -> list[dict]:
    rows = []
    for i, c in enumerate(seq(raw)):
        c = mapping(c)
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
                "confidence_bound": fmt(c.get("confidence_bound")),
                "confidence": fmt(None if c.get("confidence") is None else f"{100 * c['confidence']:.4g}%"),
                "n": fmt(c.get("n")),
                "point_only": c.get("statistic") == "point",
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


def check_reason(c: dict) -> str:
    reason, name = c["_raw_reason"], c["_raw_name"]
    if reason not in (None, ""):
        return f"{name}: {reason}" if name not in (None, "") else str(reason)
    return f"{name if name not in (None, '') else 'a check'} failed"


def finite(v: Any) -> float | None:
    x = as_float(v)
    return x if x is not None and math.isfinite(x) else None


def judge_calibration_box(r: Mapping) -> dict:
    """The "Judge calibration" box: agreement with human labels (with its interval), position flips,
    length bias against the humans', or "uncalibrated" when the cell's judge has no stored calibration."""
    from evals.judge_calibration import CALIBRATE_COMMAND, calibration_summary

    metrics, info = mapping(r.get("metrics")), mapping(r.get("judge_calibration"))
    judge = mapping(mapping(r.get("config")).get("eval")).get("judge")
    name = judge.get("name") if isinstance(judge, Mapping) else judge
    box = {"judge": fmt(name), "fingerprint": fmt(info.get("judge_key")), "run_id": fmt(info.get("run_id")),
           "labels": fmt(info.get("labels")), "command": CALIBRATE_COMMAND}
    if finite(metrics.get("judge/agreement_pct")) is None:
        return box | {"calibrated": False, "cls": "warn", "rows": []}
    rows = calibration_summary({k: v for k, v in metrics.items() if finite(v) is not None})
    return box | {"calibrated": True, "cls": "", "rows": rows}


def fig_html(fig: Any, div_id: str, height: int) -> Markup:
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


def layout(fig: Any, height: int, **kw: Any) -> None:
    fig.update_layout(
        template="plotly_white",
        height=height,
        margin={"l": 50, "r": 20, "t": 50, "b": 45},
        font={"family": FONT, "size": 12},
        legend={"orientation": "h", "yanchor": "bottom", "y": 1.08, "xanchor": "left", "x": 0},
        **kw,
    )


def curve_points(history: list, key: str) -> tuple[list[float], list[float]]:
    """(steps, values) of one logged series, skipping rows without a finite value; a row without
    a step counts as its position."""
    xs, ys = [], []
    for i, h in enumerate(history):
        y = finite(h.get(key))
        if y is None:
            continue
        x = finite(h.get("step"))
        xs.append(x if x is not None else i + 1)
        ys.append(y)
    return xs, ys


@functools.lru_cache(maxsize=1)
def template_env() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("reports", "templates"),
        autoescape=True,  # explicit: select_autoescape() does not apply to from_string templates
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    return env


@functools.lru_cache(maxsize=1)
def plotlyjs() -> Markup:
    from plotly.offline import get_plotlyjs

    return Markup(get_plotlyjs())


def write_page_atomic(path: Path, text: str) -> None:
    write_text_atomic(path, text, mode=0o644)  # readable by whoever serves or opens the reports
