"""Reports rebuilt from MLflow alone, and `harness report`."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from reports.from_mlflow import _param_value, _unflatten, is_sweep_run, load_cell_result, load_sweep_result, safe_name


def _finite(d: dict) -> dict:
    return {k: v for k, v in d.items() if isinstance(v, (int, float)) and math.isfinite(v)}


def test_cell_result_matches_the_pipeline(recorded_sweep, tracker_for) -> None:
    from harness.recording import redacted_config

    tracker = tracker_for()
    for result, config in zip(recorded_sweep.results, recorded_sweep.configs):
        cell = load_cell_result(tracker, result.run_id)
        assert cell["run_id"] == result.run_id and cell["cell"] == result.cell
        assert cell["experiment"] == recorded_sweep.experiment
        assert cell["verdict"] == result.verdict
        # NaN metrics are not logged to MLflow; every finite one comes back exactly
        assert cell["metrics"] == _finite(result.metrics)
        assert cell["checks"] == json.loads(json.dumps(result.decision.to_dict()["checks"]))
        assert cell["config"] == json.loads(json.dumps(redacted_config(config)))
        assert cell["errors"] == result.errors
        assert len(cell["samples"]) == config.eval.n_prompts
        assert {"prompt", "reference", "policy", "verdict", "policy_tokens"} <= set(cell["samples"][0])
        history = cell["training"]["history"]
        assert history and history[0]["step"] == 1 and "loss" in history[0]
        assert cell["data"]["pairs"] > 0 and "source" in cell["data"]
        assert "winrate/lc_win_rate_pct" in cell["metric_specs"]


def test_sweep_result_from_the_parent_run(recorded_sweep, tracker_for) -> None:
    tracker = tracker_for()
    assert is_sweep_run(tracker, recorded_sweep.parent)
    assert not is_sweep_run(tracker, recorded_sweep.results[0].run_id)
    sweep = load_sweep_result(tracker, recorded_sweep.parent)
    assert sweep["sweep"] == "tiny_sweep" and sweep["run_id"] == recorded_sweep.parent
    assert [c["run_id"] for c in sweep["cells"]] == [r.run_id for r in recorded_sweep.results]
    promoted = [r for r in recorded_sweep.results if r.verdict == "PROMOTE"]
    if promoted:  # the registry's champion alias points at the cell promoted last
        assert sweep["champion"] == {"cell": promoted[-1].cell, "run_id": promoted[-1].run_id}
    else:
        assert sweep["champion"] is None


def test_old_runs_fall_back_to_params() -> None:
    flat = {"model.name": "x", "beta": "0.1", "eval.domain_tasks": "[]", "gate.rules": "[{'min': 50.0, 'max': None}]",
            "trust": "True", "name": "plain text", "a": "1", "a.b": "2"}
    tree = _unflatten({k: _param_value(v) for k, v in flat.items()})
    assert tree["model"] == {"name": "x"} and tree["beta"] == 0.1 and tree["eval"] == {"domain_tasks": []}
    assert tree["gate"]["rules"] == [{"min": 50.0, "max": None}] and tree["trust"] is True
    assert tree["name"] == "plain text" and tree["a"] == 1


@pytest.mark.parametrize("name, expected", [("dpo-b0.1-s0-abc", "dpo-b0.1-s0-abc"), ("../../etc", "_.._etc"),
                                            ("a/b c", "a_b_c"), ("", "unnamed"), ("..", "unnamed")])
def test_safe_name(name, expected) -> None:
    assert safe_name(name) == expected


def test_cli_report_for_a_sweep_and_a_cell(recorded_sweep, tracker_for, tmp_path, capsys) -> None:
    from harness.cli import main

    out_dir = str(recorded_sweep.output_dir)
    assert main(["report", recorded_sweep.parent, "--output-dir", out_dir, "--out", str(tmp_path / "sweep.html")]) == 0
    printed = Path(capsys.readouterr().out.strip())
    assert printed == (tmp_path / "sweep.html").resolve()
    html = printed.read_text(encoding="utf-8")
    assert html.count('class="cell-row') == 2
    for r in recorded_sweep.results:  # each cell's page regenerated beside it, and linked relatively
        assert (tmp_path / "sweep_cells" / f"{r.cell}.html").is_file()
        assert f'href="sweep_cells/{r.cell}.html"' in html
    tracker = tracker_for()
    assert "sweep.html" in {a.path for a in tracker.client.list_artifacts(recorded_sweep.parent)}

    cell = recorded_sweep.results[1]
    assert main(["report", cell.run_id, "--output-dir", out_dir]) == 0
    printed = Path(capsys.readouterr().out.strip())
    assert printed == (recorded_sweep.output_dir / "cells" / cell.cell / "report.html").resolve()
    assert cell.run_id in printed.read_text(encoding="utf-8")


def test_cli_report_unknown_run(recorded_sweep, capsys) -> None:
    from harness.cli import main

    assert main(["report", "0" * 32, "--output-dir", str(recorded_sweep.output_dir)]) == 2
    assert "no run" in capsys.readouterr().err
