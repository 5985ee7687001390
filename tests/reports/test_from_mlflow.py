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
        # every finite metric comes back exactly (NaN and the texts too: the document test below)
        assert _finite(cell["metrics"]) == _finite(result.metrics)
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



def _json(value):
    return json.loads(json.dumps(value))


def _same_number_or_text(a, b) -> bool:
    both_nan = isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b)
    return both_nan or a == b


def test_a_cell_page_rebuilt_from_mlflow_is_the_document_the_pipeline_rendered(recorded_sweep, tracker_for) -> None:
    """`harness report RUN` and the pipeline build the cell page from one model (reports.documents): the
    same keys and the same values, so a key or a value one side forgets fails here."""
    from reports.documents import CellDocument

    tracker = tracker_for()
    assert set(recorded_sweep.live_documents) == {r.run_id for r in recorded_sweep.results}
    for result in recorded_sweep.results:
        live = recorded_sweep.live_documents[result.run_id]
        rebuilt = load_cell_result(tracker, result.run_id)
        assert set(live) == set(rebuilt) == CellDocument.__required_keys__
        # metrics: NaN is logged and read back as NaN; the texts (why LC is missing) come from metric_texts.json
        assert live["metrics"].keys() == rebuilt["metrics"].keys()
        assert any(isinstance(v, str) for v in live["metrics"].values())  # the tiny run's LC is not identified
        assert all(_same_number_or_text(v, rebuilt["metrics"][k]) for k, v in live["metrics"].items())
        assert {k: _json(v) for k, v in live.items() if k != "metrics"} == \
            {k: _json(v) for k, v in rebuilt.items() if k != "metrics"}


def _fake_tracker(tmp_path):
    from harness.tracking import Tracker
    from tests.harness.fake_cells import base_config

    config = base_config(tmp_path)
    return Tracker(tmp_path, config.name), config


def test_a_sweep_without_a_named_champion_shows_the_cell_promoted_last(tmp_path) -> None:
    from tests.harness.fake_cells import record_fake_run

    tracker, config = _fake_tracker(tmp_path)
    parent = tracker.start_run("sw", tags={"harness.sweep": "sw", "harness.role": "sweep"})
    tracker.end_run("FINISHED")
    runs = {}
    # no champion tag on the parent and none in the registry: the highest registered version wins, not the
    # first or the last cell
    for cell, version in (("b", "2"), ("a", "5"), ("c", None)):
        tags = {"mlflow.parentRunId": parent} | ({"harness.promoted": "true", "harness.model_version": version}
                                                 if version else {})
        record_fake_run(tracker, config, {"winrate/lc_win_rate_pct": 55.0}, cell=cell, tags=tags)
        runs[cell] = tracker.run_id
        tracker.end_run("FINISHED")
    sweep = load_sweep_result(tracker, parent)
    assert [c["cell"] for c in sweep["cells"]] == ["b", "a", "c"]
    assert sweep["champion"] == {"cell": "a", "run_id": runs["a"]}
    assert all("_promoted_version" not in c for c in sweep["cells"])


def test_an_iterative_chain_rebuilt_from_mlflow(tmp_path) -> None:
    from reports.from_mlflow import load_iterative_result, render_from_mlflow

    tracker, _ = _fake_tracker(tmp_path)
    parent = tracker.start_run("chain", tags={"harness.role": "iterative", "harness.cell": "it", "harness.verdict": "BLOCK",
                                              "harness.promoted_round": "1", "harness.stop_reason": "round 2 blocked",
                                              "harness.iterations": "3"})
    tracker.end_run("FINISHED")
    for k, verdict, lc, reason in ((2, "BLOCK", 41.0, "lc: 41 < 50"), (1, "PROMOTE", 55.0, "-")):  # out of order
        tracker.start_run(f"round{k}", tags={"mlflow.parentRunId": parent, "harness.round": str(k),
                                             "harness.verdict": verdict, "harness.block_reason": reason,
                                             "harness.reference_round": str(k - 1)})
        tracker.log_metrics({"winrate/lc_win_rate_pct": lc, "data/pairs": 10 + k, "train/loss": 0.5,
                             "reference/winrate/lc_win_rate_pct": 50.0})
        if k > 1:  # round 1 measures nothing against the start: its reference is the start
            tracker.log_metrics({"winrate_vs_start/lc_win_rate_pct": lc + 1})
        tracker.end_run("FINISHED")
    chain = load_iterative_result(tracker, parent)
    first, second = chain["rounds"]
    assert (first["index"], first["reference_round"], first["pairs"], first["first_failure"]) == (1, 0, 11, None)
    assert (second["index"], second["reference_round"], second["pairs"]) == (2, 1, 12)
    assert second["first_failure"] == "lc: 41 < 50" and second["verdict"] == "BLOCK"
    # round 1's reference is the start: its "vs start" figure is its "vs prev" one; round 2's is its own
    assert first["metrics"]["winrate_vs_start/lc_win_rate_pct"] == 55.0
    assert second["metrics"]["winrate_vs_start/lc_win_rate_pct"] == 42.0
    assert not any(k.startswith(("train/", "reference/")) for k in first["metrics"])
    assert (chain["cell"], chain["promoted_round"], chain["stop_reason"], chain["iterations"]) == \
        ("it", 1, "round 2 blocked", 3)
    html = render_from_mlflow(tracker, parent, tmp_path / "chain.html", log_artifact=False).read_text(encoding="utf-8")
    assert "Stopped at round 2" in html and "lc: 41 &lt; 50" in html and "nothing past round 1 was promoted" in html
