"""Sweeps: a grid of cells that shares every piece of work that does not depend on the cell.

Shared by content-hash caches on disk (so any runner, any process, any rerun finds them):
built data, reference generations, reference log-probs of the training data (DPO family),
reference domain evals and reference held-out log-probs. Resuming is checked against
MLflow: a cell with a FINISHED child run under the sweep is never run again.

One champion per sweep (issue 17): cells gate but never move the alias themselves. Each cell's
gate takes a Bonferroni share of the error rate (`gate.family_size` = number of cells), so the
chance that an all-equal sweep has any passing cell is at most the rules' stated level (for "does
anything ship" Bonferroni is Holm's first step). Once every cell finished, the sweep selects the
best passing cell by its `select:` objective and promotes only that one, through the same locked,
champion-re-checking path as `harness promote`; the other passing cells are recorded as
passed-not-selected. The selection is recorded on the parent run, so a resumed sweep promotes once.

One process per sweep: a lock file in the sweep's folder (pid and host inside) is held for the
whole sweep; a second `harness sweep` of the same sweep exits 2 naming the holder; a killed
sweep's lock dies with it (an OS record lock), so a rerun resumes.
"""
from __future__ import annotations

import contextlib
import errno
import hashlib
import itertools
import json
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Literal, Mapping

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from evals.metrics import measurements
from harness.config import ExperimentConfig, format_loc, parse_overrides, read_yaml_mapping, set_dotted, validate_config
from harness.errors import ConfigError, HarnessInputError
from harness.pareto import KL, LC, finite_number, pareto_front
from harness.redaction import scrub_text

SELECT_CONFIDENCE = 0.95  # one-sided level of the bound `select: {statistic: bound}` ranks cells by


def _numbers_not_booleans(v: Any) -> Any:
    """pydantic reads YAML's `true` as 1 in a list of numbers: a grid of `beta: [true]` or `seeds: [yes]` is a
    typo, not a value (the experiment config refuses booleans in number fields the same way)."""
    if isinstance(v, list) and any(isinstance(x, bool) for x in v):
        raise ValueError("a list of numbers is required, not booleans")
    return v


class GridEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    variant: str
    beta: list[float] = Field(default_factory=list, description="betas to try; empty: the variant's default")
    variant_params: dict[str, list[Any]] = Field(default_factory=dict, description="each parameter's values to try")
    _beta_numbers = field_validator("beta", mode="before")(classmethod(lambda cls, v: _numbers_not_booleans(v)))

    @field_validator("variant_params")
    @classmethod
    def _values_to_try(cls, v: dict[str, list[Any]]) -> dict[str, list[Any]]:
        empty = [name for name, values in v.items() if not values]
        if empty:  # itertools.product of an empty list is empty: the grid would silently lose the entry
            raise ValueError(f"no values to try for {', '.join(empty)}: give at least one, or leave the parameter out")
        return v


class SelectConfig(BaseModel):
    """How the sweep picks its one champion among the cells that passed their gate."""

    model_config = ConfigDict(extra="forbid")
    metric: str = Field(LC, description="a declared metric key (evals.catalog), ranked in its own direction")
    statistic: Literal["bound", "point"] = Field(
        "bound", description="bound: the one-sided 95% confidence bound on the worse side (the lower bound of a "
                             "higher-is-better metric); point: the estimate")

    @field_validator("metric")
    @classmethod
    def _declared_with_direction(cls, v: str) -> str:
        from evals.catalog import known_metrics, suggest_metric

        specs = known_metrics()
        if v not in specs:
            close = suggest_metric(v)
            raise ValueError(f"unknown metric {v!r}" + (f"; did you mean {', '.join(close)}?" if close else ""))
        if specs[v] is None or specs[v].higher_is_better is None:
            raise ValueError(f"{v} has no declared direction: cells cannot be ranked by it")
        return v

    def describe(self) -> str:
        from evals.catalog import known_metrics

        better = known_metrics()[self.metric].higher_is_better
        if self.statistic == "point":
            return f"{'highest' if better else 'lowest'} {self.metric} (point estimate)"
        side = "lower" if better else "upper"
        return f"{'highest' if better else 'lowest'} {side} {100 * SELECT_CONFIDENCE:g}% confidence bound of {self.metric}"


class RunnerConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: Literal["local", "ray"] = "local"
    address: str | None = None
    cpus_per_cell: float = 1
    gpus_per_cell: float = 0
    local_cpus: int = Field(2, gt=0, description="CPUs of the local Ray cluster started when no address is given")


class SweepConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    # a folder name under output_dir/sweeps (never a path): letters, digits, . _ -
    name: str = Field(min_length=1, max_length=120, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    base: dict[str, Any] = Field(description="experiment settings shared by every cell")
    grid: list[GridEntry] = Field(min_length=1, description="at least one variant entry")
    seeds: list[int] = Field(default_factory=lambda: [0], min_length=1)
    _seed_numbers = field_validator("seeds", mode="before")(classmethod(lambda cls, v: _numbers_not_booleans(v)))
    runner: RunnerConfig = Field(default_factory=RunnerConfig)
    select: SelectConfig = Field(default_factory=SelectConfig, description="how the one promoted cell is chosen")

    def sweep_key(self) -> str:
        # `select` stays out while at its default, so sweeps recorded before it existed keep their keys
        exclude = {"runner"} | ({"select"} if self.select == SelectConfig() else set())
        payload = json.dumps(self.model_dump(mode="json", exclude=exclude), sort_keys=True, default=str)
        return hashlib.sha256(payload.encode()).hexdigest()[:12]


def load_sweep(path: str | Path, overrides: list[str] | None = None) -> tuple[SweepConfig, list[ExperimentConfig]]:
    path = Path(path)
    raw = read_yaml_mapping(path, kind="sweep")
    for key, value in parse_overrides(overrides or []):
        # `--set output_dir=...` and other experiment keys apply to the shared base
        target = key if key.split(".")[0] in ("name", "base", "grid", "seeds", "runner") else f"base.{key}"
        set_dotted(raw, target, value)
    try:
        sweep = SweepConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(f"{path}: {len(exc.errors())} problem(s) in the sweep",
                          [f"{format_loc(e['loc'])}: {e['msg']}" for e in exc.errors()]) from None
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
                    shared = raw.get("variant_params", {})  # not a mapping: left for validate_config to name
                    raw.update({"name": sweep.name, "variant": entry.variant, "seed": seed,
                                "variant_params": {**shared, **dict(zip(names, combo))} if isinstance(shared, dict)
                                else shared})
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
    if not cells:
        raise ConfigError(f"{source}: the sweep has no cells (grid and seeds must each have at least one entry)")
    for config in cells:  # every cell competes for one promotion: each takes alpha / K (harness.gate)
        config.gate.family_size = max(config.gate.family_size, len(cells))
    return cells


# ---------------------------------------------------------------------------- bookkeeping


@dataclass
class CellOutcome:
    cell: str
    variant: str
    beta: float
    seed: int
    run_id: str | None
    verdict: str  # the cell's gate: PROMOTE (passed) | BLOCK | FAILED
    metrics: dict[str, float]
    first_failure: str | None
    reused: bool  # finished in an earlier invocation: not recomputed
    report: str | None = None
    # selected | passed-not-selected | blocked | failed | pending (the sweep has not finished every cell)
    selection: str = "pending"
    select_score: float | None = None
    promoted_version: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"cell": self.cell, "variant": self.variant, "beta": self.beta, "seed": self.seed,
                "run_id": self.run_id, "verdict": self.verdict, "metrics": self.metrics,
                "first_failed_check": self.first_failure, "reused": self.reused, "report": self.report,
                "selection": self.selection, "select_score": self.select_score,
                "promoted_version": self.promoted_version}


def _finished_children(tracker, sweep_key: str) -> dict[str, Any]:
    """FINISHED cell runs of this sweep by cell key. Called under the sweep lock: a RUNNING cell run
    then belongs to a sweep process that is gone, never to a live one."""
    runs = tracker.search_runs([tracker.experiment_id],
                                      filter_string=f"tags.`harness.sweep_key` = '{sweep_key}'")
    finished: dict[str, Any] = {}
    for run in runs:
        cell = run.data.tags.get("harness.cell")
        if run.info.status == "FINISHED" and cell:
            finished.setdefault(cell, run)
        elif run.info.status == "RUNNING" and run.data.tags.get("harness.role") == "cell":
            # killed before it could end: never trusted, marked so the UI does not show it running forever
            tracker.set_terminated(run.info.run_id, "KILLED")
    return finished


def _parent_run(tracker, sweep: SweepConfig, sweep_key: str) -> str:
    runs = tracker.search_runs([tracker.experiment_id], filter_string=(
        f"tags.`harness.sweep_key` = '{sweep_key}' and tags.`harness.role` = 'sweep'"))
    if runs:
        tracker.run_id = runs[0].info.run_id
        return tracker.run_id
    return tracker.start_run(sweep.name, tags={"harness.sweep": sweep.name, "harness.sweep_key": sweep_key,
                                               "harness.role": "sweep"})


def _outcome_from_run(config: ExperimentConfig, run) -> CellOutcome:
    metrics = measurements(run.data.metrics)  # what the live cell's outcome holds
    reason = run.data.tags.get("harness.block_reason")
    return CellOutcome(cell=config.cell_key(), variant=config.variant, beta=float(config.beta), seed=config.seed,
                       run_id=run.info.run_id, verdict=run.data.tags.get("harness.verdict", "FAILED"), metrics=metrics,
                       first_failure=None if reason in (None, "-") else reason, reused=True,
                       promoted_version=run.data.tags.get("harness.model_version"))


def run_cell(config_json: dict, tags: dict[str, str]) -> dict[str, Any]:
    """One cell, in this process or a Ray worker: everything it needs travels as plain data. It gates
    and records, but never moves the alias: the sweep promotes its one selected cell at the end."""
    from harness.lifecycle import run_experiment

    config = ExperimentConfig.model_validate(config_json)
    try:
        result = run_experiment(config, extra_tags=tags, promote=False)
    except Exception as exc:  # the run is already recorded FAILED in MLflow by run_experiment
        return {"verdict": "FAILED", "run_id": None, "metrics": {},
                "first_failure": scrub_text(f"{type(exc).__name__}: {exc}"), "report": None}
    return {"verdict": result.verdict, "run_id": result.run_id, "metrics": result.metrics,
            "first_failure": result.decision.first_failure, "report": result.report}


# ---------------------------------------------------------------------------- paths and the sweep lock


def sweep_folder(output_dir: Path, name: str, key: str) -> Path:
    """`output_dir/sweeps/<name>-<key>`, refused (exit 2) unless it resolves inside output_dir."""
    return inside(output_dir, "sweeps", f"{name}-{key}")


def inside(root: Path, *parts: str) -> Path:
    """`root/parts...`, provided it stays under `root` once resolved ('..', absolute parts, symlinks)."""
    base = Path(root).resolve()
    path = base.joinpath(*parts).resolve()
    if path != base and base not in path.parents:
        raise ConfigError(f"{'/'.join(parts)!r}: a path built from a name must stay inside {base} (it resolves to "
                          f"{path})")
    return path


class SweepLocked(HarnessInputError):
    """Another live process runs this sweep. Exit 2."""


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextlib.contextmanager
def sweep_lock(folder: Path, label: str) -> Iterator[Path]:
    """Held for a whole sweep: `<folder>/sweep.lock`, with the holder's pid, host and start time inside.
    An OS record lock (fcntl.lockf) does the excluding: the kernel drops it when the holder dies,
    however it dies, so a killed sweep's lock is stale by construction and a rerun resumes; it is not
    inherited by forked children. Where the filesystem has no locks, the pid and host decide: a lock
    of this host whose pid is gone is stale and taken over."""
    import fcntl

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "sweep.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = _read_holder(fd)
            if exc.errno in (errno.EACCES, errno.EAGAIN):
                raise SweepLocked(f"{label} is already running: pid {holder.get('pid', '?')} on "
                                  f"{holder.get('host', '?')} (since {holder.get('started', '?')}) holds {path}; "
                                  "wait for it to finish or stop that process, then rerun to resume") from None
            # no record locks here (some network filesystems): judge the holder by pid and host
            if holder and holder.get("host") == socket.gethostname() and _process_alive(int(holder.get("pid", -1))) \
                    and int(holder.get("pid", -1)) != os.getpid():
                raise SweepLocked(f"{label} is already running: pid {holder['pid']} on {holder['host']} "
                                  f"(lock file {path})") from None
            if holder and holder.get("host") not in (None, socket.gethostname()):
                raise SweepLocked(f"{label}: {path} names pid {holder.get('pid')} on host {holder.get('host')}, "
                                  "which cannot be checked from here; delete the file if that sweep is gone") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                  "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}).encode(), 0)
        os.fsync(fd)
        yield path
    finally:
        os.close(fd)  # closing the descriptor releases the record lock


def _read_holder(fd: int) -> dict:
    try:
        holder = json.loads(os.pread(fd, 4096, 0).decode() or "{}")
    except (ValueError, OSError):
        return {}
    return holder if isinstance(holder, dict) else {}


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


def select_score(metrics: Mapping[str, Any], select: SelectConfig) -> float | None:
    """The number cells are ranked by: the estimate, or its one-sided bound on the worse side."""
    from evals.catalog import known_metrics
    from harness.gate import confidence_limit

    if select.statistic == "point":
        return finite_number(metrics.get(select.metric))
    side = "low" if known_metrics()[select.metric].higher_is_better else "high"
    return finite_number(confidence_limit(select.metric, side, SELECT_CONFIDENCE, metrics))


def select_cell(rows: list[CellOutcome], select: SelectConfig) -> CellOutcome | None:
    """The best passing cell by `select`, or None when no passing cell has a finite score. Marks every
    row: selected / passed-not-selected / blocked / failed. Ties go to the earlier cell in grid order."""
    from evals.catalog import known_metrics

    sign = 1.0 if known_metrics()[select.metric].higher_is_better else -1.0
    best = None
    for row in rows:
        if row.verdict != "PROMOTE" or not row.run_id:
            row.selection = "failed" if row.verdict == "FAILED" else "blocked"
            continue
        row.selection = "passed-not-selected"
        row.select_score = select_score(row.metrics, select)
        if row.select_score is not None and (best is None or sign * row.select_score > sign * best.select_score):
            best = row
    if best is not None:
        best.selection = "selected"
    return best


def summary_frame(rows: list[CellOutcome]):
    import pandas as pd

    front = pareto_front({r.cell: r.metrics for r in rows})
    m = lambda r, k: r.metrics.get(k)  # noqa: E731
    return pd.DataFrame([{
        "cell": r.cell, "variant": r.variant, "beta": r.beta, "seed": r.seed, "run_id": r.run_id,
        "verdict": r.verdict, "selection": r.selection, "select_score": r.select_score,
        "promoted_version": r.promoted_version, "lc_win_rate_pct": m(r, LC),
        "lc_win_rate_ci_low": m(r, "winrate/lc_win_rate_pct_ci_low"), "win_rate_pct": m(r, "winrate/win_rate_pct"),
        "kl_seq_k3": m(r, KL), "kl_seq_k3_stderr": m(r, "kl/seq_kl_k3_stderr"),
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
    selection: dict[str, Any] | None = None  # rule, winner, promotion outcome (None until every cell finished)

    def to_json(self) -> dict[str, Any]:
        return {"sweep": self.name, "sweep_key": self.sweep_key, "parent_run_id": self.parent_run_id,
                "cells": [c.to_json() for c in self.cells], "summary_csv": str(self.summary_csv),
                "report": self.report, "selection": self.selection}


def run_sweep(sweep: SweepConfig, cells: list[ExperimentConfig], *, runner: str | None = None,
              address: str | None = None, progress=print) -> SweepResult:
    from harness.experiment import check_output_dir

    output_dir = cells[0].output_dir
    check_output_dir(output_dir)
    key = sweep.sweep_key()
    folder = sweep_folder(output_dir, sweep.name, key)
    with sweep_lock(folder, f"sweep {sweep.name} ({key})"):
        return _run_locked(sweep, cells, key, folder, runner=runner, address=address, progress=progress)


def _run_locked(sweep: SweepConfig, cells: list[ExperimentConfig], key: str, folder: Path, *, runner, address,
                progress) -> SweepResult:
    from harness.tracking import Tracker

    output_dir = cells[0].output_dir
    runner_cfg = sweep.runner.model_copy(update={k: v for k, v in {"kind": runner, "address": address}.items() if v})
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
    done = all(r.verdict in ("PROMOTE", "BLOCK") for r in rows)
    tracker.run_id = parent
    selection = _select_and_promote(tracker, sweep, cells[0], rows, progress) if done else None
    if not done:
        progress("not every cell finished: no cell is selected or promoted until a rerun finishes them")
    frame = summary_frame(rows)
    from harness.atomic_io import write_bytes_atomic, write_text_atomic

    csv_path = write_text_atomic(folder / "summary.csv", frame.to_csv(index=False))
    write_bytes_atomic(folder / "summary.parquet", frame.to_parquet(index=False))
    tracker.run_id = parent
    tracker.log_artifact(csv_path)
    tracker.log_artifact(folder / "summary.parquet")
    verdicts = [r.verdict for r in rows]
    tracker.log_metrics({"sweep/cells": len(rows), "sweep/passed": verdicts.count("PROMOTE"),
                         "sweep/promoted": float(bool(selection and selection.get("promoted_version"))),
                         "sweep/failed": verdicts.count("FAILED")})
    registry = cells[0].registry
    champion = tracker.champion(registry.model_name, registry.alias)
    if champion and champion[1] in {r.run_id for r in rows}:
        tracker.set_tags({"harness.champion_run_id": champion[1]})
    tracker.set_tags({"harness.status": "finished" if done else "incomplete"})
    from harness.recording import report_or_recorded_failure

    def render() -> Path:  # attaches the tracker to `parent` itself: a failure is tagged there too
        from reports.from_mlflow import render_from_mlflow

        return render_from_mlflow(tracker, parent)

    report = report_or_recorded_failure(tracker, render, progress) or None
    tracker.run_id = parent
    tracker.end_run("FINISHED" if done else "FAILED")
    return SweepResult(sweep.name, key, parent, rows, csv_path, report, selection)


def _tag_run(tracker, run_id: str, tags: dict[str, str]) -> None:
    own, tracker.run_id = tracker.run_id, run_id
    try:
        tracker.set_tags(tags)
    finally:
        tracker.run_id = own


def _select_and_promote(tracker, sweep: SweepConfig, config: ExperimentConfig, rows: list[CellOutcome],
                        progress) -> dict[str, Any]:
    """After every cell finished: pick the best passing cell by `select`, promote it alone through the
    locked, champion-re-checking path of `harness promote`, and record the selection everywhere. A
    selection already recorded on the parent (an earlier invocation got this far) is kept, never redone:
    the sweep promotes once."""
    from harness.promotion import SELECTED_CELL, load_recorded, promote_run, regate
    from harness.tracking import Tracker

    parent = tracker.run_id
    parent_run = tracker.get_run(parent)
    parent_tags = parent_run.data.tags
    select_cell(rows, sweep.select)  # marks every row and computes its score
    recorded_winner = parent_run.data.params.get(SELECTED_CELL, parent_tags.get("harness.select.winner_run_id"))
    if recorded_winner is not None:  # resumed after the selection: keep it, whatever the tags say now
        for row in rows:
            if row.selection in ("selected", "passed-not-selected"):
                row.selection = "selected" if row.run_id == recorded_winner else "passed-not-selected"
        winner = next((r for r in rows if r.run_id == recorded_winner), None)
        if winner is not None:  # its verdict may read BLOCK since (its promotion was refused): still the selection
            winner.selection = "selected"
    else:
        winner = next((r for r in rows if r.selection == "selected"), None)
        # the selection, once and immutably: `harness promote` of a cell asks it (promotion.sweep_selection_problem)
        tracker.log_evidence({SELECTED_CELL: winner.run_id if winner and winner.run_id else "-"})
    rule = sweep.select.describe()
    selection: dict[str, Any] = {"rule": rule, "metric": sweep.select.metric, "statistic": sweep.select.statistic,
                                 "winner_cell": winner.cell if winner else None,
                                 "winner_run_id": winner.run_id if winner else None,
                                 "winner_score": winner.select_score if winner else None,
                                 "passed": [r.cell for r in rows if r.selection in ("selected", "passed-not-selected")],
                                 "family_size": len(rows)}
    for row in rows:
        if row.selection in ("selected", "passed-not-selected") and row.run_id:
            _tag_run(tracker, row.run_id, {"harness.selection": row.selection, "harness.select.rule": rule})
    promotion = parent_tags.get("harness.select.promotion")
    if winner is None:
        promotion = promotion or "none: no cell passed its gate" + (" with a finite score" if selection["passed"] else "")
        progress(f"selection ({rule}): {promotion}")
    elif promotion is None and winner.promoted_version:  # promoted, then killed before the parent was tagged
        promotion = f"promoted as version {winner.promoted_version}"
    elif promotion is None:  # not tried by an earlier invocation: the one promotion of this sweep
        progress(f"selection ({rule}): {winner.cell} (score {winner.select_score:.4g}); promoting it alone")
        cell_tracker = Tracker(config.output_dir, sweep.name, tracking_uri=config.registry.tracking_uri)
        cell_tracker.attach(winner.run_id)
        recorded = load_recorded(cell_tracker, winner.run_id)
        outcome = promote_run(cell_tracker, recorded.config.registry, lambda champ: regate(recorded, champ),
                              cell=winner.cell, version_tags={"harness.sweep_key": sweep.sweep_key()})
        winner.promoted_version = outcome.version
        promotion = (f"promoted as version {outcome.version}" if outcome.version
                     else f"blocked at promotion: {outcome.decision.first_failure}")
        progress(f"  {promotion}")
    selection["promotion"] = promotion
    selection["promoted_version"] = winner.promoted_version if winner else None
    tracker.run_id = parent
    tracker.set_tags({"harness.select.rule": rule, "harness.select.metric": sweep.select.metric,
                      "harness.select.statistic": sweep.select.statistic,
                      "harness.select.winner_cell": selection["winner_cell"] or "-",
                      "harness.select.winner_run_id": selection["winner_run_id"] or "-",
                      "harness.select.passed_not_selected": ",".join(
                          r.cell for r in rows if r.selection == "passed-not-selected") or "-",
                      "harness.select.promotion": promotion})
    return selection
