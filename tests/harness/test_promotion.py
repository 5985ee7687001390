"""Promotion through the MLflow registry: validated runs only, races end with one champion."""
import multiprocessing
import socket
import subprocess
import sys
import time

import pytest

from harness.config import GateRule, RegistryConfig
from harness.gate import BLOCK, PROMOTE, GateDecision, gate
from harness.promotion import decide_and_promote, force_promote
from harness.tracking import Tracker

REGISTRY = RegistryConfig(model_name="race-model")


def _fake_run(tracker: Tracker, tmp_path, name: str, lc: float) -> str:
    """A recorded run with a checkpoint artifact and a metric, as a cell leaves it."""
    run_id = tracker.start_run(name, tags={"harness.cell": name})
    ckpt = tmp_path / name / "checkpoint"
    ckpt.mkdir(parents=True)
    (ckpt / "adapter_model.safetensors").write_bytes(b"weights-" + name.encode())
    tracker.log_artifact(ckpt, "checkpoint")
    tracker.log_metrics({"winrate/lc_win_rate_pct": lc})
    tracker.end_run("FINISHED")
    return run_id


def _decider(lc: float):
    from evals.catalog import known_metrics

    rules = [GateRule(metric="winrate/lc_win_rate_pct", min=50),
             GateRule(metric="winrate/lc_win_rate_pct", name="beats_champion", max_regression=0.0, against="champion",
                      required=False)]
    return lambda champ: gate({"winrate/lc_win_rate_pct": lc}, {"reference": {}, "champion": champ}, rules,
                              specs=known_metrics())


def _tracker(tmp_path, uri=None) -> Tracker:
    return Tracker(tmp_path, "race", tracking_uri=uri)


def _promote_in_process(tmp_path, uri, run_id: str, lc: float, start_at: float, out) -> None:
    tracker = _tracker(tmp_path, uri)
    tracker.attach(run_id)
    while time.time() < start_at:  # line both processes up on the same instant
        time.sleep(0.001)
    outcome = decide_and_promote(tracker, REGISTRY, _decider(lc), cell=run_id)
    out.put((run_id, outcome.decision.verdict, outcome.version))


def test_a_blocked_decision_registers_nothing(tmp_path):
    tracker = Tracker(tmp_path, "race")
    run_id = _fake_run(tracker, tmp_path, "weak", 40.0)
    tracker.attach(run_id)
    outcome = decide_and_promote(tracker, REGISTRY, _decider(40.0), cell="weak")
    assert outcome.decision.verdict == BLOCK and outcome.version is None
    assert tracker.registry_snapshot(REGISTRY.model_name) == {}
    assert tracker.client.get_run(run_id).data.tags["harness.verdict"] == BLOCK


def test_forced_promotion_records_who_and_why(tmp_path):
    tracker = Tracker(tmp_path, "race")
    run_id = _fake_run(tracker, tmp_path, "weak", 40.0)
    tracker.attach(run_id)
    version = force_promote(tracker, REGISTRY, cell="weak", reason="hotfix approved by lead", user="tester")
    tags = tracker.client.get_run(run_id).data.tags
    assert tags["harness.forced"] == "true" and tags["harness.force_reason"] == "hotfix approved by lead"
    assert tracker.champion(REGISTRY.model_name, REGISTRY.alias) == (version, run_id)


def _race(tmp_path, uri=None):
    tracker = _tracker(tmp_path, uri)
    runs = [_fake_run(tracker, tmp_path, f"cell{i}", lc) for i, lc in enumerate((60.0, 70.0))]
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    start_at = time.time() + 3.0
    procs = [ctx.Process(target=_promote_in_process, args=(tmp_path, uri, r, lc, start_at, out))
             for r, lc in zip(runs, (60.0, 70.0))]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    results = [out.get(timeout=5) for _ in procs]
    return tracker, runs, results


def test_two_racing_promotions_on_sqlite_end_with_one_champion_and_both_decisions(tmp_path):
    _check_race(*_race(tmp_path))


def _check_race(tracker, runs, results):
    champion = tracker.champion(REGISTRY.model_name, REGISTRY.alias)
    assert champion is not None and champion[1] in runs
    promoted = [r for r in results if r[1] == PROMOTE]
    assert promoted, results
    for run_id in runs:  # both decisions recorded
        assert tracker.client.get_run(run_id).data.tags["harness.verdict"] in (PROMOTE, BLOCK)
    # the alias names exactly one version, and it is one that passed its gate
    assert champion[0] in {r[2] for r in promoted}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def mlflow_server(tmp_path):
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
         "--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}",
         "--artifacts-destination", str(tmp_path / "server-artifacts")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    uri = f"http://127.0.0.1:{port}"
    deadline = time.time() + 90
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            time.sleep(0.5)
    else:
        proc.kill()
        pytest.fail("mlflow server did not start")
    yield uri
    proc.terminate()
    proc.wait(20)


def test_two_racing_promotions_on_an_mlflow_server_end_with_one_champion(tmp_path, mlflow_server):
    _check_race(*_race(tmp_path, mlflow_server))
