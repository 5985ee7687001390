"""Fault catalog of a cell's promotion, through the public path (`run_experiment` on embedded:tiny):
each crash point ends with the registry unchanged, or restored, and a run that cannot be gated or
promoted afterwards (exit 2), except with intact evidence.

| crash point                              | injected by                                  | run ends  | registry  | `harness gate` / `promote` |
|------------------------------------------|----------------------------------------------|-----------|-----------|-----------------------------|
| during training                          | harness.training.train_cell raises           | FAILED    | unchanged | 2 / 2 (not FINISHED)        |
| after the metrics                        | harness.experiment.reference_baseline raises | FAILED    | unchanged | 2 / 2                       |
| during checkpoint upload (raises)        | Tracker.log_artifact uploads 1 file, raises  | FAILED    | unchanged | 2 / 2, --force 2 (partial)  |
| during checkpoint upload (silent)        | Tracker.log_artifact uploads 1 file          | FINISHED  | unchanged | BLOCK: evidence_intact      |
| after the decision, before the alias     | writing generations raises                   | FAILED    | unchanged | 2 / 2                       |
| between champion read and alias move     | hook promotion:before_alias raises           | FINISHED  | unchanged | verdict BLOCK (promotion)   |
| after the alias moved                    | hook promotion:after_alias raises            | FINISHED  | restored  | verdict BLOCK (promotion)   |
"""
import pytest

from harness.cli import main
from harness.lifecycle import run_experiment
from harness.tracking import Tracker
from tests.conftest import tiny_config

FAST = {"training.max_steps": 1, "eval.n_prompts": 8, "eval.kl.n_prompts": 4, "eval.domain_tasks": "[]",
        "eval.diversity.n_prompts": 0, "eval.n_bootstrap": 0}


def _permissive(config):
    """Rules that always pass: only the injected fault can stop the promotion."""
    return config.model_copy(update={"gate": config.gate.model_copy(
        update={"rules": [], "allow_promote_without_rules": True})})


@pytest.fixture(scope="module")
def champion_dir(tmp_path_factory, model_cache):
    out = tmp_path_factory.mktemp("promotion-faults")
    first = run_experiment(_permissive(tiny_config(out, model_cache, **FAST)))
    assert first.verdict == "PROMOTE" and first.champion_version
    return out


def _setup(champion_dir, model_cache):
    config = _permissive(tiny_config(champion_dir, model_cache, **FAST))
    tracker = Tracker(config.output_dir, config.name)
    return config, tracker, tracker.registry_snapshot(config.registry.model_name)


def _latest_run(tracker):
    return max(tracker.iter_runs(), key=lambda r: r.info.start_time)


def _refused(config, run_id, capsys, *, force=False) -> str:
    out = str(config.output_dir)
    capsys.readouterr()
    assert main(["gate", run_id, "--output-dir", out]) == 2
    assert main(["promote", run_id, "--output-dir", out]) == 2
    if force:
        assert main(["promote", run_id, "--output-dir", out, "--force", "--reason", "ship it anyway"]) == 2
    return capsys.readouterr().err


def test_crash_during_training(champion_dir, model_cache, monkeypatch, capsys):
    config, tracker, before = _setup(champion_dir, model_cache)

    def crash(*a, **k):
        raise RuntimeError("injected: out of memory during training")

    monkeypatch.setattr("harness.training.train_cell", crash)
    with pytest.raises(RuntimeError, match="out of memory"):
        run_experiment(config)
    run = _latest_run(tracker)
    assert run.info.status == "FAILED"
    assert tracker.registry_snapshot(config.registry.model_name) == before
    assert "FAILED, not FINISHED" in _refused(config, run.info.run_id, capsys)


def test_crash_after_the_metrics(champion_dir, model_cache, monkeypatch, capsys):
    config, tracker, before = _setup(champion_dir, model_cache)

    def crash(*a, **k):
        raise RuntimeError("injected: crash after the metrics were logged")

    monkeypatch.setattr("harness.experiment.reference_baseline", crash)
    with pytest.raises(RuntimeError, match="after the metrics"):
        run_experiment(config)
    run = _latest_run(tracker)
    assert run.info.status == "FAILED" and "winrate/lc_win_rate_pct" in run.data.metrics
    assert tracker.registry_snapshot(config.registry.model_name) == before
    assert "FAILED, not FINISHED" in _refused(config, run.info.run_id, capsys)


def _one_file_upload(raise_after: bool):
    real = Tracker.log_artifact

    def upload(self, path, artifact_path=None):
        if artifact_path == "checkpoint" and path.is_dir():
            first = sorted(p for p in path.iterdir() if p.is_file())[0]
            real(self, first, "checkpoint")  # the connection dropped after the first file
            if raise_after:
                raise ConnectionError("injected: upload interrupted")
            return None
        return real(self, path, artifact_path)

    return upload


def test_crash_during_checkpoint_upload(champion_dir, model_cache, monkeypatch, capsys):
    config, tracker, before = _setup(champion_dir, model_cache)
    monkeypatch.setattr(Tracker, "log_artifact", _one_file_upload(raise_after=True))
    with pytest.raises(ConnectionError):
        run_experiment(config)
    monkeypatch.undo()
    run = _latest_run(tracker)
    assert run.info.status == "FAILED"
    assert tracker.registry_snapshot(config.registry.model_name) == before
    err = _refused(config, run.info.run_id, capsys, force=True)
    assert "no recorded hash" in err  # --force too: a partial upload cannot be told from a complete one
    assert tracker.registry_snapshot(config.registry.model_name) == before


def test_a_silently_partial_checkpoint_upload_blocks(champion_dir, model_cache, monkeypatch):
    config, tracker, before = _setup(champion_dir, model_cache)
    monkeypatch.setattr(Tracker, "log_artifact", _one_file_upload(raise_after=False))
    result = run_experiment(config)
    monkeypatch.undo()
    assert result.verdict == "BLOCK" and result.champion_version is None
    failed = {c.name: c.reason for c in result.decision.failed}
    assert "checkpoint: 1 file(s) stored" in failed["evidence_intact"]
    assert tracker.registry_snapshot(config.registry.model_name) == before
    run = tracker.client.get_run(result.run_id)
    assert run.info.status == "FINISHED" and run.data.tags["harness.verdict"] == "BLOCK"


def test_crash_after_the_decision_before_the_alias_moves(champion_dir, model_cache, monkeypatch, capsys):
    """Generations used to be written after the alias moved: a crash there left a FAILED run as champion."""
    config, tracker, before = _setup(champion_dir, model_cache)

    def crash(*a, **k):
        raise OSError("injected: disk full while writing generations")

    monkeypatch.setattr("harness.experiment._write_generations", crash)
    with pytest.raises(OSError, match="disk full"):
        run_experiment(config)
    run = _latest_run(tracker)
    assert run.info.status == "FAILED"
    assert tracker.registry_snapshot(config.registry.model_name) == before
    _refused(config, run.info.run_id, capsys)


@pytest.mark.parametrize("point", ["promotion:before_alias", "promotion:after_alias"])
def test_crash_around_the_alias_move(champion_dir, model_cache, point):
    config, tracker, before = _setup(champion_dir, model_cache)

    def crash(*a):
        raise RuntimeError(f"injected at {point}")

    result = run_experiment(config, hooks={point: crash})
    assert result.verdict == "BLOCK" and result.champion_version is None
    assert f"injected at {point}" in result.decision.first_failure
    assert tracker.registry_snapshot(config.registry.model_name) == before  # restored: old champion, no new version
    run = tracker.client.get_run(result.run_id)
    assert run.info.status == "FINISHED" and run.data.tags["harness.verdict"] == "BLOCK"
    assert run.data.tags["harness.promoted"] == "false"


def test_a_clean_run_promotes_last_with_its_evidence(champion_dir, model_cache):
    """The control: nothing injected, the same path promotes, after the run ended FINISHED."""
    config, tracker, before = _setup(champion_dir, model_cache)
    seen = {}

    def after_alias(version):
        run = _latest_run(tracker)
        seen.update(status=run.info.status, artifacts={a.path for a in tracker.client.list_artifacts(run.info.run_id)})

    result = run_experiment(config, hooks={"promotion:after_alias": after_alias})
    assert result.verdict == "PROMOTE" and result.champion_version
    assert seen["status"] == "FINISHED"  # the run had ended before the alias moved...
    assert {"generations.jsonl", "report.html", "gate_decision.json", "checkpoint"} <= seen["artifacts"]  # ...complete
    assert tracker.champion(config.registry.model_name, config.registry.alias) == (result.champion_version, result.run_id)
    assert tracker.version_tags(config.registry.model_name, result.champion_version)["harness.validated"] == "true"
