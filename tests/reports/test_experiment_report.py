"""The per-experiment HTML report: renders anything, escapes everything, needs no network."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest

from harness import atomic_io
from reports import common
from reports import experiment as rx
from reports.experiment import render_experiment_report

SCRIPT = "<script>alert(1)</script>"
IMG = "<img src=x onerror=alert(1)>"
EVIL = f"{SCRIPT} and {IMG}"

_PLOTLY_LIB = re.compile(r'<script type="text/javascript" id="plotly-js">.*?</script>', re.S)


def full_result(evil: str = "") -> dict:
    history = [
        {
            "step": s,
            "loss": 0.69 - 0.01 * s,
            "rewards/margins": 0.05 * s,
            "logps/chosen": -50.0 + 0.1 * s,
            "logps/rejected": -52.0 - 0.2 * s,
        }
        for s in range(1, 21)
    ]
    history.append({"step": 21, "loss": float("nan")})  # a NaN point must not break the plot
    samples = [
        {"prompt": f"Explain topic {i}. {evil}", "reference": f"Reference answer {i}. {evil}",
         "policy": f"Policy answer {i}. " + "more " * i + evil,
         "verdict": [2.0, 1.0, 1.5][i % 3], "reference_tokens": 30, "policy_tokens": 20 + 5 * i}
        for i in range(6)
    ]
    samples.append({"prompt": "no lengths", "reference": "r", "policy": "p", "verdict": None})
    return {
        "experiment": f"tiny {evil}",
        "run_id": "3f2a9c",
        "cell": "dpo-b0.1-s0-1a2b3c4d",
        "verdict": "BLOCK",
        "config": {"model": {"name": "embedded:tiny"}, "variant": "dpo", "beta": 0.1,
                   "system_prompt": f"be nice {evil}"},
        "metrics": {
            "winrate/win_rate_pct": 55.0, "winrate/win_rate_pct_stderr": 3.1,
            "winrate/lc_win_rate_pct": 51.2,
            "winrate/lc_win_rate_pct_ci_low": 45.0, "winrate/lc_win_rate_pct_ci_high": 57.0,
            "kl/seq_kl_k1": 0.8, "kl/seq_kl_k1_stderr": 0.1,
            "length/ratio": 1.3,
            "domain/accuracy": float("nan"),
        },
        "metric_specs": {
            "winrate/win_rate_pct": {"higher_is_better": True, "unit": "pct",
                                     "description": f"raw win rate vs reference {evil}"},
            "kl/seq_kl_k1": {"higher_is_better": False, "unit": "nats", "description": "sequence KL"},
            "length/ratio": {"higher_is_better": None, "unit": "ratio", "description": "length ratio"},
        },
        "checks": [
            {"name": "kl_bounded", "metric": "kl/seq_kl_k1", "value": 0.8, "bound": 5.0, "baseline": None,
             "statistic": "mean", "passed": True, "required": True, "reason": "mean 0.8 <= max 5.0"},
            {"name": "lc_beats_reference", "metric": "winrate/lc_win_rate_pct", "value": 51.2, "bound": 50.0,
             "baseline": None, "statistic": "ci_low", "passed": False, "required": True,
             "reason": f"ci_low 45.0 < min 50.0 {evil}"},
            {"name": "length_ok", "metric": "length/ratio", "value": 1.3, "bound": 1.5, "baseline": 1.0,
             "statistic": "mean", "passed": True, "required": False, "reason": "ok"},
            {"name": "no_regression", "metric": "domain/accuracy", "value": float("nan"), "bound": 0.5,
             "baseline": 0.6, "statistic": "mean", "passed": False, "required": True, "reason": "value is NaN"},
        ],
        "training": {"history": history},
        "samples": samples,
        "data": {"pairs": 64, "dropped": {"tie": 10, "chosen_equals_rejected": 2}},
        "errors": {"domain": f"RuntimeError: boom {evil}"},
    }


def _render(tmp_path: Path, result) -> str:
    out = render_experiment_report(result, tmp_path / "report.html")
    assert out == tmp_path / "report.html"
    return out.read_text(encoding="utf-8")


def _without_plotly_lib(html: str) -> str:
    stripped, n = _PLOTLY_LIB.subn("", html)
    assert n <= 1
    return stripped


def test_full_report_renders_everything(tmp_path: Path) -> None:
    html = _render(tmp_path, full_result())
    assert html.rstrip().endswith("</html>")
    # plotly inlined exactly once, two figures
    assert html.count('id="plotly-js"') == 1
    assert 'id="plot-training"' in html and 'id="plot-lengths"' in html
    body = _without_plotly_lib(html)
    # header
    assert "dpo-b0.1-s0-1a2b3c4d" in body and "3f2a9c" in body
    assert 'class="badge block"' in body
    assert "lc_beats_reference: ci_low 45.0 &lt; min 50.0" in body
    # sections in order
    order = [body.index(f'id="{s}"') for s in
             ("verdict", "errors", "checks", "metrics", "data", "training", "lengths", "samples", "config")]
    assert order == sorted(order)
    # metrics: value ± stderr, CI, arrows, NaN highlighted, decorations folded in
    assert "55 <span class=\"muted\">±</span> 3.1" in body
    assert "[45, 57]" in body
    assert "↑" in body and "↓" in body
    assert '<span class="nan">NaN</span>' in body
    assert "winrate/win_rate_pct_stderr" not in body
    # data
    assert "chosen_equals_rejected" in body and ">12<" in body
    # samples: judge labels, ratio, sort note
    assert "policy wins" in body and "reference wins" in body and "tie" in body
    assert "most length-inflated first" in body
    # errors shown
    assert "RuntimeError: boom" in body
    # config as YAML
    assert "embedded:tiny" in body and "beta: 0.1" in body


def test_samples_sorted_most_inflated_first(tmp_path: Path) -> None:
    html = _without_plotly_lib(_render(tmp_path, full_result()))
    table = html[html.index('id="samples-table"'):]
    ratios = re.findall(r'<td class="num ratio[^"]*">(.*?)</td>', table)
    assert len(ratios) == 7
    nums = [float(r.lstrip("×")) for r in ratios[:-1]]
    assert ratios[0] == "×1.50"
    assert nums == sorted(nums, reverse=True)
    assert "—" in ratios[-1]  # the sample without lengths is last
    assert table.index("Explain topic 5.") < table.index("Explain topic 0.")


def test_failed_checks_listed_first(tmp_path: Path) -> None:
    html = _without_plotly_lib(_render(tmp_path, full_result()))
    passed = re.findall(r'<tr class="check[^"]*" data-passed="(\w+)"', html)
    assert passed == ["false", "false", "true", "true"]
    rows = re.findall(r'<tr class="check ([^"]*)"', html)
    assert rows[0].strip() == "failed" and rows[1].strip() == "failed"
    assert html.index("lc_beats_reference") < html.index("no_regression") < html.index("kl_bounded")


@pytest.mark.parametrize("result", [
    {},
    None,
    {k: None for k in full_result()},
    {"experiment": "x", "metrics": {"a_stderr": 1.0, "b": "text", "c": None, "d": [1, 2]},
     "checks": [None, {"passed": "maybe"}], "samples": [None, {"verdict": "weird", "policy_tokens": 3,
                                                             "reference_tokens": 0}],
     "training": {"history": [None, {"step": "s", "loss": "x"}]}, "data": {"dropped": 3},
     "errors": "oops", "config": "raw: yaml", "metric_specs": {"b": None}, "verdict": "promote"},
    {"checks": [{"name": "a", "passed": True}, {"name": "b", "passed": True}], "verdict": "PROMOTE",
     "samples": [{"prompt": [{"role": "user", "content": "hi"}], "policy_tokens": float("nan"),
                  "reference_tokens": 4, "verdict": float("nan")}],
     "config": {"path": Path("/x"), "t": (1, 2)}},
])
def test_mostly_empty_results_render(tmp_path: Path, result) -> None:
    html = _render(tmp_path, result)
    assert html.rstrip().endswith("</html>")
    assert "—" in html


def test_promote_header(tmp_path: Path) -> None:
    html = _render(tmp_path, {"verdict": "PROMOTE", "checks": [{"name": "a", "passed": True},
                                                               {"name": "b", "passed": True}]})
    assert 'class="badge promote"' in html
    assert "all 2 checks passed" in html
    assert 'id="plotly-js"' not in html  # no figures, no 4 MB library


def test_why_names_optional_failure_without_blaming_it(tmp_path: Path) -> None:
    html = _render(tmp_path, {"verdict": "PROMOTE", "checks": [
        {"name": "a", "passed": True, "required": True},
        {"name": "style", "passed": False, "required": False, "reason": "too long"}]})
    assert "all 1 required checks passed; optional style: too long" in html


def test_untrusted_text_is_escaped(tmp_path: Path) -> None:
    html = _render(tmp_path, full_result(EVIL))
    body = _without_plotly_lib(html)
    assert "<script>alert" not in body
    assert "<img" not in body
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in body
    assert "&lt;img src=x onerror=alert(1)&gt;" in body
    # every place it was injected: name, prompt/answers, config, reason, error, description
    assert body.count("&lt;script&gt;alert(1)&lt;/script&gt;") >= 3 * 6 + 5


def test_no_external_resources(tmp_path: Path) -> None:
    html = _render(tmp_path, full_result(EVIL))
    body = _without_plotly_lib(html)
    attrs = re.findall(r"""\b(?:src|href)\s*=\s*["']?\s*([^"'\s>]+)""", body, re.I)
    external = [a for a in attrs if re.match(r"(?:https?:)?//", a, re.I)]
    assert external == []
    assert "<link" not in body.lower()
    assert "@import" not in body and "url(" not in body
    # the only <script src=...> is none at all: plotly is inline
    assert not re.search(r"<script[^>]*\bsrc\s*=", html, re.I)


def test_atomic_write_leaves_no_temp(tmp_path: Path) -> None:
    out = tmp_path / "sub" / "page.html"
    render_experiment_report(full_result(), out)
    assert sorted(p.name for p in out.parent.iterdir()) == ["page.html"]
    assert out.read_text(encoding="utf-8").rstrip().endswith("</html>")


def test_failed_write_keeps_old_file_and_removes_temp(tmp_path: Path, monkeypatch) -> None:
    out = tmp_path / "page.html"
    out.write_text("old", encoding="utf-8")

    def boom(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(atomic_io.os, "replace", boom)  # the one atomic writer, harness.atomic_io
    with pytest.raises(OSError):
        render_experiment_report({}, out)
    assert out.read_text(encoding="utf-8") == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["page.html"]


def test_environment_autoescapes_strings() -> None:
    env = common.template_env()
    assert env.autoescape is True
    assert env.from_string("{{ x }}").render(x=SCRIPT) == "&lt;script&gt;alert(1)&lt;/script&gt;"


def test_value_formatting() -> None:
    assert rx.fmt(None).text == "—"
    assert rx.fmt(float("nan")).nan and rx.fmt(float("nan")).text == "NaN"
    assert rx.fmt(55.0).text == "55"
    assert rx.fmt(0.123456).text == "0.1235"
    assert rx.fmt(3).text == "3"
    assert rx.fmt(True).text == "true"
    assert rx.fmt(math.inf).text == "∞"
    assert rx._verdict_label(2.0)[0] == "policy wins"
    assert rx._verdict_label(1)[0] == "reference wins"
    assert rx._verdict_label(1.5)[0] == "tie"



def test_key_numbers_answer_is_the_win_real(tmp_path: Path) -> None:
    result = full_result()
    result["metrics"] |= {"winrate/raw_minus_lc_pct": 3.8, "length/ratio_tokens": 1.62, "kl/seq_kl_k3": 0.5,
                          "domain_arith_mc/acc_delta": -0.1, "domain_arith_mc/acc_delta_pvalue": 0.01}
    body = _without_plotly_lib(_render(tmp_path, result))
    summary = body[body.index('id="summary"'):body.index('id="checks"')]
    assert 'id="card-lc"' in summary and "51.2%" in summary and "95% CI [45, 57]" in summary
    assert 'class="card bad" id="card-length"' in summary and "×1.62" in summary
    assert 'class="card bad" id="card-domain-arith_mc"' in summary and "(significant)" in summary
    assert "includes 50: not distinguishable from the reference" in summary
    assert "the raw win is not a length effect" in summary
    # the full metrics table is one click away, not in the way
    assert '<details id="metrics-details">' in body


def test_list_values_in_data_are_listed(tmp_path: Path) -> None:
    result = full_result()
    result["data"]["warnings"] = ["first <b>warning</b>", "second"]
    body = _without_plotly_lib(_render(tmp_path, result))
    assert "<li>first &lt;b&gt;warning&lt;/b&gt;</li>" in body and "<li>second</li>" in body
