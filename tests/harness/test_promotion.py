"""Promotion through the MLflow registry: only a FINISHED run with intact evidence, validated only after
the alias moved, the previous champion restored on any failure, and racing promotions (two real
processes, on SQLite and on a loopback `mlflow server`) ending with exactly one champion, the better one."""
import json
import math
import multiprocessing
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from harness.cli import main
from harness.config import RegistryConfig
from harness.gate import BLOCK, PROMOTE
from harness.promotion import EVIDENCE, EvidenceError, force_promote, load_recorded, promote_run, regate
from harness.tracking import Tracker
from tests.harness.fake_cells import base_config, lc_metrics, record_fake_run

MODEL = "race-model"
REGISTRY = RegistryConfig(model_name=MODEL)
# the champion rule is REQUIRED: a cell must be shown better than the champion (upper bound of the drop < 0)
# the champion rule is unpaired (two recorded numbers, both errors) so that "the better one" is defined by
# the runs alone; a head-to-head win rate measured against a champion that then moved fails closed instead
# (tests/evals/test_vs_champion.py)
RACE_RULES = [{"name": "lc_floor", "metric": "winrate/lc_win_rate_pct", "min": 50},
              {"name": "beats_champion", "metric": "domain_arith_mc/acc", "max_regression": 0.0,
               "against": "champion"}]


def _tracker(out, uri=None) -> Tracker:
    return Tracker(out, "race", tracking_uri=uri)


def _run(tracker, out, name, lc, *, rules=None, **kw):
    config = base_config(out, rules=rules, model_name=MODEL)
    accuracy = {"domain_arith_mc/acc": lc / 100, "domain_arith_mc/acc_stderr": 0.001}
    return record_fake_run(tracker, config, lc_metrics(lc, 1.0, **accuracy), cell=name, **kw)[0]


def _promote(tracker, run_id, **kw):
    tracker.attach(run_id)
    recorded = load_recorded(tracker, run_id)
    return promote_run(tracker, REGISTRY, lambda champ: regate(recorded, champ), cell=recorded.cell, **kw)


def _seed_champion(tracker, out, lc=55.0) -> tuple[str, str]:
    run_id = _run(tracker, out, "seed", lc)
    tracker.attach(run_id)
    version = force_promote(tracker, REGISTRY, cell="seed", reason="seed champion for the test", user="tester")
    return version, run_id


def test_a_blocked_decision_registers_nothing(tmp_path):
    tracker = _tracker(tmp_path)
    run_id = _run(tracker, tmp_path, "weak", 40.0)
    outcome = _promote(tracker, run_id)
    assert outcome.decision.verdict == BLOCK and outcome.version is None
    assert tracker.registry_snapshot(MODEL) == {}
    assert tracker.client.get_run(run_id).data.tags["harness.verdict"] == BLOCK


def test_forced_promotion_records_who_and_why(tmp_path):
    tracker = _tracker(tmp_path)
    run_id = _run(tracker, tmp_path, "weak", 40.0)
    tracker.attach(run_id)
    version = force_promote(tracker, REGISTRY, cell="weak", reason="hotfix approved by lead", user="tester")
    tags = tracker.client.get_run(run_id).data.tags
    assert tags["harness.forced"] == "true" and tags["harness.force_reason"] == "hotfix approved by lead"
    assert tracker.champion(MODEL, REGISTRY.alias) == (version, run_id)
    assert tracker.version_tags(MODEL, version)["harness.validated"] == "false"


def test_evidence_hashes_are_recorded_as_immutable_params(tmp_path):
    tracker = _tracker(tmp_path)
    run_id = _run(tracker, tmp_path, "good", 60.0)
    params = tracker.client.get_run(run_id).data.params
    for name in ("config_sha256", "eval_errors_sha256", "metrics_sha256", "checkpoint_sha256"):
        assert len(params[EVIDENCE + name]) == 64, name
    assert params[EVIDENCE + "checkpoint_files"] == "3"
    tracker.attach(run_id)
    with pytest.raises(Exception):  # MLflow refuses to change a param: the evidence cannot be re-recorded
        tracker.log_evidence({EVIDENCE + "config_sha256": "0" * 64})


# ---------------------------------------------------------------------------- A: gate/promote refuse


def _cli(out, *args) -> int:
    return main([*args[:1], *args[1:], "--output-dir", str(out)])


def test_gate_and_promote_refuse_a_run_that_did_not_finish(tmp_path, capsys):
    """A run that died after its metrics and config (e.g. while uploading its checkpoint) looked like a PROMOTE."""
    tracker = _tracker(tmp_path)
    config = base_config(tmp_path, model_name=MODEL)
    tracker.start_run("crashed", tags={"harness.cell": "crashed"})
    tracker.log_metrics(lc_metrics(70.0, 1.0))
    from harness.recording import redacted_config

    tracker.log_json(redacted_config(config), "config.json")
    tracker.log_json({}, "eval_errors.json")
    tracker.end_run("FAILED")
    run_id = tracker.run_id
    capsys.readouterr()
    assert _cli(tmp_path, "gate", run_id) == 2
    err = capsys.readouterr().err
    assert "FAILED, not FINISHED" in err and "checkpoint: artifact missing" in err
    assert _cli(tmp_path, "promote", run_id) == 2
    assert _cli(tmp_path, "promote", run_id, "--force", "--reason", "ship it") == 2  # force refuses: no checkpoint
    assert "checkpoint: artifact missing" in capsys.readouterr().err
    assert tracker.registry_snapshot(MODEL) == {}


def _partial_upload(tracker, folder):
    """The upload died after one file: the folder on disk is complete, the artifact is not."""
    tracker.log_artifact(folder / "adapter_config.json", "checkpoint")


@pytest.mark.parametrize("upload, expected", [
    (lambda t, f: None, "checkpoint: artifact missing"),
    (_partial_upload, "checkpoint: 1 file(s) stored, 3 recorded"),
])
def test_missing_or_partial_checkpoint_is_refused_even_when_forced(tmp_path, capsys, upload, expected):
    tracker = _tracker(tmp_path)
    run_id = _run(tracker, tmp_path, "partial", 70.0, checkpoint_upload=upload)
    capsys.readouterr()
    assert _cli(tmp_path, "gate", run_id) == 2
    assert expected in capsys.readouterr().err
    assert _cli(tmp_path, "promote", run_id) == 2
    assert _cli(tmp_path, "promote", run_id, "--force", "--reason", "ship it") == 2
    assert expected in capsys.readouterr().err
    assert tracker.registry_snapshot(MODEL) == {}


def _overwrite(tracker, run_id, obj, name):
    tracker.attach(run_id)
    tracker.log_json(obj, name)


def test_an_edited_config_json_is_refused_by_gate_and_promote(tmp_path, capsys):
    """Empty rules + allow_promote_without_rules written over a blocked run's config.json used to ship it."""
    tracker = _tracker(tmp_path)
    run_id = _run(tracker, tmp_path, "weak", 40.0)
    config = json.loads(tracker.load_text(run_id, "config.json"))
    config["gate"] = {"rules": [], "allow_promote_without_rules": True}
    _overwrite(tracker, run_id, config, "config.json")
    tracker.set_tags({"harness.verdict": PROMOTE})  # tags are mutable: the forger sets this too
    capsys.readouterr()
    assert _cli(tmp_path, "gate", run_id) == 2
    assert "config.json: content differs from the hash recorded" in capsys.readouterr().err
    assert _cli(tmp_path, "promote", run_id) == 2
    assert tracker.registry_snapshot(MODEL) == {}


def test_an_emptied_eval_errors_json_is_refused(tmp_path, capsys):
    tracker = _tracker(tmp_path)
    run_id, decision = record_fake_run(tracker, base_config(tmp_path, model_name=MODEL), lc_metrics(70.0, 1.0),
                                       cell="crashed-kl", errors={"kl": "RuntimeError: boom"})
    assert decision.verdict == BLOCK
    _overwrite(tracker, run_id, {}, "eval_errors.json")
    capsys.readouterr()
    assert _cli(tmp_path, "gate", run_id) == 2
    assert "eval_errors.json: content differs" in capsys.readouterr().err


def test_a_metric_logged_again_after_the_run_ended_is_refused(tmp_path, capsys):
    tracker = _tracker(tmp_path)
    run_id = _run(tracker, tmp_path, "weak", 40.0)
    tracker.attach(run_id)
    tracker.log_metrics({"winrate/lc_win_rate_pct": 90.0}, step=1)  # the newest value is what a gate reads
    capsys.readouterr()
    assert _cli(tmp_path, "gate", run_id) == 2
    assert "metrics: differ from those recorded" in capsys.readouterr().err
    assert _cli(tmp_path, "promote", run_id) == 2


def test_a_regate_with_another_config_never_rewrites_the_runs_verdict(tmp_path, capsys):
    tracker = _tracker(tmp_path)
    run_id = _run(tracker, tmp_path, "good", 60.0)
    assert tracker.client.get_run(run_id).data.tags["harness.verdict"] == PROMOTE
    strict = tmp_path / "strict.yaml"
    raw = base_config(tmp_path, rules=[{"name": "lc_high", "metric": "winrate/lc_win_rate_pct", "min": 90}],
                      model_name=MODEL).model_dump(mode="json")
    import yaml

    strict.write_text(yaml.safe_dump(raw))
    capsys.readouterr()
    assert _cli(tmp_path, "gate", run_id, "--config", str(strict), "--json") == 1
    payload = json.loads(capsys.readouterr().out)
    assert payload["verdict"] == BLOCK and payload["recorded_as"].startswith("harness.regate.")
    tags = tracker.client.get_run(run_id).data.tags
    assert tags["harness.verdict"] == PROMOTE  # the run's own verdict stands
    key = payload["recorded_as"].split(".")[2]
    assert tags[f"harness.regate.{key}.verdict"] == BLOCK and tags[f"harness.regate.{key}.config"] == str(strict)
    # the run's own rules: recorded as its verdict; and it still promotes on them
    assert _cli(tmp_path, "gate", run_id, "--json") == 0
    assert json.loads(capsys.readouterr().out)["recorded_as"] == "harness.verdict"
    assert _cli(tmp_path, "promote", run_id) == 0
    assert tracker.champion(MODEL, REGISTRY.alias)[1] == run_id


def test_a_forced_promotion_needs_a_reason_that_says_something(tmp_path, capsys):
    tracker = _tracker(tmp_path)
    run_id = _run(tracker, tmp_path, "weak", 40.0)
    assert _cli(tmp_path, "promote", run_id, "--force", "--reason", "   ") == 2
    assert "--reason" in capsys.readouterr().err and tracker.registry_snapshot(MODEL) == {}
    tracker.attach(run_id)
    with pytest.raises(EvidenceError, match="without a reason"):
        force_promote(tracker, REGISTRY, cell="weak", reason=" \t", user="tester")


def test_a_regate_sees_a_nan_skewness_and_blocks_as_the_live_gate_did(tmp_path, capsys):
    """KL from 2 samples has no skewness (NaN). The live gate blocked (the skew-aware bound cannot be shown);
    the NaN once went unrecorded, and a re-gate of the stored run fell back to the narrower normal bound and
    promoted. It is recorded now, and a KL metric is declared skewed: without a finite skewness, no bound."""
    from evals.kl import KLEstimate

    tracker = _tracker(tmp_path)
    rules = [{"name": "lc_floor", "metric": "winrate/lc_win_rate_pct", "min": 50},
             {"name": "kl_cap", "metric": "kl/seq_kl_k3", "max": 20.0}]
    kl = KLEstimate(seq_k1=[9.0, 17.0], seq_k3=[9.0, 17.0], n_tokens=20).summary()
    config = base_config(tmp_path, rules=rules, model_name=MODEL)
    run_id, decision = record_fake_run(tracker, config, lc_metrics(80, 3) | kl, cell="kl2")
    assert decision.verdict == BLOCK
    assert math.isnan(tracker.run_metrics(run_id)["kl/seq_kl_k3_skewness"])
    assert _cli(tmp_path, "gate", run_id, "--json") == 1
    (check,) = [c for c in json.loads(capsys.readouterr().out)["checks"] if c["name"] == "kl_cap"]
    assert not check["passed"] and "skewed" in check["reason"]
    assert _cli(tmp_path, "promote", run_id) == 1 and tracker.registry_snapshot(MODEL) == {}
    # a summary without the skewness key at all (an older or edited store) gets no bound either
    from evals.catalog import known_metrics
    from harness.gate import gate

    no_key = {k: v for k, v in (lc_metrics(80, 3) | kl).items() if not k.endswith("_skewness")}
    assert gate(no_key, {"reference": {}}, config.gate.rules, specs=known_metrics()).verdict == BLOCK


def test_a_tag_pointing_at_another_judge_does_not_change_which_calibration_a_regate_reads(tmp_path, capsys):
    """judge/* rules read the stored calibration of the run's judge; which judge is immutable evidence. Editing
    the run's fingerprint tag to a better-calibrated judge once turned a BLOCK into a PROMOTE."""
    from evals.judge_calibration import CALIBRATION_EXPERIMENT, judge_key
    from harness.promotion import JUDGE_FINGERPRINT_TAG

    for fingerprint, agreement in (("judge-A", 52.0), ("judge-B", 95.0)):
        calibration = Tracker(tmp_path, CALIBRATION_EXPERIMENT)
        calibration.start_run("cal", tags={"harness.judge_key": judge_key(fingerprint),
                                           "harness.judge_fingerprint": fingerprint})
        calibration.log_metrics({"judge/agreement_pct": agreement})
        calibration.end_run("FINISHED")
    rules = [{"name": "lc_floor", "metric": "winrate/lc_win_rate_pct", "min": 50},
             {"name": "judge_agrees", "metric": "judge/agreement_pct", "min": 70, "statistic": "point"}]
    tracker = _tracker(tmp_path)
    run_id, decision = record_fake_run(tracker, base_config(tmp_path, rules=rules, model_name=MODEL),
                                       lc_metrics(80, 3), cell="judged", tags={JUDGE_FINGERPRINT_TAG: "judge-A"})
    assert decision.verdict == BLOCK
    assert tracker.client.get_run(run_id).data.params[EVIDENCE + "judge_fingerprint"] == "judge-A"
    tracker.client.set_tag(run_id, JUDGE_FINGERPRINT_TAG, "judge-B")
    assert _cli(tmp_path, "gate", run_id) == 1 and _cli(tmp_path, "promote", run_id) == 1
    assert tracker.registry_snapshot(MODEL) == {}


def test_a_regate_against_another_registry_is_not_the_runs_own_verdict(tmp_path, capsys):
    """`against: champion` rules read the champion of the config's registered model: a config that differs
    only there is another gate config, recorded under its own tag, never as the run's verdict."""
    import yaml

    rules = [{"name": "beats_champion", "metric": "winrate/lc_win_rate_pct", "min": 50, "against": "champion"}]
    tracker = _tracker(tmp_path)
    config = base_config(tmp_path, rules=rules, model_name="model-a")
    champion_run, _ = record_fake_run(tracker, config, lc_metrics(70, 3), cell="c0")
    tracker.attach(champion_run)
    force_promote(tracker, config.registry, cell="c0", reason="seed champion", user="tester")
    run_id, decision = record_fake_run(tracker, config, lc_metrics(60, 3), cell="c1")
    assert decision.verdict == BLOCK  # never measured against model-a's champion
    other = config.model_dump(mode="json")
    other["registry"]["model_name"] = "model-b"  # no champion there: the rule falls back to the reference
    path = tmp_path / "other.yaml"
    path.write_text(yaml.safe_dump(other))
    capsys.readouterr()
    assert _cli(tmp_path, "gate", run_id, "--config", str(path), "--json") == 0
    assert json.loads(capsys.readouterr().out)["recorded_as"].startswith("harness.regate.")
    assert tracker.client.get_run(run_id).data.tags["harness.verdict"] == BLOCK


def test_a_sweep_cell_recorded_before_the_selection_was_evidence_is_still_refused(tmp_path, capsys):
    """Runs recorded before a cell's sweep and the sweep's selection became params carry them as tags only:
    a passed-not-selected cell of such a sweep is still refused (the new check must not let it through)."""
    tracker = _tracker(tmp_path)
    parent = tracker.start_run("old-sweep", tags={"harness.role": "sweep"})
    tracker.end_run("FINISHED")
    run_id = _run(tracker, tmp_path, "old-cell", 60.0)  # recorded without a sweep: no evidence names one
    for key, value in (("harness.role", "cell"), ("mlflow.parentRunId", parent),
                       ("harness.selection", "passed-not-selected")):
        tracker.client.set_tag(run_id, key, value)
    tracker.client.set_tag(parent, "harness.select.winner_run_id", "another-run")
    assert _cli(tmp_path, "promote", run_id) == 1
    assert "selected another cell (run another-run)" in capsys.readouterr().err
    tracker.client.set_tag(parent, "harness.select.winner_run_id", run_id)  # its old sweep did select it
    assert _cli(tmp_path, "promote", run_id) == 0
    assert tracker.champion(MODEL, REGISTRY.alias)[1] == run_id


def test_a_champion_registered_outside_the_harness_fails_rules_against_it_without_a_crash(tmp_path, capsys):
    """A version created from a path (no run) holds the alias: rules against the champion have nothing recorded
    to compare with and fail closed, with the decision recorded (once a TypeError and a traceback)."""
    tracker = _tracker(tmp_path)
    rules = [{"name": "lc_floor", "metric": "winrate/lc_win_rate_pct", "min": 50},
             {"name": "kl_vs_champion", "metric": "kl/seq_kl_k3", "max_regression": 5.0, "against": "champion"}]
    run_id, _ = record_fake_run(tracker, base_config(tmp_path, rules=rules, model_name=MODEL), lc_metrics(80, 3),
                                cell="c1")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "MLmodel").write_text("flavors: {}\n")
    tracker.client.create_registered_model(MODEL)
    version = tracker.client.create_model_version(MODEL, str(outside)).version
    tracker.client.set_registered_model_alias(MODEL, REGISTRY.alias, version)
    assert tracker.champion(MODEL, REGISTRY.alias) == (str(version), None)
    capsys.readouterr()
    assert _cli(tmp_path, "gate", run_id, "--json") == 1
    (check,) = [c for c in json.loads(capsys.readouterr().out)["checks"] if c["name"] == "kl_vs_champion"]
    assert not check["passed"] and "champion" in check["reason"]
    assert _cli(tmp_path, "promote", run_id) == 1
    assert tracker.champion(MODEL, REGISTRY.alias) == (str(version), None)


# ---------------------------------------------------------------------------- B: promotion faults


def test_validated_is_set_only_after_the_alias_moved(tmp_path):
    tracker = _tracker(tmp_path)
    run_id = _run(tracker, tmp_path, "good", 60.0)
    seen = {}

    def after_alias(version):  # the alias already names the version here; validated must not be set yet
        seen["champion"] = tracker.champion(MODEL, REGISTRY.alias)
        seen["validated"] = tracker.version_tags(MODEL, version)["harness.validated"]

    outcome = _promote(tracker, run_id, hooks={"promotion:after_alias": after_alias})
    assert outcome.version and seen == {"champion": (outcome.version, run_id), "validated": "false"}
    assert tracker.version_tags(MODEL, outcome.version)["harness.validated"] == "true"


@pytest.mark.parametrize("with_champion", [True, False], ids=["previous-champion", "first-champion"])
@pytest.mark.parametrize("point", ["promotion:before_alias", "promotion:after_alias", "set_alias"])
def test_a_failure_around_the_alias_move_leaves_the_registry_as_it_was(tmp_path, monkeypatch, point, with_champion):
    tracker = _tracker(tmp_path)
    if with_champion:
        _seed_champion(tracker, tmp_path)
    before = tracker.registry_snapshot(MODEL)
    run_id = _run(tracker, tmp_path, "good", 60.0, rules=[RACE_RULES[0]])

    def boom(*_):
        raise RuntimeError(f"injected at {point}")

    hooks = {}
    if point == "set_alias":
        monkeypatch.setattr(Tracker, "set_alias", boom)
    else:
        hooks[point] = boom
    outcome = _promote(tracker, run_id, hooks=hooks)
    assert outcome.version is None and outcome.decision.verdict == BLOCK
    assert f"injected at {point}" in outcome.decision.first_failure
    monkeypatch.undo()
    assert tracker.registry_snapshot(MODEL) == before  # champion restored (or none again), no new version
    tags = tracker.client.get_run(run_id).data.tags
    assert tags["harness.verdict"] == BLOCK and tags["harness.promoted"] == "false"


def test_an_alias_moved_by_a_writer_outside_the_lock_is_detected(tmp_path, monkeypatch):
    tracker = _tracker(tmp_path)
    seed_version, seed_run = _seed_champion(tracker, tmp_path)
    run_id = _run(tracker, tmp_path, "good", 60.0, rules=[RACE_RULES[0]])
    real = Tracker.set_alias

    def intruder(self, model, alias, version):
        real(self, model, alias, version)
        real(self, model, alias, seed_version)  # someone else's write lands right after ours

    monkeypatch.setattr(Tracker, "set_alias", intruder)
    outcome = _promote(tracker, run_id)
    monkeypatch.undo()
    assert outcome.version is None and "another writer moved it" in outcome.decision.first_failure
    assert tracker.champion(MODEL, REGISTRY.alias) == (seed_version, seed_run)  # theirs, not overwritten
    assert tracker.registry_snapshot(MODEL)["versions"] == [int(seed_version)]


# ---------------------------------------------------------------------------- C: races


def _promote_in_process(out, uri, run_id: str, delay_s: float, start_at: float, queue) -> None:
    """One racer. `delay_s` stretches its alias write: without a lock around read -> compare -> set, the
    slower racer's stale decision lands last and overwrites the better one."""
    real = Tracker.set_alias

    def slow_set_alias(self, *args):
        time.sleep(delay_s)
        real(self, *args)

    Tracker.set_alias = slow_set_alias
    tracker = _tracker(out, uri)
    while time.time() < start_at:  # line both processes up on the same instant
        time.sleep(0.001)
    outcome = _promote(tracker, run_id)
    queue.put((run_id, outcome.decision.verdict, outcome.version))


def _race(out_of, uri=None):
    tracker = _tracker(out_of(0), uri)
    _seed_champion(tracker, out_of(0))
    rules = RACE_RULES
    worse = _run(tracker, out_of(0), "cell60", 60.0, rules=rules)
    better = _run(tracker, out_of(0), "cell70", 70.0, rules=rules)
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    start_at = time.time() + 4.0
    # the worse cell writes its alias last (2 s after its check), the better one after 0.5 s
    procs = [ctx.Process(target=_promote_in_process, args=(out_of(i + 1), uri, run, delay, start_at, queue))
             for i, (run, delay) in enumerate(((worse, 2.0), (better, 0.5)))]
    for p in procs:
        p.start()
    for p in procs:
        p.join(180)
        assert p.exitcode == 0
    results = [queue.get(timeout=5) for _ in procs]
    return tracker, worse, better, results


def _check_race(tracker, worse, better, results):
    champion = tracker.champion(MODEL, REGISTRY.alias)
    assert champion is not None and champion[1] == better, (champion, results)  # the better one, whatever the order
    assert tracker.version_tags(MODEL, champion[0])["harness.validated"] == "true"
    by_run = {r[0]: r for r in results}
    assert by_run[better][1] == PROMOTE and by_run[better][2] == champion[0]
    # the worse one either lost to the better champion on re-check, or promoted first and was replaced
    assert by_run[worse][1] == BLOCK or int(by_run[worse][2]) < int(champion[0])
    for run_id in (worse, better):
        assert tracker.client.get_run(run_id).data.tags["harness.verdict"] in (PROMOTE, BLOCK)


def test_two_racing_promotions_on_sqlite_end_with_the_better_champion(tmp_path):
    _check_race(*_race(lambda i: tmp_path))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def mlflow_server(tmp_path):
    """A loopback `mlflow server` (SQLite backend, proxied artifacts); skipped if it cannot start in time."""
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
         "--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}",
         "--artifacts-destination", str(tmp_path / "server-artifacts")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    uri = f"http://127.0.0.1:{port}"
    deadline = time.time() + 40
    while True:
        try:
            with urllib.request.urlopen(f"{uri}/health", timeout=2) as r:
                if r.status == 200:
                    break
        except OSError:
            pass
        if proc.poll() is not None or time.time() > deadline:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            pytest.skip("a loopback mlflow server did not answer /health within 40 s")
        time.sleep(0.5)
    yield uri
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def test_two_racing_promotions_on_an_mlflow_server_end_with_the_better_champion(tmp_path, mlflow_server):
    # each racer has its own output folder: no shared lock file, only the server's lease tag between them
    _check_race(*_race(lambda i: tmp_path / f"host{i}", mlflow_server))
