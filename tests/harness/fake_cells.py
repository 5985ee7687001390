"""Recorded runs without training: real MLflow runs shaped as the pipeline leaves them (params,
metrics, config.json, eval_errors.json, a checkpoint folder, the gate's decision through the real
`regate`, evidence hashes), with the measurements a test chooses. Used by the promotion and sweep
tests, and as a process entry point (`python -m tests.harness.fake_cells sweep ...`) that runs the
real `harness sweep` CLI with the cell runner replaced at its `run_cell` boundary.

Environment of the entry point: FAKE_CELLS = JSON {"<variant>-<beta>": {metric: value}}; optional
FAKE_CELLS_HOLD = a file path: every cell after the first waits until that file exists (a sweep
that stays alive mid-way, to be raced or killed); FAKE_CELLS_FAIL = "<variant>-<beta>": that cell
raises (a FAILED cell).
"""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def base_config(output_dir: Path, *, rules: list[dict] | None = None, model_name: str = "fake-model",
                **overrides):
    """The shipped tiny experiment with the test's rules, no domain tasks, and its own registry name."""
    from harness.config import load_config

    config = load_config(REPO / "experiments" / "tiny.yaml", [f"output_dir={output_dir}", "eval.domain_tasks=[]",
                                                            f"registry.model_name={model_name}"])
    raw = config.model_dump(mode="json")
    raw["gate"]["rules"] = rules if rules is not None else [{"name": "lc_floor", "metric": "winrate/lc_win_rate_pct",
                                                             "min": 50}]
    for dotted, value in overrides.items():
        node = raw
        *parents, leaf = dotted.split(".")
        for p in parents:
            node = node[p]
        node[leaf] = value
    from harness.config import validate_config

    return validate_config(raw)


def record_fake_run(tracker, config, metrics: dict[str, float], *, cell: str, tags: dict | None = None,
                    errors: dict | None = None, weights: bytes | None = None, checkpoint_upload=None):
    """A FINISHED run as `recorded_cell_run` leaves it before promotion; returns (run_id, decision).
    `checkpoint_upload(tracker, folder)` replaces the checkpoint upload (fault injection)."""
    import tempfile

    from harness.promotion import (
        champion_baseline,
        files_under,
        load_recorded,
        record_decision,
        record_evidence,
        regate,
    )
    from harness.recording import redacted_config, reference_baseline
    from harness.tracking import flatten

    tracker.start_run(cell, tags={"harness.cell": cell, "harness.variant": config.variant,
                                  "harness.status": "running", **(tags or {})})
    tracker.log_params(flatten(config.model_dump(mode="json")))
    tracker.log_metrics(metrics)
    tracker.log_metrics({f"reference/{k}": v for k, v in reference_baseline(metrics, {}).items()})
    tracker.log_json(redacted_config(config), "config.json")
    tracker.log_json(errors or {}, "eval_errors.json")
    with tempfile.TemporaryDirectory(prefix="fake-ckpt-") as tmp:
        folder = Path(tmp) / "adapter"
        folder.mkdir()
        (folder / "adapter_model.safetensors").write_bytes(weights or f"weights of {cell}".encode() * 64)
        (folder / "adapter_config.json").write_text(json.dumps({"r": 8, "cell": cell}))
        (folder / "harness_config.json").write_text(json.dumps(redacted_config(config)))
        (checkpoint_upload or (lambda t, f: t.log_artifact(f, "checkpoint")))(tracker, folder)
        recorded = load_recorded(tracker, tracker.run_id)
        champion = tracker.champion(config.registry.model_name, config.registry.alias)
        decision = regate(recorded, champion_baseline(tracker, champion))
        record_decision(tracker, decision)
        record_evidence(tracker, files_under(folder))
    tracker.set_tags({"harness.status": "finished"})
    tracker.end_run("FINISHED")
    return tracker.run_id, decision


def lc_metrics(lc: float, stderr: float, **extra: float) -> dict[str, float]:
    return {"winrate/lc_win_rate_pct": lc, "winrate/lc_win_rate_pct_stderr": stderr,
            "winrate/win_rate_pct": lc, "winrate/win_rate_pct_stderr": stderr, "kl/seq_kl_k3": 1.0,
            "kl/seq_kl_k3_stderr": 0.1, **extra}


# ---------------------------------------------------------------------------- a sweep's cells, faked


def fake_run_cell(config_json: dict, tags: dict[str, str]) -> dict:
    """`harness.sweep.run_cell`'s contract, without training: a real recorded run with the chosen metrics."""
    from harness.config import ExperimentConfig
    from harness.tracking import Tracker

    config = ExperimentConfig.model_validate(config_json)
    key = f"{config.variant}-{config.beta:g}"
    chosen = json.loads(os.environ["FAKE_CELLS"])
    hold = os.environ.get("FAKE_CELLS_HOLD")
    marker = Path(os.environ.get("FAKE_CELLS_LOG", "/dev/null"))
    if hold and marker.exists() and marker.read_text().strip():  # not the first cell: wait to be released
        while not Path(hold).exists():
            time.sleep(0.1)
    tracker = Tracker(config.output_dir, config.name, tracking_uri=config.registry.tracking_uri)
    if os.environ.get("FAKE_CELLS_FAIL") == key:
        tracker.start_run(config.cell_key(), tags={**tags, "harness.cell": config.cell_key()})
        tracker.end_run("FAILED")
        return {"verdict": "FAILED", "run_id": None, "metrics": {}, "first_failure": "RuntimeError: injected",
                "report": None}
    metrics = dict(chosen[key])
    run_id, decision = record_fake_run(tracker, config, metrics, cell=config.cell_key(),
                                       tags={**tags, "harness.family_size_seen": str(config.gate.family_size)})
    if str(marker) != "/dev/null":
        with open(marker, "a") as fh:
            fh.write(f"{config.cell_key()}\n")
    return {"verdict": decision.verdict, "run_id": run_id, "metrics": metrics,
            "first_failure": decision.first_failure, "report": None}


def main(argv: list[str]) -> int:
    import harness.sweep
    from harness.cli import main as cli

    harness.sweep.run_cell = fake_run_cell
    return cli(argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
