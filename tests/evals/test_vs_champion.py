"""Head to head with the champion (evals.vs_champion): the eval judges the policy's answers against the
champion's on the same prompts, the gate reads it for a rule `against: champion` on a win rate (bounds by
hand), refuses it when it crashed or was measured against another champion (also through the locked
promotion), the report shows the three-way picture escaped, and one end-to-end pair of tiny runs:
the second, judged against the first (the champion), records `winrate_vs_champion/*`, and
`harness compare RUN2 RUN1 --json` reproduces every number exactly."""
from __future__ import annotations

import json
import math
from statistics import NormalDist

import pytest

from evals.catalog import known_metrics
from evals.generation import Completion
from evals.pairwise import head_to_head
from evals.vs_champion import CHAMPION_VERSION, HEAD_TO_HEAD
from harness.config import GateRule
from harness.gate import BLOCK, PROMOTE, REGISTERED_VERSION, gate, rules_for
from tests.conftest import tiny_config

SPECS = known_metrics()
Z95 = NormalDist().inv_cdf(0.95)
LC, RAW = "winrate/lc_win_rate_pct", "winrate/win_rate_pct"
H2H_LC, H2H_RAW = f"{HEAD_TO_HEAD}/lc_win_rate_pct", f"{HEAD_TO_HEAD}/win_rate_pct"
REFERENCE = {LC: 50.0, RAW: 50.0, "kl/seq_kl_k3": 0.0}


def _champion(version: int, **metrics: float) -> dict:
    """The champion baseline as harness.promotion.champion_baseline builds it: its run's metrics + its version."""
    return {LC: 70.0, "winrate/lc_win_rate_pct_stderr": 1.0, **metrics, REGISTERED_VERSION: float(version)}


def _decide(summary: dict, *rules: dict, champion: dict | None, errors: dict | None = None):
    return gate(summary, {"reference": REFERENCE, "champion": champion}, [GateRule(**r) for r in rules], specs=SPECS,
                errors=errors or {})


def _h2h(value: float, stderr: float, version: int = 3, metric: str = "lc_win_rate_pct") -> dict:
    # the win rate over the reference is 40 (below 50): a rule that read it instead would block every case
    return {LC: 40.0, f"{LC}_stderr": 1.0, f"{HEAD_TO_HEAD}/{metric}": value,
            f"{HEAD_TO_HEAD}/{metric}_stderr": stderr, CHAMPION_VERSION: float(version)}


# ---------------------------------------------------------------------------------- the gate


@pytest.mark.parametrize("value, stderr, verdict", [
    (58.0, 4.0, PROMOTE),  # lower bound 58 - 1.645 * 4 = 51.42 > 50
    (58.0, 6.0, BLOCK),  # 58 - 1.645 * 6 = 48.13 <= 50
    (50.0, 0.0, BLOCK),  # a tie with no spread only touches 50: shows nothing
])
def test_min_50_against_the_champion_needs_the_head_to_head_lower_bound_above_50(value, stderr, verdict):
    rule = {"name": "beats_champion", "metric": LC, "min": 50, "against": "champion"}
    decision = _decide(_h2h(value, stderr), rule, champion=_champion(3))
    check = decision.checks[0]
    assert decision.verdict == verdict, check.reason
    assert check.name == "beats_champion" and check.metric == H2H_LC and check.value == value
    assert check.confidence_bound == pytest.approx(value - Z95 * stderr) and check.bound == 50


@pytest.mark.parametrize("value, stderr, verdict", [
    (48.0, 1.5, PROMOTE),  # lower bound 48 - 1.645 * 1.5 = 45.53 > 50 - 5
    (48.0, 2.0, BLOCK),  # 48 - 1.645 * 2 = 44.71 <= 45
    (44.0, 0.0, BLOCK),  # shown worse than allowed
])
def test_max_regression_against_the_champion_is_paired_non_inferiority(value, stderr, verdict):
    """The unpaired comparison this replaces would read the champion's own LC (70, against its own
    reference) against the candidate's 40: a drop of 30, blocked whatever the head-to-head says."""
    for rule in ({"metric": LC, "max_regression": 5, "against": "champion"},
                 {"metric": LC, "max_regression": 0.1, "relative": True, "against": "champion"}):  # 10% of 50
        decision = _decide(_h2h(value, stderr), rule, champion=_champion(3))
        check = decision.checks[0]
        assert decision.verdict == verdict, check.reason
        assert (check.metric, check.bound, check.baseline, check.margin) == (H2H_LC, 45.0, 50.0, 5.0)
        assert check.confidence_bound == pytest.approx(value - Z95 * stderr)
    point = {"metric": LC, "max_regression": 5, "against": "champion", "statistic": "point"}
    assert _decide(_h2h(45.0, 9.0), point, champion=_champion(3)).verdict == PROMOTE  # 45 >= 45, no error rate


def test_every_compared_win_rate_is_read_head_to_head_and_nothing_else_is():
    summary = (_h2h(60.0, 1.0, metric="win_rate_pct") | _h2h(60.0, 1.0, metric="style_controlled_pct")
               | {"kl/seq_kl_k3": 0.5, "kl/seq_kl_k3_stderr": 0.1})
    rules = [{"metric": RAW, "min": 50, "against": "champion"},
             {"metric": "winrate/style_controlled_pct", "max_regression": 2, "against": "champion"},
             {"metric": LC, "min": 30},  # against the reference (the default): stays on the vs-reference value
             {"metric": "kl/seq_kl_k3", "max_regression": 1.0, "against": "champion"}]  # not a win rate: unpaired
    decision = _decide(summary, *rules, champion=_champion(3, **{"kl/seq_kl_k3": 0.4, "kl/seq_kl_k3_stderr": 0.1}))
    metrics = [c.metric for c in decision.checks]
    assert metrics == [H2H_RAW, f"{HEAD_TO_HEAD}/style_controlled_pct", LC, "kl/seq_kl_k3"]
    assert decision.verdict == PROMOTE, decision.to_dict()
    assert "unpaired" in decision.checks[3].reason


def test_with_no_champion_yet_the_rules_keep_their_first_promotion_meaning():
    """A floor `against: champion` reads the win rate over the reference (what it always did); an allowed
    regression against a champion that does not exist fails, as before."""
    summary = {LC: 60.0, f"{LC}_stderr": 2.0}  # lower bound 56.7
    floor = _decide(summary, {"metric": LC, "min": 50, "against": "champion"}, champion=None)
    assert floor.verdict == PROMOTE and floor.checks[0].metric == LC
    regression = _decide(summary, {"metric": LC, "max_regression": 5, "against": "champion"}, champion=None)
    assert regression.verdict == BLOCK and "no champion" in regression.checks[0].reason


def test_a_crashed_head_to_head_fails_the_champion_rule_whatever_it_left():
    errors = {HEAD_TO_HEAD: "EvidenceError: the champion's checkpoint no longer matches its hash"}
    decision = _decide(_h2h(80.0, 1.0), {"name": "beats_champion", "metric": LC, "min": 50, "against": "champion"},
                       champion=_champion(3), errors=errors)
    failed = {c.name: c.reason for c in decision.failed}
    assert decision.verdict == BLOCK
    assert "eval 'winrate_vs_champion' failed" in failed["beats_champion"] and "no longer matches" in failed["beats_champion"]
    assert f"{HEAD_TO_HEAD}_ran" in failed


def test_a_head_to_head_against_another_champion_cannot_pass():
    rule = {"metric": LC, "min": 50, "against": "champion"}
    moved = _decide(_h2h(80.0, 1.0, version=3), rule, champion=_champion(4))
    assert moved.verdict == BLOCK
    assert "champion version 3" in moved.checks[0].reason and "now version 4" in moved.checks[0].reason
    unknown = _champion(3)
    del unknown[REGISTERED_VERSION]  # a baseline that cannot say which champion it is
    assert "version is unknown" in _decide(_h2h(80.0, 1.0), rule, champion=unknown).checks[0].reason
    # measured before any champion existed; one exists now: no evidence against it
    none_measured = _decide({LC: 80.0, f"{LC}_stderr": 1.0}, rule, champion=_champion(1))
    assert none_measured.verdict == BLOCK and "no head-to-head" in none_measured.checks[0].reason
    # the alias was removed since: a rule written directly on the head-to-head metric has nothing to compare with
    gone = _decide(_h2h(80.0, 1.0), {"metric": H2H_LC, "min": 50}, champion=None)
    assert gone.verdict == BLOCK and "no champion now" in gone.checks[0].reason


def test_against_on_the_command_line_re_points_regressions_only(tmp_path, model_cache):
    config = tiny_config(tmp_path, model_cache)
    config = config.model_copy(update={"gate": config.gate.model_copy(update={"rules": [
        GateRule(metric=LC, min=50), GateRule(metric="kl/seq_kl_k3", max_regression=1.0)]})})
    floor, regression = rules_for(config, iterating=False, against="champion")
    assert floor.against == "reference" and regression.against == "champion"


# ---------------------------------------------------------------------------------- the eval


def _longer_wins(self, items):
    """A judge whose verdicts can be computed by hand: the longer answer wins, equal lengths tie."""
    return [2.0 if len(i.output_2) > len(i.output_1) else 1.0 if len(i.output_1) > len(i.output_2) else 1.5
            for i in items]


def test_the_eval_judges_the_policy_against_the_champions_answers(tmp_path, model_cache, monkeypatch):
    from evals.context import EvalContext
    from evals.judges import RuleJudge
    from evals.registry import EVALS
    from harness.data.verifiable import make_prompts

    monkeypatch.setattr(RuleJudge, "judge", _longer_wins)
    config = tiny_config(tmp_path, model_cache, **{"eval.n_bootstrap": 0})
    prompts = make_prompts(10, 0, split="eval")
    policy_lengths, champion_lengths = [5, 9, 3, 7, 7, 12, 2, 8, 6, 4], [4, 10, 3, 2, 9, 11, 1, 8, 9, 1]
    policy = [Completion(p.text, "p" * n, []) for p, n in zip(prompts, policy_lengths)]
    champion = [Completion(p.text, "<b>c</b>" + "c" * n, []) for p, n in zip(prompts, champion_lengths)]
    asked = []
    ctx = EvalContext(config=config, tokenizer=None, policy=None, policy_fingerprint="p", reference_fingerprint="r",
                      prompts=prompts, reference_out=policy, policy_out=policy, cache_dir=tmp_path,
                      champion=("3", "champion-run"), champion_answers=lambda: asked.append(1) or champion)
    spec = EVALS.get(HEAD_TO_HEAD)
    assert spec.when(ctx) and not spec.when(EvalContext(config, None, None, "p", "r", prompts, policy, policy, tmp_path))
    out = spec.run(ctx)
    # by hand: "<b>c</b>" adds 8 characters to each champion answer
    scores = [1.0 if p > c + 8 else 0.0 if p < c + 8 else 0.5 for p, c in zip(policy_lengths, champion_lengths)]
    assert out.metrics[H2H_RAW] == pytest.approx(100 * sum(scores) / len(scores))
    assert out.metrics[CHAMPION_VERSION] == 3.0 and asked == [1]
    summary, verdicts = head_to_head(prompts, champion, policy, config.eval, seed=config.seed, cache_dir=tmp_path)
    assert {k: v for k, v in out.metrics.items() if k != CHAMPION_VERSION} == {
        f"{HEAD_TO_HEAD}/{k.split('/', 1)[1]}": v for k, v in summary.items()}
    assert [s["champion_verdict"] for s in out.extras["champion_samples"]] == verdicts
    assert out.tags == {"harness.vs_champion.version": "3", "harness.vs_champion.run_id": "champion-run"}


# ---------------------------------------------------------------------------------- promotion


def test_promotion_refuses_a_head_to_head_once_the_champion_moved(tmp_path):
    """Through the locked promotion path: a run judged against version 1 promotes while version 1 is the
    champion; once another version took the alias, a run judged against version 1 is blocked."""
    from harness.config import RegistryConfig
    from harness.promotion import force_promote, load_recorded, promote_run, regate
    from harness.tracking import Tracker
    from tests.harness.fake_cells import base_config, lc_metrics, record_fake_run

    registry = RegistryConfig(model_name="h2h-model")
    tracker = Tracker(tmp_path, "h2h")
    rules = [{"name": "beats_champion", "metric": LC, "min": 50, "against": "champion"}]
    config = base_config(tmp_path, rules=rules, model_name="h2h-model")

    def run(name: str, h2h_vs: int) -> str:
        metrics = lc_metrics(45.0, 1.0) | {H2H_LC: 60.0, f"{H2H_LC}_stderr": 2.0, CHAMPION_VERSION: float(h2h_vs)}
        return record_fake_run(tracker, config, metrics, cell=name)[0]

    def promote(run_id: str):
        tracker.attach(run_id)
        recorded = load_recorded(tracker, run_id)
        return promote_run(tracker, registry, lambda champ: regate(recorded, champ), cell=recorded.cell)

    seed = run("seed", 0)
    tracker.attach(seed)
    assert force_promote(tracker, registry, cell="seed", reason="seed champion", user="tester") == "1"
    first, late = run("first", 1), run("late", 1)
    promoted = promote(first)
    assert promoted.decision.verdict == PROMOTE and promoted.version == "2"
    blocked = promote(late)  # judged against version 1, decided against version 2
    assert blocked.decision.verdict == BLOCK and blocked.version is None
    reason = blocked.decision.checks[0].reason
    assert "champion version 1" in reason and "now version 2" in reason
    assert tracker.champion("h2h-model", registry.alias) == ("2", first)


# ---------------------------------------------------------------------------------- the report


EVIL = "<script>alert('champion')</script>"


def test_the_report_shows_the_champion_beside_reference_and_policy_escaped(tmp_path):
    from reports.experiment import build_context, render_html

    metrics = {RAW: 55.0, f"{RAW}_stderr": 3.0, f"{RAW}_ci_low": 49.1, f"{RAW}_ci_high": 60.9,
               H2H_RAW: 62.5, f"{H2H_RAW}_stderr": 4.0, f"{H2H_RAW}_ci_low": 54.7, f"{H2H_RAW}_ci_high": 70.3,
               f"{H2H_LC}_missing_reason": "not identified by these answers", CHAMPION_VERSION: 3.0}
    samples = [{"prompt": f"p {EVIL}", "reference": "ref answer", "policy": "policy answer", "verdict": 2.0,
                "champion": f"champion {EVIL}", "champion_verdict": 1.0, "reference_tokens": 4, "policy_tokens": 5}]
    result = {"run_id": "run-2", "metrics": metrics, "samples": samples, "champion": {"version": "3", "run_id": "run-1"},
              "checks": [{"name": "beats_champion", "metric": H2H_RAW, "passed": True, "reason": "ok"}]}
    context = build_context(result)
    rows = {row["key"]: row for row in context["head_to_head"]["rows"]}
    assert rows[H2H_RAW]["gated"] and rows[H2H_RAW]["value"].text == "62.5" and rows[H2H_LC]["missing"]
    assert context["head_to_head"]["command"] == "harness compare run-2 run-1 --json"
    html = render_html(result)
    assert EVIL not in html and "champion &lt;script&gt;" in html
    table = html[html.index('id="samples-table"'):]
    assert table.index("reference answer") < table.index("champion answer") < table.index("policy answer")
    assert "champion wins" in table and 'id="head-to-head-table"' in html
    assert "champion answer" not in render_html({"samples": [samples[0] | {"champion": None}]})


# ---------------------------------------------------------------------------------- end to end


FAST = {"training.max_steps": 2, "eval.n_prompts": 8, "eval.kl.n_prompts": 4, "eval.domain_tasks": "[]",
        "eval.diversity.n_prompts": 0, "eval.n_bootstrap": 0}


def _same(a, b) -> bool:
    return (isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b)) or a == b


def test_a_run_against_the_champion_records_the_head_to_head_and_compare_reproduces_it(
        tmp_path, model_cache, monkeypatch, capsys):
    from evals.judges import RuleJudge
    from harness.cli import main
    from harness.lifecycle import run_experiment
    from harness.tracking import Tracker
    from reports.from_mlflow import load_cell_result

    # the tiny model's answers satisfy no verifiable instruction, so the rule judge would tie everything
    monkeypatch.setattr(RuleJudge, "judge", _longer_wins)
    first_config = tiny_config(tmp_path, model_cache, **FAST, beta=0.1)
    first_config = first_config.model_copy(update={"gate": first_config.gate.model_copy(
        update={"rules": [], "allow_promote_without_rules": True})})
    first = run_experiment(first_config)
    assert first.verdict == PROMOTE and first.champion_version == "1"
    assert not any(k.startswith(f"{HEAD_TO_HEAD}/") for k in first.metrics)  # no champion to judge against then
    # what it registered is an MLflow Model that MLflow's own API loads by the alias and generates with, after a
    # real tiny run: the answers are the ones the pipeline judged (the head-to-head's champion answers below)
    import mlflow

    first_tracker = Tracker(first_config.output_dir, first_config.name)
    mlflow.set_tracking_uri(first_tracker.tracking_uri)
    mlflow.set_registry_uri(first_tracker.tracking_uri)
    served = mlflow.pyfunc.load_model(f"models:/{first_config.registry.model_name}@champion")
    judged = load_cell_result(first_tracker, first.run_id)["samples"][:2]
    assert served.predict([s["prompt"] for s in judged]) == [s["policy"] for s in judged]

    second_config = tiny_config(tmp_path, model_cache, **FAST, beta=0.5, **{"training.learning_rate": 0.01})
    rule = GateRule(name="not_worse_than_champion", metric=RAW, max_regression=50, against="champion")
    second_config = second_config.model_copy(update={"gate": second_config.gate.model_copy(update={"rules": [rule]})})
    second = run_experiment(second_config)
    m = second.metrics
    assert m[CHAMPION_VERSION] == 1.0 and m[f"{HEAD_TO_HEAD}/n"] == 8
    check = next(c for c in second.decision.checks if c.name == "not_worse_than_champion")
    assert check.metric == H2H_RAW and (check.bound, check.baseline) == (0.0, 50.0)
    assert check.confidence_bound == pytest.approx(m[H2H_RAW] - Z95 * m[f"{H2H_RAW}_stderr"])

    capsys.readouterr()
    assert main(["compare", second.run_id, first.run_id, "--json", "--output-dir", str(second_config.output_dir)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["answers"]["a"]["source"] == "cache" and out["answers"]["b"]["source"] == "cache"
    reproduced = {f"{HEAD_TO_HEAD}/{k.split('/', 1)[1]}": v for k, v in out["metrics"].items()}
    recorded = {k: v for k, v in m.items() if k.startswith(f"{HEAD_TO_HEAD}/") and k != CHAMPION_VERSION}
    assert reproduced.keys() == recorded.keys() and len(recorded) > 10
    assert all(_same(reproduced[k], recorded[k]) for k in recorded), {k: (reproduced[k], recorded[k]) for k in recorded}
    assert len({s["verdict"] for s in out["samples"]}) > 1  # the judge told the two apart somewhere
    # the command checks it too, against what MLflow holds for run 2 (its finite values)
    assert out["recorded_head_to_head"]["reproduced"] is True
    assert out["recorded_head_to_head"]["metrics"] == {k: v for k, v in recorded.items()
                                                       if isinstance(v, float) and math.isfinite(v)}

    # the three-way picture, rebuilt from MLflow: the champion's answers are run 1's own policy answers
    tracker = Tracker(second_config.output_dir, second_config.name)
    cell = load_cell_result(tracker, second.run_id)
    first_answers = [s["policy"] for s in load_cell_result(tracker, first.run_id)["samples"]]
    assert [s["champion"] for s in cell["samples"]] == first_answers == [s["b"] for s in out["samples"]]
    assert cell["champion"] == {"version": "1", "run_id": first.run_id}
    assert 'id="head-to-head-table"' in open(second.report, encoding="utf-8").read()



def test_compare_reproduces_a_sequential_head_to_head_on_the_prompts_it_judged():
    """A sequential head-to-head also records its stop and anytime bounds: state of its sequential test, which
    a fixed comparison on the same prompts does not recompute; every statistic must still match exactly."""
    from harness.compare import ComparisonResult

    recorded = {f"{HEAD_TO_HEAD}/win_rate_pct": 62.5, f"{HEAD_TO_HEAD}/win_rate_pct_stderr": 4.0,
                f"{HEAD_TO_HEAD}/sequential_prompts_used": 16.0, f"{HEAD_TO_HEAD}/win_rate_pct_anytime_low": 41.0}
    same = ComparisonResult("a", "b", "ca", "cb", 16, "rule", {RAW: 62.5, f"{RAW}_stderr": 4.0}, [], recorded=recorded)
    assert same.reproduces is True
    other = ComparisonResult("a", "b", "ca", "cb", 48, "rule", {RAW: 60.0, f"{RAW}_stderr": 2.0}, [], recorded=recorded)
    assert other.reproduces is False
