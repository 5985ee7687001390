"""eval.sequential on the domain tasks (evals.domain.sequential_domain): a policy of known per-item truth
answered batch by batch through the eval's own loop (lm-eval replaced by a table of outcomes), decided by the
gate on what the eval recorded. The allowed regression is decided on the per-item paired differences by a
betting confidence sequence, so the error rate holds under the eval's optional stopping; a fixed-n bound
(Tango's, which the gate reads after a full-size run) read after such a stop would not."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

import evals.domain as domain
from evals.catalog import known_metrics
from evals.domain import DomainResult, sequential_domain
from harness.config import EvalConfig, GateRule, SequentialConfig
from harness.gate import BLOCK, PROMOTE, gate, sequential_targets

TASK, NAME = "harness_arith_mc", "domain_arith_mc"
METRIC = f"{NAME}/acc"
RULE = GateRule(name="arith_not_worse", metric=METRIC, max_regression=0.10, against="reference")


def _outcomes(rng, n: int, lost: float, gained: float, base_acc: float = 0.6):
    """Reference and policy 0/1 outcomes per document: a share `lost` of documents the reference got right
    and the policy wrong, `gained` the other way (true paired difference gained - lost)."""
    u = rng.random(n)
    lose, gain = u < lost, (u >= lost) & (u < lost + gained)
    reference = np.where(lose, 1.0, np.where(gain, 0.0, (rng.random(n) < base_acc).astype(float)))
    policy = np.where(lose, 0.0, np.where(gain, 1.0, reference))
    return reference, policy


def _cell(tmp_path, monkeypatch, reference, policy, *, batch: int = 16, rules=(RULE,), family_size: int = 1):
    """A context whose lm-eval runs read `policy` by document id, and the reference's cached measurement."""
    calls: list[list[int]] = []

    def fake_run(model, tokenizer, tasks, *, samples, **kw):
        assert tasks == [TASK] and list(samples) == [TASK]
        ids = sorted(samples[TASK])
        calls.append(ids)
        return DomainResult(summary={}, per_item={NAME: [float(policy[i]) for i in ids]}, doc_ids={NAME: ids})

    monkeypatch.setattr(domain, "run_domain_evals", fake_run)
    e = EvalConfig(domain_tasks=[TASK], domain_limit=len(reference),
                   sequential=SequentialConfig(batch_items=batch))
    ctx = SimpleNamespace(eval=e, config=SimpleNamespace(seed=0), cache_dir=tmp_path, policy=None, tokenizer=None,
                          policy_fingerprint="policy", reference_fingerprint="reference", start_fingerprint="",
                          sequential_targets=sequential_targets(list(rules), known_metrics(), family_size))
    measured = {"summary": {METRIC: float(np.mean(reference))}, "per_item": {NAME: list(map(float, reference))},
                "doc_ids": {NAME: list(range(len(reference)))}}
    return ctx, measured, calls


def _decide(tmp_path, monkeypatch, reference, policy, **kw):
    ctx, measured, calls = _cell(tmp_path, monkeypatch, reference, policy, **kw)
    out = sequential_domain(ctx, measured, None)
    decision = gate(out.metrics, {"reference": out.reference}, list(kw.get("rules", (RULE,))), specs=known_metrics(),
                    family_size=kw.get("family_size", 1))
    return out, decision, calls


def test_an_unchanged_policy_is_shown_non_inferior_before_the_whole_task(tmp_path, monkeypatch):
    reference, _ = _outcomes(np.random.default_rng(0), 123, 0.0, 0.0)
    out, decision, calls = _decide(tmp_path, monkeypatch, reference, reference)
    m = out.metrics
    assert decision.verdict == PROMOTE, decision.first_failure
    assert m[f"{NAME}/sequential_stopped_early"] == 1.0
    # no change at all: the paired differences are all 0 and the 10-point margin is shown in 56 documents
    # (the bet's capital grows by (1 + 0.05 lambda) per document); batches of 16 -> 64
    assert m[f"{NAME}/sequential_items_used"] == 64 == m[f"{NAME}/acc_n"] < m[f"{NAME}/sequential_max_items"] == 123
    assert len(calls) == 4 and all(len(c) == 16 for c in calls)
    assert len({i for c in calls for i in c}) == 64  # no document asked twice
    (check,) = decision.checks
    assert "anytime-valid, 64 items" in check.reason
    assert check.confidence_bound == pytest.approx(-m[f"{NAME}/acc_delta_anytime_low"])
    # the report's baseline is the reference on the same documents, not on all 123
    used = sorted(i for c in calls for i in c)
    assert out.reference[METRIC] == pytest.approx(np.mean(reference[used]))
    assert out.extras["sequential"][NAME][0]["looks"][-1]["n"] == 64


def test_a_clear_regression_fails_early_and_never_passes(tmp_path, monkeypatch):
    reference, policy = _outcomes(np.random.default_rng(1), 400, 0.45, 0.0)
    out, decision, _ = _decide(tmp_path, monkeypatch, reference, policy)
    assert decision.verdict == BLOCK
    assert out.metrics[f"{NAME}/sequential_stopped_early"] == 1.0  # shown worse than the margin: stop
    assert out.metrics[f"{NAME}/sequential_items_used"] < 400


def test_the_documents_come_in_a_seeded_random_order(tmp_path, monkeypatch):
    order = domain._item_order(list(range(100)), 0, NAME)
    assert order != list(range(100)) and sorted(order) == list(range(100))
    assert domain._item_order(list(range(100)), 0, NAME) == order
    assert domain._item_order(list(range(100)), 1, NAME) != order


def test_a_rule_at_a_higher_level_than_recorded_fails_closed(tmp_path, monkeypatch):
    """No rule on the task during the eval: its bounds are recorded at eval.sequential.confidence (95%); a
    re-gate asking 99% cannot be shown from them (never a fixed-n bound instead)."""
    reference, _ = _outcomes(np.random.default_rng(2), 64, 0.0, 0.0)
    out, _, _ = _decide(tmp_path, monkeypatch, reference, reference, rules=())
    assert out.metrics[f"{NAME}/sequential_items_used"] == 64  # nothing to decide: every document
    strict = RULE.model_copy(update={"confidence": 0.99})
    decision = gate(out.metrics, {"reference": out.reference}, [strict], specs=known_metrics())
    assert decision.verdict == BLOCK and "anytime-valid bound" in decision.checks[0].reason
    assert gate(out.metrics, {"reference": out.reference}, [RULE], specs=known_metrics()).verdict == PROMOTE


def test_targets_map_domain_regressions_to_their_paired_differences():
    specs = known_metrics()
    vs_start = RULE.model_copy(update={"against": "start", "name": "vs_start"})
    relative = RULE.model_copy(update={"relative": True, "name": "relative"})
    targets = sequential_targets([RULE, vs_start, relative], specs, family_size=4)
    assert set(targets) == {f"{METRIC}_delta", f"{METRIC}_delta_vs_start"}
    (rule,) = targets[f"{METRIC}_delta"]
    assert (rule.kind, rule.threshold, rule.confidence) == ("max_regression", 0.10, pytest.approx(1 - 0.05 / 4))


@pytest.mark.parametrize("lost, gained", [(0.10, 0.0), (0.15, 0.05)])
def test_a_regression_at_the_margin_passes_at_most_at_the_stated_rate(tmp_path, monkeypatch, lost, gained):
    """True drop = the 10-point margin exactly, 123 documents (the built-in task size), looked at every 16:
    the gate may promote at most 5% of such cells (Monte-Carlo error: 3 sd of 200 cells is 4.6 points)."""
    rng = np.random.default_rng(3)
    promoted, used = 0, []
    for k in range(200):
        reference, policy = _outcomes(rng, 123, lost, gained)
        out, decision, _ = _decide(tmp_path / str(k), monkeypatch, reference, policy)
        promoted += decision.verdict == PROMOTE
        used.append(out.metrics[f"{NAME}/sequential_items_used"])
    assert promoted / 200 <= 0.05 + 3 * np.sqrt(0.05 * 0.95 / 200)


def test_an_unchanged_policy_with_flips_both_ways_is_usually_shown_non_inferior(tmp_path, monkeypatch):
    """Power, planted: 5% of documents lost and 5% gained (no true change) on 400 documents passes the
    10-point margin in almost every cell, most before the budget (measured 99.9% in bench/sequential_validity)."""
    rng = np.random.default_rng(4)
    verdicts, used = [], []
    for k in range(40):
        reference, policy = _outcomes(rng, 400, 0.05, 0.05)
        out, decision, _ = _decide(tmp_path / str(k), monkeypatch, reference, policy)
        verdicts.append(decision.verdict)
        used.append(out.metrics[f"{NAME}/sequential_items_used"])
    assert verdicts.count(PROMOTE) >= 36
    assert np.mean(used) < 200


def test_a_raised_domain_limit_continues_the_test_the_first_run_planned(tmp_path, monkeypatch):
    """A task undecided at domain_limit 64, rerun at 123: the rerun takes the first run's 64 documents in the
    same order, then the added ones; its bets stay tuned to 64 (evals.sequential.recorded_plan), so its first
    looks are the first run's looks, bound for bound: one test, continued, not a second one on the same items."""
    reference, policy = _outcomes(np.random.default_rng(5), 123, 0.10, 0.0)
    first, _, first_calls = _decide(tmp_path, monkeypatch, reference[:64], policy[:64])
    assert first.metrics[f"{NAME}/sequential_items_used"] == 64 == first.metrics[f"{NAME}/sequential_planned_items"]
    second, _, second_calls = _decide(tmp_path, monkeypatch, reference, policy)
    assert second.metrics[f"{NAME}/sequential_planned_items"] == 64
    assert second_calls[: len(first_calls)] == first_calls
    assert all(i >= 64 for c in second_calls[len(first_calls):] for i in c)  # then the documents the limit added
    for before, after in zip(first.extras["sequential"][NAME], second.extras["sequential"][NAME]):
        bounds = [(look["n"], look["low"], look["high"]) for look in before["looks"]]
        assert [(look["n"], look["low"], look["high"]) for look in after["looks"]][: len(bounds)] == bounds
    # a first run at 123 in another cache plans for 123 and takes the documents in another order
    _, _, fresh_calls = _decide(tmp_path / "other", monkeypatch, reference, policy)
    assert fresh_calls[0] != first_calls[0]


def test_a_lowered_domain_limit_keeps_the_first_runs_order_over_the_documents_left(tmp_path, monkeypatch):
    reference, policy = _outcomes(np.random.default_rng(6), 100, 0.10, 0.0)
    _, _, first_calls = _decide(tmp_path, monkeypatch, reference, policy)
    out, _, second_calls = _decide(tmp_path, monkeypatch, reference[:50], policy[:50])
    first_order = [i for c in first_calls for i in c]  # each call is sorted; compare as the sets per look
    kept = [i for i in domain._planned_order(list(range(100)), 100, 0, NAME) if i < 50]
    assert [i for c in second_calls for i in c] == [i for k in range(0, len(kept), 16) for i in sorted(kept[k:k + 16])]
    assert set(second_calls[0]) <= set(first_order[:32])  # the first run's early documents come first again
    assert out.metrics[f"{NAME}/sequential_planned_items"] == 100
