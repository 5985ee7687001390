"""Sweeps: a grid of cells that shares every piece of work that does not depend on the cell.

Shared by content-hash caches on disk (so any runner, any process, any rerun finds them):
built data, reference generations, reference log-probs of the training data (DPO family),
reference domain evals and reference held-out log-probs. Resuming is checked against
MLflow: a cell with a FINISHED child run under the sweep is never run again.
"""
from __future__ import annotations

import hashlib
import itertools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from harness.config import (ExperimentConfig, _format_loc, _set_dotted, parse_overrides, read_yaml_mapping,
                            validate_config)
from harness.errors import ConfigError


class GridEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")
    variant: str
    beta: list[float] = Field(default_factory=list, description="betas to try; empty: the variant's default")
    variant_params: dict[str, list[Any]] = Field(default_factory=dict, description="each parameter's values to try")


class RunnerConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: Literal["local", "ray"] = "local"
    address: str | None = None
    cpus_per_cell: float = 1
    gpus_per_cell: float = 0
    local_cpus: int = Field(2, gt=0, description="CPUs of the local Ray cluster started when no address is given")


class SweepConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    base: dict[str, Any] = Field(description="experiment settings shared by every cell")
    grid: list[GridEntry]
    seeds: list[int] = Field(default_factory=lambda: [0])
    runner: RunnerConfig = Field(default_factory=RunnerConfig)

    def sweep_key(self) -> str:
        payload = json.dumps(self.model_dump(mode="json", exclude={"runner"}), sort_keys=True, default=str)
        return hashlib.sha256(payload.encode()).hexdigest()[:12]


def load_sweep(path: str | Path, overrides: list[str] | None = None) -> tuple[SweepConfig, list[ExperimentConfig]]:
    path = Path(path)
    raw = read_yaml_mapping(path, kind="sweep")
    for key, value in parse_overrides(overrides or []):
        # `--set output_dir=...` and other experiment keys apply to the shared base
        target = key if key.split(".")[0] in ("name", "base", "grid", "seeds", "runner") else f"base.{key}"
        _set_dotted(raw, target, value)
    try:
        sweep = SweepConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(f"{path}: {len(exc.errors())} problem(s) in the sweep",
                          [f"{_format_loc(e['loc'])}: {e['msg']}" for e in exc.errors()]) from None
    cells = expand(sweep, source=str(path))
    if any(c.iterations > 1 for c in cells):
        raise ConfigError(f"{path}: iterations > 1 runs through `harness run` (one experiment, its rounds as child "
                          "runs); a sweep's cells are single passes")
    return sweep, cells


def expand(sweep: SweepConfig, source: str = "<sweep>") -> list[ExperimentConfig]:
    """Every (variant, beta, params, seed) cell as a validated experiment; all problems reported at once."""
    cells, problems = [], []
    for i, entry in enumerate(sweep.grid):
        names = list(entry.variant_params)
        combos = list(itertools.product(*(entry.variant_params[n] for n in names))) or [()]
        for beta in entry.beta or [None]:
            for combo in combos:
                for seed in sweep.seeds:
                    raw = json.loads(json.dumps(sweep.base))
                    raw.update({"name": sweep.name, "variant": entry.variant, "seed": seed,
                                "variant_params": {**raw.get("variant_params", {}), **dict(zip(names, combo))}})
                    if beta is not None:
                        raw["beta"] = beta
                    try:
                        cells.append(validate_config(raw, source=f"{source} grid.{i}"))
                    except ConfigError as exc:
                        problems += [f"grid.{i} ({entry.variant}, beta={beta}): {p}" for p in exc.problems] or [str(exc)]
    if problems:
        raise ConfigError(f"{source}: {len(problems)} problem(s) in the sweep's cells", sorted(set(problems)))
    keys = [c.cell_key() for c in cells]
    dupes = {k for k in keys if keys.count(k) > 1}
    if dupes:
        raise ConfigError(f"{source}: the grid produces the same cell twice: {', '.join(sorted(dupes))}")
    return cells


# ---------------------------------------------------------------------------- bookkeeping


@dataclass
class CellOutcome:
    cell: str
    variant: str
    beta: float
    seed: int
    run_id: str | None
    verdict: str  # PROMOTE | BLOCK | FAILED
    metrics: dict[str, float]
    first_failure: str | None
    reused: bool  # finished in an earlier invocation: not recomputed
    report: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"cell": self.cell, "variant": self.variant, "beta": self.beta, "seed": self.seed,
                "run_id": self.run_id, "verdict": self.verdict, "metrics": self.metrics,
                "first_failed_check": self.first_failure, "reused": self.reused, "report": self.report}


def _finished_children(tracker, sweep_key: str) -> dict[str, Any]:
    runs = tracker.client.search_runs([tracker.experiment_id],
                                      filter_string=f"tags.`harness.sweep_key` = '{sweep_key}'")
    finished: dict[str, Any] = {}
    for run in runs:
        cell = run.data.tags.get("harness.cell")
        if run.info.status == "FINISHED" and cell:
            finished.setdefault(cell, run)
        elif run.info.status == "RUNNING" and run.data.tags.get("harness.role") == "cell":
            # killed before it could end: never trusted, marked so the UI does not show it running forever
            tracker.client.set_terminated(run.info.run_id, "KILLED")
    return finished


def _parent_run(tracker, sweep: SweepConfig, sweep_key: str) -> str:
    runs = tracker.client.search_runs([tracker.experiment_id], filter_string=(
        f"tags.`harness.sweep_key` = '{sweep_key}' and tags.`harness.role` = 'sweep'"))
    if runs:
        tracker.run_id = runs[0].info.run_id
        return tracker.run_id
    return tracker.start_run(sweep.name, tags={"harness.sweep": sweep.name, "harness.sweep_key": sweep_key,
                                               "harness.role": "sweep"})


def _outcome_from_run(config: ExperimentConfig, run) -> CellOutcome:
    metrics = {k: v for k, v in run.data.metrics.items() if not k.startswith(("train/", "reference/"))}
    reason = run.data.tags.get("harness.block_reason")
    return CellOutcome(cell=config.cell_key(), variant=config.variant, beta=float(config.beta), seed=config.seed,
                       run_id=run.info.run_id, verdict=run.data.tags.get("harness.verdict", "FAILED"), metrics=metrics,
                       first_failure=None if reason in (None, "-") else reason, reused=True)


def run_cell(config_json: dict, tags: dict[str, str]) -> dict[str, Any]:
    """One cell, in this process or a Ray worker: everything it needs travels as plain data."""
    from harness.experiment import run_experiment

    config = ExperimentConfig.model_validate(config_json)
    try:
        result = run_experiment(config, extra_tags=tags)
    except Exception as exc:  # the run is already recorded FAILED in MLflow by run_experiment
        return {"verdict": "FAILED", "run_id": None, "metrics": {}, "first_failure": f"{type(exc).__name__}: {exc}",
                "report": None}
    return {"verdict": result.verdict, "run_id": result.run_id, "metrics": result.metrics,
            "first_failure": result.decision.first_failure, "report": result.report}


# ---------------------------------------------------------------------------- runners


def _run_local(pending: list[ExperimentConfig], tags: dict[str, str], progress) -> list[dict]:
    out = []
    for i, config in enumerate(pending):
        progress(f"cell {i + 1}/{len(pending)}: {config.cell_key()}")
        out.append(run_cell(config.model_dump(mode="json"), tags))
    return out


def _run_ray(pending: list[ExperimentConfig], tags: dict[str, str], runner: RunnerConfig, progress) -> list[dict]:
    try:
        import ray
    except ImportError:
        raise ConfigError("runner: ray is not installed (pip install -e '.[ray]')") from None
    started_here = not ray.is_initialized()
    if started_here:
        # an existing cluster when an address is given; otherwise a local one (no dashboard: fewer ports)
        ray.init(address=runner.address, include_dashboard=False, log_to_driver=False,
                 **({} if runner.address else {"num_cpus": runner.local_cpus}))
    try:
        task = ray.remote(num_cpus=runner.cpus_per_cell, num_gpus=runner.gpus_per_cell, max_retries=0)(run_cell)
        refs = [task.remote(c.model_dump(mode="json"), tags) for c in pending]
        results: list[dict] = [None] * len(refs)  # type: ignore[list-item]
        index = {ref: i for i, ref in enumerate(refs)}
        remaining = list(refs)
        while remaining:
            done, remaining = ray.wait(remaining, num_returns=1)
            i = index[done[0]]
            results[i] = ray.get(done[0])
            progress(f"cell {pending[i].cell_key()} done: {results[i]['verdict']}")
        return results
    finally:
        if started_here:
            ray.shutdown()


# ---------------------------------------------------------------------------- the sweep


def pareto_front(rows: list[CellOutcome]) -> set[str]:
    """Cells no other cell beats on both LC win rate (higher) and KL (lower)."""
    points = [(r.cell, r.metrics.get("winrate/lc_win_rate_pct"), r.metrics.get("kl/seq_kl_k3")) for r in rows]
    points = [(c, lc, kl) for c, lc, kl in points if lc is not None and kl is not None]
    front = set()
    for c, lc, kl in points:
        if not any((lc2 >= lc and kl2 <= kl) and (lc2 > lc or kl2 < kl) for _, lc2, kl2 in points):
            front.add(c)
    return front


def summary_frame(rows: list[CellOutcome]):
    import pandas as pd

    front = pareto_front(rows)
    m = lambda r, k: r.metrics.get(k)  # noqa: E731
    return pd.DataFrame([{
        "cell": r.cell, "variant": r.variant, "beta": r.beta, "seed": r.seed, "run_id": r.run_id,
        "verdict": r.verdict, "lc_win_rate_pct": m(r, "winrate/lc_win_rate_pct"),
        "lc_win_rate_ci_low": m(r, "winrate/lc_win_rate_pct_ci_low"), "win_rate_pct": m(r, "winrate/win_rate_pct"),
        "kl_seq_k3": m(r, "kl/seq_kl_k3"), "kl_seq_k3_stderr": m(r, "kl/seq_kl_k3_stderr"),
        "length_ratio_tokens": m(r, "length/ratio_tokens"), "chosen_logp_delta": m(r, "chosen_logp/chosen_delta"),
        "pareto_lc_vs_kl": r.cell in front, "first_failed_check": r.first_failure, "reused": r.reused,
    } for r in rows])


@dataclass
class SweepResult:
    name: str
    sweep_key: str
    parent_run_id: str
    cells: list[CellOutcome]
    summary_csv: Path
    report: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"sweep": self.name, "sweep_key": self.sweep_key, "parent_run_id": self.parent_run_id,
                "cells": [c.to_json() for c in self.cells], "summary_csv": str(self.summary_csv),
                "report": self.report}


def run_sweep(sweep: SweepConfig, cells: list[ExperimentConfig], *, runner: str | None = None,
              address: str | None = None, progress=print) -> SweepResult:
    from harness.experiment import check_output_dir
    from harness.tracking import Tracker

    output_dir = cells[0].output_dir
    check_output_dir(output_dir)
    runner_cfg = sweep.runner.model_copy(update={k: v for k, v in {"kind": runner, "address": address}.items() if v})
    key = sweep.sweep_key()
    tracker = Tracker(output_dir, sweep.name, tracking_uri=cells[0].registry.tracking_uri)
    parent = _parent_run(tracker, sweep, key)
    finished = _finished_children(tracker, key)
    pending = [c for c in cells if c.cell_key() not in finished]
    progress(f"sweep {sweep.name}: {len(cells)} cells, {len(cells) - len(pending)} already finished, "
             f"{len(pending)} to run ({runner_cfg.kind})")
    tags = {"mlflow.parentRunId": parent, "harness.sweep_key": key, "harness.role": "cell"}
    if runner_cfg.kind == "ray":
        fresh = _run_ray(pending, tags, runner_cfg, progress)
    else:
        fresh = _run_local(pending, tags, progress)
    by_cell = dict(zip([c.cell_key() for c in pending], fresh))
    rows = []
    for config in cells:
        k = config.cell_key()
        if k in finished:
            rows.append(_outcome_from_run(config, finished[k]))
        else:
            r = by_cell[k]
            rows.append(CellOutcome(cell=k, variant=config.variant, beta=float(config.beta), seed=config.seed,
                                    run_id=r["run_id"], verdict=r["verdict"], metrics=r["metrics"],
                                    first_failure=r["first_failure"], reused=False, report=r["report"]))
    frame = summary_frame(rows)
    out = output_dir / "sweeps" / f"{sweep.name}-{key}"
    out.mkdir(parents=True, exist_ok=True)
    from harness.atomic_io import write_bytes_atomic, write_text_atomic

    csv_path = write_text_atomic(out / "summary.csv", frame.to_csv(index=False))
    write_bytes_atomic(out / "summary.parquet", frame.to_parquet(index=False))
    tracker.run_id = parent
    tracker.log_artifact(csv_path)
    tracker.log_artifact(out / "summary.parquet")
    verdicts = [r.verdict for r in rows]
    tracker.log_metrics({"sweep/cells": len(rows), "sweep/promoted": verdicts.count("PROMOTE"),
                         "sweep/failed": verdicts.count("FAILED")})
    registry = cells[0].registry
    champion = tracker.champion(registry.model_name, registry.alias)
    if champion and champion[1] in {r.run_id for r in rows}:
        tracker.set_tags({"harness.champion_run_id": champion[1]})
    done = all(v in ("PROMOTE", "BLOCK") for v in verdicts)
    tracker.set_tags({"harness.status": "finished" if done else "incomplete"})
    from harness.experiment import report_or_recorded_failure

    def render() -> Path:  # attaches the tracker to `parent` itself: a failure is tagged there too
        from reports.from_mlflow import render_from_mlflow

        return render_from_mlflow(tracker, parent)

    report = report_or_recorded_failure(tracker, render, progress) or None
    tracker.run_id = parent
    tracker.end_run("FINISHED" if done else "FAILED")
    return SweepResult(sweep.name, key, parent, rows, csv_path, report)
