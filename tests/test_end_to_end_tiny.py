"""The whole path on embedded:tiny: TRL training, real evals, MLflow, gate, registry, report."""
import json

import pytest

from harness.cli import main
from harness.config import GateRule
from harness.lifecycle import run_experiment
from harness.tracking import Tracker
from tests.conftest import REPO, tiny_config


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, model_cache):
    out = tmp_path_factory.mktemp("tiny-e2e")
    config = tiny_config(out, model_cache)
    return config, run_experiment(config, config_path="experiments/tiny.yaml")


def test_training_moves_the_dpo_margin(tiny_run):
    _, result = tiny_run
    history = Tracker(tiny_run[0].output_dir, "tiny").client.get_metric_history(result.run_id, "train/rewards/margins")
    margins = [m.value for m in sorted(history, key=lambda m: m.step)]
    assert len(margins) == tiny_run[0].training.max_steps
    assert sum(margins[-3:]) / 3 > sum(margins[:2]) / 2 + 0.05, margins


def test_run_is_recorded_in_mlflow_with_eval_metrics_verdict_and_artifacts(tiny_run):
    config, result = tiny_run
    tracker = Tracker(config.output_dir, config.name)
    run = tracker.client.get_run(result.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.tags["harness.cell"] == result.cell
    assert run.data.tags["harness.verdict"] == result.verdict
    for key in ("winrate/lc_win_rate_pct", "winrate/win_rate_pct", "kl/seq_kl_k1", "kl/seq_kl_k1_stderr",
                "length/ratio_tokens", "chosen_logp/chosen_delta", "domain_arith_mc/acc", "winrate/verbosity_alarm",
                "diversity/distinct_2", "diversity/self_similarity", "diversity/collapse_alarm"):
        assert key in run.data.metrics, key
    artifacts = {a.path for a in tracker.client.list_artifacts(result.run_id)}
    assert {"gate_decision.json", "report.html", "generations.jsonl", "checkpoint"} <= artifacts
    adapter = {a.path for a in tracker.client.list_artifacts(result.run_id, "checkpoint")}
    assert "checkpoint/adapter_model.safetensors" in adapter
    assert not any(p.endswith((".bin", ".pt")) for p in adapter)


def test_promotion_moves_the_champion_alias_only_on_promote(tiny_run):
    config, result = tiny_run
    champion = Tracker(config.output_dir, config.name).champion(config.registry.model_name, config.registry.alias)
    if result.verdict == "PROMOTE":
        assert champion is not None and champion[1] == result.run_id
    else:
        assert champion is None


def test_report_has_checks_metrics_and_samples(tiny_run):
    _, result = tiny_run
    html = open(result.report, encoding="utf-8").read()
    assert result.cell in html and "lc_beats_reference" in html and "kl/seq_kl_k3" in html
    assert "<script>alert" not in html


def test_a_cell_that_changed_nothing_is_blocked_by_the_shipped_rules(tmp_path, model_cache, capsys):
    # learning_rate 0: the LoRA B matrices stay at their zero init, so the policy IS the reference.
    # Through the CLI a user types, with experiments/tiny.yaml's own rules (nothing switched on).
    out = tmp_path / "runs"
    code = main(["run", "experiments/tiny.yaml", "--set", f"output_dir={out}", "--set", f"cache_dir={model_cache}",
                 "--set", "training.learning_rate=0", "--set", "training.max_steps=1", "--json"])
    payload = json.loads(capsys.readouterr().out)
    m = payload["metrics"]
    assert m["winrate/win_rate_pct"] == 50.0 and m["winrate/win_rate_pct_stderr"] == 0.0
    assert abs(m["kl/seq_kl_k1"]) < 1e-6 and m["kl/seq_kl_k3"] < 1e-6
    assert m["length/ratio_tokens"] == pytest.approx(1.0)
    assert abs(m["chosen_logp/chosen_delta"]) < 1e-6
    assert code == 1 and payload["verdict"] == "BLOCK"
    failed = {c["name"]: c["reason"] for c in payload["checks"] if not c["passed"]}
    # the reason names the bound that could not be shown
    assert "lower bound at 95%" in failed["lc_beats_reference"]
    tracker = Tracker(out, "tiny")
    assert tracker.champion("po-harness-tiny", "champion") is None


def test_a_crashed_eval_blocks_and_leaves_the_champion_alone(tmp_path, model_cache, capsys):
    config = tiny_config(tmp_path, model_cache)
    first = run_experiment(config)  # may promote: becomes the champion
    tracker = Tracker(config.output_dir, config.name)
    before = tracker.registry_snapshot(config.registry.model_name)

    def boom(metrics):
        raise RuntimeError("injected KL failure")

    result = run_experiment(config, hooks={"eval:kl": boom})
    assert result.verdict == "BLOCK"
    assert "kl" in result.errors
    assert any("injected KL failure" in c.reason for c in result.decision.failed)
    assert tracker.registry_snapshot(config.registry.model_name) == before
    run = tracker.client.get_run(result.run_id)
    assert run.data.tags["harness.verdict"] == "BLOCK" and "kl" in run.data.tags["harness.failed_checks"]
    assert first.run_id != result.run_id


def test_cli_json_output_and_exit_code(tmp_path, model_cache, capsys):
    code = main(["run", "experiments/tiny.yaml", "--set", f"output_dir={tmp_path}", "--set", f"cache_dir={model_cache}",
                 "--set", "training.max_steps=2", "--set", "eval.domain_tasks=[]", "--json"])
    payload = json.loads(capsys.readouterr().out)
    assert {"run_id", "cell", "verdict", "metrics", "checks", "report"} <= payload.keys()
    assert code == (0 if payload["verdict"] == "PROMOTE" else 1)
    # what a reader of --json needs to trust the headline numbers (issue 18): whether LC is identified, the
    # style-controlled win rate with its interval (or why it is missing), and how many answers were cut
    m = payload["metrics"]
    assert m["winrate/lc_identified"] in (0.0, 1.0) and 0 <= m["length/truncated_pct"] <= 100
    if m["winrate/style_identified"] == 1.0:
        low, high = m["winrate/style_controlled_pct_ci_low"], m["winrate/style_controlled_pct_ci_high"]
        assert low <= m["winrate/style_controlled_pct"] <= high
    else:
        assert "winrate/style_controlled_pct" not in m


def test_gate_command_redecides_a_recorded_run_and_promote_refuses_unvalidated(tiny_run, tmp_path, capsys):
    config, result = tiny_run
    out = str(config.output_dir)
    assert main(["gate", result.run_id, "--output-dir", out, "--json"]) == (0 if result.verdict == "PROMOTE" else 1)
    payload = json.loads(capsys.readouterr().out)
    assert payload["verdict"] == result.verdict and len(payload["checks"]) == len(result.decision.checks)
    # stricter rules now: the same recorded run no longer ships, without retraining
    strict = tmp_path / "strict.yaml"
    shipped = (REPO / "experiments" / "tiny.yaml").read_text()
    strict.write_text(shipped.replace("metric: kl/seq_kl_k3, max: 50", "metric: kl/seq_kl_k3, max: 0.0"))
    # a re-gate with other rules is recorded under its own tag and never rewrites the run's verdict
    assert main(["gate", result.run_id, "--output-dir", out, "--config", str(strict), "--json"]) == 1
    regated = json.loads(capsys.readouterr().out)
    tracker = Tracker(config.output_dir, config.name)
    tags = tracker.client.get_run(result.run_id).data.tags
    assert tags["harness.verdict"] == result.verdict and tags[regated["recorded_as"]] == "BLOCK"
    before = tracker.registry_snapshot(config.registry.model_name)
    if result.verdict != "PROMOTE":
        assert main(["promote", result.run_id, "--output-dir", out]) == 1
        assert tracker.registry_snapshot(config.registry.model_name) == before
    assert tracker.registry_snapshot(config.registry.model_name) == before
    assert main(["promote", result.run_id, "--output-dir", out, "--force"]) == 2  # --force needs --reason
    assert main(["promote", result.run_id, "--output-dir", out, "--force", "--reason", "manual override"]) == 0
    tags = tracker.client.get_run(result.run_id).data.tags
    assert tags["harness.forced"] == "true" and tags["harness.force_reason"] == "manual override"
    assert main(["gate", "no-such-run", "--output-dir", out]) == 2


def _registered_evals() -> dict[str, str]:
    """Every registered eval a single cell runs (the `*_vs_start` ones run only in iterative rounds), with
    the first metric it declares: the fault catalog grows with the registry, never by hand."""
    from evals.catalog import known_metrics
    from evals.registry import EVALS

    known = known_metrics()
    return {name: next(k for k in known if k.startswith(EVALS.get(name).owns))
            for name in EVALS if not name.endswith("_vs_start")}


EVALS = _registered_evals()


@pytest.fixture(scope="module")
def champion_dir(tmp_path_factory, model_cache):
    """A registry with a champion already in it; every faulty run below must leave it alone."""
    out = tmp_path_factory.mktemp("fault-injection")
    config = tiny_config(out, model_cache, **FAST)
    first = run_experiment(config.model_copy(update={"gate": config.gate.model_copy(
        update={"rules": [], "allow_promote_without_rules": True})}))
    assert first.verdict == "PROMOTE"
    return out


FAST = {"training.max_steps": 1, "eval.n_prompts": 8, "eval.kl.n_prompts": 4, "eval.domain_limit": 8,
        "eval.n_bootstrap": 0}


def _nan_partner(eval_name: str) -> str:
    """The eval whose metrics turn NaN in the same run as `eval_name` crashes: the next one in the registry
    with a metric to corrupt (an uncalibrated judge produces none; its absence already blocks a judge rule).
    Pairing the two faults halves the runs; each still has its own failing check to find."""
    names = list(EVALS)
    return next(n for n in names[names.index(eval_name) + 1:] + names if n not in (eval_name, "judge"))


def test_every_eval_is_crashed_once_and_corrupted_once_by_the_fault_injection_below():
    assert {_nan_partner(name) for name in EVALS} == set(EVALS) - {"judge"}


@pytest.mark.parametrize("eval_name", list(EVALS))
def test_fault_injection_in_any_eval_blocks_and_keeps_the_champion(eval_name, champion_dir, model_cache):
    """One eval raises and another's metrics turn NaN, in every registered eval (each raises once and is
    corrupted once across the parametrisation): the crash is blamed on exactly the eval that raised, the NaN
    fails the rule that reads it, and the champion stays where it was."""
    import math

    corrupted = _nan_partner(eval_name)
    config = tiny_config(champion_dir, model_cache, **FAST)
    tracker = Tracker(config.output_dir, config.name)
    before = tracker.registry_snapshot(config.registry.model_name)

    def crash(metrics):
        raise RuntimeError(f"injected failure in {eval_name}")

    def nan(metrics):
        return {k: math.nan for k in metrics}

    # permissive point rules on a metric each eval owns, so that only the faults can block
    permissive = [GateRule(name=f"{name}_reads", metric=EVALS[name], min=-1e9, max=1e9, statistic="point")
                  for name in (eval_name, corrupted)]
    config = config.model_copy(update={"gate": config.gate.model_copy(update={"rules": permissive})})
    result = run_experiment(config, hooks={f"eval:{eval_name}": crash, f"eval:{corrupted}": nan})
    assert result.verdict == "BLOCK", result.decision.to_dict()
    failed = {c.name: c.reason for c in result.decision.failed}
    # blamed on exactly the eval that raised: its own required check fails, and the rule reading it
    assert [name for name in failed if name.endswith("_ran")] == [f"{eval_name}_ran"]
    assert f"eval '{eval_name}' failed" in failed[f"{eval_name}_reads"]
    # the NaN is not a number the gate can pass, whatever the rule's bounds (a NaN champion version: the
    # head-to-head cannot say which champion it was measured against)
    assert any(why in failed[f"{corrupted}_reads"] for why in ("not a finite number", "no head-to-head")), failed
    assert tracker.registry_snapshot(config.registry.model_name) == before


def test_eval_prompts_from_a_file_are_exactly_the_prompts_evaluated(tmp_path, model_cache, capsys):
    from harness.data.verifiable import make_prompts

    made = make_prompts(6, 7, split="eval")
    prompts_file = tmp_path / "my_eval.jsonl"
    prompts_file.write_text("".join(json.dumps({"prompt": f"Custom eval prompt {i}: {p.text}",
                                                "instructions": p.to_dict()["instructions"]}) + "\n"
                                    for i, p in enumerate(made)))
    out = tmp_path / "runs"
    code = main(["run", "experiments/tiny.yaml", "--set", f"output_dir={out}", "--set", f"cache_dir={model_cache}",
                 "--set", "training.max_steps=1", "--set", "eval.domain_tasks=[]", "--set", f"eval.prompts={prompts_file}",
                 "--json"])
    payload = json.loads(capsys.readouterr().out)
    assert code in (0, 1) and payload["metrics"]["winrate/n"] == 6
    cell_dir = next((out / "cells").iterdir())
    evaluated = [json.loads(line)["prompt"] for line in (cell_dir / "generations.jsonl").read_text().splitlines()]
    assert evaluated == [f"Custom eval prompt {i}: {p.text}" for i, p in enumerate(made)]


def test_a_sequential_eval_stops_early_and_agrees_with_the_full_size_run(tmp_path, model_cache, capsys):
    """eval.sequential through the CLI: 48 prompts judged 8 at a time under a non-inferiority rule on the
    raw win rate, and the 120 arithmetic documents evaluated 16 at a time under one on their accuracy; the
    tiny cell's answers mostly tie and its documents mostly keep their outcome, which the anytime bounds
    show well inside the 30-point margins before the budgets. The same cell evaluated in full reaches the
    same verdict."""
    rules = ("[{name: raw_not_worse, metric: winrate/win_rate_pct, max_regression: 30},"
             " {name: arith_not_worse, metric: domain_arith_mc/acc, max_regression: 0.3}]")
    common = ["experiments/tiny.yaml", "--set", f"cache_dir={model_cache}", "--set", "training.max_steps=2",
              "--set", "eval.domain_tasks=[harness_arith_mc]", "--set", "eval.domain_limit=120",
              "--set", "eval.n_prompts=48", "--set", f"gate.rules={rules}", "--json"]
    runs = {}
    for name, extra in (("sequential", ["--set", "eval.sequential.batch_prompts=8"]), ("full", [])):
        code = main(["run", *common, "--set", f"output_dir={tmp_path / name}", *extra])
        runs[name] = (code, json.loads(capsys.readouterr().out))
    seq_code, seq = runs["sequential"]
    full_code, full = runs["full"]
    m = seq["metrics"]
    assert m["winrate/sequential_stopped_early"] == 1.0
    assert m["winrate/sequential_prompts_used"] < 48 == m["winrate/sequential_max_prompts"]
    assert m["winrate/sequential_judge_calls"] == 2 * m["winrate/sequential_prompts_used"] == 2 * m["winrate/n"]
    assert full["metrics"]["winrate/n"] == 48 and "winrate/sequential_prompts_used" not in full["metrics"]
    assert seq["verdict"] == full["verdict"] and seq_code == full_code
    (check,) = [c for c in seq["checks"] if c["name"] == "raw_not_worse"]
    assert "anytime-valid" in check["reason"]
    # the domain task stopped early too, decided on its paired differences' anytime bound
    assert m["domain_arith_mc/sequential_stopped_early"] == 1.0
    assert m["domain_arith_mc/sequential_items_used"] == m["domain_arith_mc/acc_n"] < 120
    assert full["metrics"]["domain_arith_mc/acc_n"] == 120 and "domain_arith_mc/sequential_items_used" not in full["metrics"]
    (check,) = [c for c in seq["checks"] if c["name"] == "arith_not_worse"]
    assert "anytime-valid" in check["reason"] and check["passed"]
    # the page shows the bound against the prompts judged, with the stop
    page = (next((tmp_path / "sequential" / "cells").iterdir()) / "report.html").read_text()
    assert "plot-sequential" in page and "stopped at" in page
