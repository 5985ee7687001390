"""Rebuild report inputs from what MLflow holds, and render them (``harness report``).

A cell run holds: metrics (evals; ``train/*`` history by step; ``data/*``; ``reference/*``),
params (the flattened config, ``data.stats.*``, ``trl.*``), tags (``harness.cell``,
``harness.verdict``, ``harness.status``, ``harness.error``) and artifacts (``config.json``,
``gate_decision.json`` and ``gate_decision_regated.json``, ``generations.jsonl`` (with the champion's
answers when the run was judged head to head, tags ``harness.vs_champion.*``), ``eval_errors.json``,
``metric_texts.json`` (the evals' text values, e.g. why LC is missing), ``sequential.json``, ``gate_plan.json``).
``load_cell_result`` turns that back into the cell page's document (reports.documents.CellDocument,
through the same ``cell_document`` the pipeline's live page goes through); runs recorded before
``config.json``/``eval_errors.json`` existed fall back to the params.

A sweep is a parent run tagged ``harness.sweep`` whose cells are child runs (tag
``mlflow.parentRunId``). ``load_sweep_result`` builds its ``SweepDocument``. An iterative chain is a
parent run tagged ``harness.role=iterative`` whose rounds are child runs; ``load_iterative_result``
builds its ``IterativeDocument`` from their tags and metrics.
The champion is, in order: the parent's ``harness.champion_run_id`` or ``harness.champion_cell``
tag; the registry's champion alias when it points at one of the cells; the cell promoted last.

All MLflow access goes through ``harness.tracking.Tracker`` (its client); nothing here imports mlflow.
"""
from __future__ import annotations

import ast
import json
import math
import re
import tempfile
from pathlib import Path
from typing import Any

from evals.metrics import measurements
from reports.documents import (
    CellDocument,
    IterativeDocument,
    SweepDocument,
    cell_document,
    iterative_document,
    round_document,
    sweep_document,
)

__all__ = ["load_cell_result", "load_sweep_result", "load_iterative_result", "is_sweep_run", "render_from_mlflow",
           "safe_name"]

_DECISIONS = ("gate_decision_regated.json", "gate_decision.json")  # the latest decision first
_RUN_ID = re.compile(r"^[0-9A-Za-z_-]{1,64}$")


def safe_name(name: Any, default: str = "unnamed") -> str:
    """A single, harmless path component for a cell or sweep name."""
    s = re.sub(r"[^A-Za-z0-9._=+-]", "_", str(name or ""))[:120].strip(".")
    return s or default


# --------------------------------------------------------------------------- artifacts


def _artifact_names(tracker, run_id: str) -> set[str]:
    try:
        return {Path(a.path).name for a in tracker.list_artifacts(run_id)}
    except Exception:
        return set()


def _artifact_text(tracker, run_id: str, name: str, names: set[str]) -> str | None:
    if name not in names:
        return None
    with tempfile.TemporaryDirectory(prefix="harness-report-") as tmp:
        try:
            local = tracker.download_artifacts(run_id, name, tmp)
            return Path(local).read_text(encoding="utf-8")
        except Exception:
            return None


def _artifact_json(tracker, run_id: str, name: str, names: set[str]) -> Any:
    text = _artifact_text(tracker, run_id, name, names)
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return None


def _jsonl(text: str | None) -> list[dict]:
    rows = []
    for line in (text or "").splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict):
            rows.append(row)
    return rows


# --------------------------------------------------------------------------- params


def _param_value(text: str) -> Any:
    """Params are str(value): get the value back where it is a Python/JSON literal."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        pass
    if text in ("true", "false", "null"):
        return json.loads(text)
    return text


def _unflatten(flat: dict[str, Any]) -> dict:
    tree: dict = {}
    for dotted, value in sorted(flat.items()):
        node = tree
        *parents, leaf = dotted.split(".")
        ok = True
        for part in parents:
            nxt = node.setdefault(part, {})
            if not isinstance(nxt, dict):
                ok = False
                break
            node = nxt
        if ok and not isinstance(node.get(leaf), dict):
            node[leaf] = value
    return tree


def _history(tracker, run_id: str, metric_keys: list[str]) -> list[dict]:
    steps: dict[int, dict] = {}
    for key in metric_keys:
        if not key.startswith("train/") or key == "train/seconds":
            continue
        try:
            points = tracker.get_metric_history(run_id, key)
        except Exception:
            continue
        for p in points:
            row = steps.setdefault(int(p.step), {"step": int(p.step)})
            row[key.removeprefix("train/")] = p.value
    return [steps[s] for s in sorted(steps)]


# --------------------------------------------------------------------------- cells


def load_cell_result(tracker, run_id: str) -> CellDocument:
    """The cell page's document for one run, rebuilt from MLflow."""
    run = tracker.get_run(run_id)
    tags, params, all_metrics = dict(run.data.tags), dict(run.data.params), dict(run.data.metrics)
    names = _artifact_names(tracker, run_id)
    try:
        experiment = tracker.experiment_name(run.info.experiment_id)
    except Exception:
        experiment = None

    config = _artifact_json(tracker, run_id, "config.json", names)
    if not isinstance(config, dict):
        config = _unflatten({k: _param_value(v) for k, v in params.items()
                             if not k.startswith(("data.stats.", "trl."))})
    decision = next((d for d in (_artifact_json(tracker, run_id, n, names) for n in _DECISIONS)
                     if isinstance(d, dict)), {})
    errors = _artifact_json(tracker, run_id, "eval_errors.json", names)
    errors = dict(errors) if isinstance(errors, dict) else {}
    if tags.get("harness.error"):
        errors.setdefault("run", tags["harness.error"])

    data = _unflatten({k.removeprefix("data.stats."): _param_value(v) for k, v in params.items()
                       if k.startswith("data.stats.")})
    if "pairs" not in data and "data/pairs" in all_metrics:
        data["pairs"] = int(all_metrics["data/pairs"])
    dropped = {k.removeprefix("data/dropped_"): int(v) for k, v in all_metrics.items()
               if k.startswith("data/dropped_") and math.isfinite(v)}
    if (data or dropped) and not data.get("dropped"):  # no drops log no param: {} as the pipeline has it
        data["dropped"] = dropped

    training: dict[str, Any] = {"history": _history(tracker, run_id, sorted(all_metrics))}
    if "train/seconds" in all_metrics:
        training["seconds"] = all_metrics["train/seconds"]

    verdict = tags.get("harness.verdict") or decision.get("verdict")
    return cell_document(
        experiment=experiment or config.get("name"),
        run_id=run_id,
        cell=tags.get("harness.cell") or run.info.run_name or run_id,
        verdict=verdict,
        config=config,
        metrics=_eval_metrics(all_metrics, _artifact_json(tracker, run_id, "metric_texts.json", names)),
        checks=decision.get("checks") or [],
        training=training,
        samples=_jsonl(_artifact_text(tracker, run_id, "generations.jsonl", names)),
        data=data,
        errors=errors,
        judge_calibration=_judge_calibration_info(tags),
        sequential=_artifact_json(tracker, run_id, "sequential.json", names) or {},
        gate_plan=_artifact_json(tracker, run_id, "gate_plan.json", names),
        # the champion the head-to-head judged against (evals.vs_champion tags it); its answers are in the samples
        champion={"version": tags["harness.vs_champion.version"], "run_id": tags.get("harness.vs_champion.run_id")}
        if tags.get("harness.vs_champion.version") else None,
    )


def _eval_metrics(numbers: dict[str, float], texts: Any) -> dict[str, Any]:
    """The evals' measurements, with their text values (`<metric>_missing_reason`: MLflow metrics hold
    numbers only, so the pipeline logs those as metric_texts.json)."""
    metrics: dict[str, Any] = measurements(numbers)  # data/ counters are shown in the Data section
    if isinstance(texts, dict):
        metrics |= {str(k): v for k, v in texts.items() if isinstance(v, str) and k not in metrics}
    return metrics


def _judge_calibration_info(tags: dict) -> dict:
    from evals.judge_calibration import calibration_info_from_tags

    return calibration_info_from_tags(tags)


# --------------------------------------------------------------------------- sweeps


def _children(tracker, run_id: str) -> list:
    if not _RUN_ID.match(run_id):
        return []
    try:
        experiment_ids = tracker.experiment_ids()
    except Exception:
        experiment_ids = [tracker.get_run(run_id).info.experiment_id]
    runs = tracker.search_runs(experiment_ids, filter_string=f"tags.mlflow.parentRunId = '{run_id}'",
                                      max_results=5000)
    return sorted(runs, key=lambda r: (r.info.start_time or 0, r.info.run_id))


def is_sweep_run(tracker, run_id: str) -> bool:
    run = tracker.get_run(run_id)
    return "harness.sweep" in run.data.tags or bool(_children(tracker, run_id))


def _champion(tracker, parent_tags: dict, cells: list[CellDocument], promoted: dict[str, int]) -> dict | None:
    """`promoted`: run id -> the registry version each promoted cell got."""
    by_run = {c["run_id"]: c for c in cells}
    by_cell = {c["cell"]: c for c in cells}
    rid = parent_tags.get("harness.champion_run_id")
    if rid:
        c = by_run.get(rid)
        return {"cell": c["cell"] if c else parent_tags.get("harness.champion_cell"), "run_id": rid}
    cell = parent_tags.get("harness.champion_cell")
    if cell:
        c = by_cell.get(cell)
        return {"cell": cell, "run_id": c["run_id"] if c else None}
    # the registry's champion alias, when it points at one of these cells
    for c in cells:
        registry = c["config"].get("registry") if isinstance(c.get("config"), dict) else None
        if isinstance(registry, dict) and registry.get("model_name"):
            try:
                found = tracker.champion(str(registry["model_name"]), str(registry.get("alias") or "champion"))
            except Exception:
                found = None
            if found and found[1] in by_run:
                return {"cell": by_run[found[1]]["cell"], "run_id": found[1]}
            break
    if promoted:
        best = max((c for c in cells if c["run_id"] in promoted), key=lambda c: promoted[c["run_id"]])
        return {"cell": best["cell"], "run_id": best["run_id"]}
    return None


def load_sweep_result(tracker, run_id: str) -> SweepDocument:
    """The sweep page's document for a parent run and its child (cell) runs."""
    parent = tracker.get_run(run_id)
    tags = dict(parent.data.tags)
    cells, promoted = [], {}
    for child in _children(tracker, run_id):
        cells.append(load_cell_result(tracker, child.info.run_id))
        version = child.data.tags.get("harness.model_version")
        if child.data.tags.get("harness.promoted") == "true" and version and version.isdigit():
            promoted[child.info.run_id] = int(version)
    return sweep_document(
        sweep=tags.get("harness.sweep") or parent.info.run_name or run_id,
        sweep_key=tags.get("harness.sweep_key"),
        run_id=run_id,
        cells=cells,
        champion=_champion(tracker, tags, cells, promoted),
        pareto=None,  # computed by the report from the cells' LC win rate and KL
        # the sweep's one-champion selection (harness.sweep records it on the parent run)
        selection={"rule": tags.get("harness.select.rule"), "winner_cell": tags.get("harness.select.winner_cell"),
                   "promotion": tags.get("harness.select.promotion"),
                   "passed": [c for c in (tags.get("harness.select.passed_not_selected") or "").split(",")
                              if c not in ("", "-")]} if tags.get("harness.select.rule") else None,
    )


# --------------------------------------------------------------------------- iterative chains


def _count(value: float | None) -> int | None:
    return None if value is None else int(value)


def load_iterative_result(tracker, run_id: str, children: list | None = None) -> IterativeDocument:
    """The iterative page's document from the parent run's tags and its round runs' tags and metrics
    (the round pages are not linked: `harness report ROUND_RUN_ID` renders each)."""
    parent = tracker.get_run(run_id)
    tags = parent.data.tags
    children = _children(tracker, run_id) if children is None else children
    rounds = []
    for child in sorted(children, key=lambda c: int(c.data.tags.get("harness.round", "0"))):
        t = child.data.tags
        reason = t.get("harness.block_reason", "-")
        rounds.append(round_document(
            index=int(t.get("harness.round", "0")), run_id=child.info.run_id, verdict=t.get("harness.verdict", "FAILED"),
            reference_round=int(t.get("harness.reference_round", "0")),
            metrics=measurements(child.data.metrics),
            pairs=_count(child.data.metrics.get("data/pairs")), first_failure=None if reason == "-" else reason,
            report=""))
    promoted = tags.get("harness.promoted_round", "-")
    stop_reason = tags.get("harness.stop_reason", "-")
    return iterative_document(
        title=tracker.experiment_name(parent.info.experiment_id), cell=tags.get("harness.cell", run_id), run_id=run_id,
        verdict=tags.get("harness.verdict", "FAILED"), iterations=int(tags.get("harness.iterations", len(rounds))),
        rounds=rounds, promoted_round=int(promoted) if promoted.isdigit() else None,
        stop_reason=None if stop_reason == "-" else stop_reason)


# --------------------------------------------------------------------------- render


def render_from_mlflow(tracker, run_id: str, out: Path | None = None, *, log_artifact: bool = True) -> Path:
    """Render the page for ``run_id`` (a sweep's parent run or a cell run) and return its path.

    Cell: ``out`` or ``<output_dir>/cells/<cell>/report.html``. Sweep: ``out`` or
    ``<output_dir>/sweeps/<sweep>-<sweep_key>/report.html`` (beside ``harness sweep``'s summary),
    with each cell's page regenerated in its standard place (``<output_dir>/cells/<cell>/report.html``)
    or, with ``out``, in ``<out folder>/<out stem>_cells/<cell>.html``. The page requested is
    logged to the run as an artifact.
    """
    from reports.experiment import render_experiment_report
    from reports.sweep import render_sweep_report

    base = Path(tracker.output_dir)
    if tracker.get_run(run_id).data.tags.get("harness.role") == "iterative":
        from reports.iterative import render_iterative_page

        chain = load_iterative_result(tracker, run_id)
        path = Path(out) if out else base / "iterative" / safe_name(chain["cell"], run_id) / "report.html"
        render_iterative_page(chain, path)
    elif is_sweep_run(tracker, run_id):
        sweep = load_sweep_result(tracker, run_id)
        folder = f"{sweep['sweep']}-{sweep['sweep_key']}" if sweep.get("sweep_key") else sweep["sweep"]
        path = Path(out) if out else base / "sweeps" / safe_name(folder, "sweep") / "report.html"
        pages: dict[str, str] = {}
        for cell in sweep["cells"]:
            name = safe_name(cell["cell"], cell["run_id"])
            page = (path.parent / f"{path.stem}_cells" / f"{name}.html") if out else (base / "cells" / name / "report.html")
            pages[str(cell["cell"])] = str(render_experiment_report(cell, page))
        render_sweep_report(sweep, path, pages)
    else:
        result = load_cell_result(tracker, run_id)
        path = Path(out) if out else base / "cells" / safe_name(result["cell"], run_id) / "report.html"
        render_experiment_report(result, path)
    if log_artifact:
        tracker.attach(run_id)
        tracker.log_artifact(path)
    return path
