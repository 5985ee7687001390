"""Domain evals: deterministic data, rule checks, lm-eval runs on the tiny model, McNemar."""
from __future__ import annotations

import json
import random
import socket
from pathlib import Path

import pytest

from evals import domain_data
from evals.domain import (
    BUILTIN_TASKS,
    TASKS_DIR,
    _summary,
    eval_name,
    prepare_tasks,
    resolve_task,
    run_domain_evals,
)
from evals.metrics import METRICS
from evals.paired_accuracy import mcnemar_paired
from evals.tasks.format_checks import CHECKS, check_format, process_results

MODEL_CACHE = Path("/tmp/harness-test-cache")
ALL_TASKS = list(BUILTIN_TASKS)
LIMIT = 8


# --------------------------------------------------------------------------- data


def test_generators_are_deterministic_and_sized():
    a, b = domain_data.task_items(), domain_data.task_items()
    assert a == b
    assert len(a["arith_mc"]) == 120
    assert len(a["facts_mc"]) == 123
    assert len(a["format_gen"]) == 20
    assert domain_data.task_items(seed=1)["arith_mc"] != a["arith_mc"]
    for items in a.values():
        assert len({it["id"] for it in items}) == len(items)


def test_arith_gold_answers_are_correct():
    for it in domain_data.arith_items():
        assert 10 <= it["a"] <= 99 and 10 <= it["b"] <= 99
        gold = {"+": it["a"] + it["b"], "-": it["a"] - it["b"], "*": it["a"] * it["b"]}[it["op"]]
        values = [int(c) for c in it["choices"]]
        assert len(values) == 4 and len(set(values)) == 4
        assert values[it["answer"]] == gold
        assert values.count(gold) == 1
        assert str(it["a"]) in it["question"] and str(it["b"]) in it["question"]


def test_facts_gold_matches_table_and_distractors_share_category():
    table = {q: (cat, ans) for cat, q, ans in domain_data.facts_table()}
    by_cat: dict[str, set[str]] = {}
    for cat, ans in table.values():
        by_cat.setdefault(cat, set()).add(ans)
    assert table["What is the capital of Australia?"][1] == "Canberra"
    assert table["What is the chemical symbol for gold?"][1] == "Au"
    for it in domain_data.facts_items():
        cat, ans = table[it["question"]]
        assert it["choices"][it["answer"]] == ans
        assert len(set(it["choices"])) == 4
        assert set(it["choices"]) <= by_cat[cat]


def test_write_task_data_is_atomic_and_idempotent(tmp_path):
    paths = domain_data.write_task_data(tmp_path / "d")
    assert set(paths) == {"arith_mc", "facts_mc", "format_gen"}
    before = {k: (p.read_bytes(), p.stat().st_mtime_ns) for k, p in paths.items()}
    again = domain_data.write_task_data(tmp_path / "d")
    assert again == paths
    assert {k: (p.read_bytes(), p.stat().st_mtime_ns) for k, p in again.items()} == before
    assert sorted(x.name for x in (tmp_path / "d").iterdir()) == sorted(p.name for p in paths.values())
    rows = [json.loads(line) for line in paths["arith_mc"].read_text().splitlines()]
    assert rows == domain_data.arith_items()
    paths["arith_mc"].write_text("corrupt\n")  # a changed file is rewritten
    domain_data.write_task_data(tmp_path / "d")
    assert paths["arith_mc"].read_bytes() == before["arith_mc"][0]


# --------------------------------------------------------------------------- format checks

@pytest.mark.parametrize(
    "iid,arg,good,bad",
    [
        ("lowercase", "", "i like autumn because of the leaves.", "I like autumn."),
        ("uppercase", "", "BANANA", "Banana"),
        ("bullets", "3", "* pan\n* knife\n* spoon", "* pan\n* knife"),
        ("bullets", "2", "- water helps\n- it is free\n", "water helps, it is free"),
        ("end_phrase", "Is there anything else?", "A rainbow is light split by rain. Is there anything else?",
         "A rainbow is light split by rain."),
        ("start_word", "Yes", "Yes, water is wet.", "Well, yes."),
        ("include_keyword", "banana", "I ate a Banana and toast.", "I ate bananas."),
        ("no_commas", "", "Paris is big and old.", "Paris is big, old."),
        ("max_words", "5", "The sea is blue.", "The sea is very big and blue."),
        ("quoted", "", '"Honey"', 'Bees make "honey"'),
    ],
)
def test_format_checker_scores_compliant_and_not(iid, arg, good, bad):
    assert check_format(iid, arg, good) is True
    assert check_format(iid, arg, bad) is False
    doc = {"instruction_id": iid, "arg": arg}
    assert process_results(doc, [good]) == {"acc": 1.0}
    assert process_results(doc, [bad]) == {"acc": 0.0}


def test_format_items_use_known_checks_and_empty_answers_fail():
    for it in domain_data.format_items():
        assert it["instruction_id"] in CHECKS
        assert check_format(it["instruction_id"], it["arg"], "") is False
    with pytest.raises(KeyError, match="unknown format instruction"):
        check_format("nope", "", "x")


# --------------------------------------------------------------------------- task wiring


def test_overlays_point_at_package_yaml_and_generated_data(tmp_path):
    from lm_eval.tasks._yaml_loader import load_yaml

    overlay_dir = prepare_tasks(tmp_path)
    for task, key in BUILTIN_TASKS.items():
        cfg = load_yaml(overlay_dir / f"{task}.yaml", resolve_func=False)
        assert cfg["task"] == task  # comes from the included package YAML
        data = Path(cfg["dataset_kwargs"]["data_files"]["test"])
        assert data.is_absolute() and data.exists() and data.name == domain_data.TASK_FILES[key]
        base = load_yaml(TASKS_DIR / f"{task}.yaml", resolve_func=True)
        assert base["dataset_path"] == "json"
    gen = load_yaml(overlay_dir / "harness_format_gen.yaml", resolve_func=True)
    assert gen["process_results"].__name__ == "process_results"
    assert gen["generation_kwargs"]["max_gen_toks"] <= 64


def test_names_and_metric_registration():
    assert resolve_task("arith_mc") == "harness_arith_mc"
    assert resolve_task("hellaswag") == "hellaswag"
    assert eval_name("harness_facts_mc") == "domain_facts_mc"
    assert eval_name("hellaswag") == "domain_hellaswag"
    for task in BUILTIN_TASKS:
        spec = METRICS.get(f"{eval_name(task)}/acc")
        assert spec.higher_is_better is True and spec.unit == "fraction"


def test_summary_flattening_of_filters_and_stderr():
    got = _summary({
        "gsm8k": {"alias": "gsm8k", "exact_match,strict-match": 0.5,
                  "exact_match_stderr,strict-match": 0.1, "acc_stderr,none": "N/A"},
        "harness_arith_mc": {"acc,none": 0.25, "acc_stderr,none": 0.05},
    })
    assert got == {
        "domain_gsm8k/exact_match_strict-match": 0.5,
        "domain_gsm8k/exact_match_strict-match_stderr": 0.1,
        "domain_arith_mc/acc": 0.25,
        "domain_arith_mc/acc_stderr": 0.05,
    }


# --------------------------------------------------------------------------- lm-eval runs


@pytest.fixture(scope="module")
def tiny():
    import torch

    from harness.models import load_model

    # One intra-op thread: on the shared 2-core box a second OpenMP thread spin-waits against
    # other processes, and 48-token generation goes from ~0.4 s to ~17 s.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield load_model("embedded:tiny", MODEL_CACHE)
    finally:
        torch.set_num_threads(threads)


def _no_network(*args, **kwargs):
    raise AssertionError(f"network access attempted: {args!r}")


@pytest.fixture(scope="module")
def two_runs(tiny, tmp_path_factory):
    import huggingface_hub.constants as hub_constants

    cache = tmp_path_factory.mktemp("domain_cache")
    hub_offline_before = hub_constants.HF_HUB_OFFLINE
    runs = []
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(socket.socket, "connect", _no_network)
        mp.setattr(socket, "create_connection", _no_network)
        for _ in range(2):
            random.seed(1234)
            state = random.getstate()
            runs.append(run_domain_evals(tiny.model, tiny.tokenizer, ALL_TASKS, cache_dir=cache, limit=LIMIT))
            assert random.getstate() == state  # caller's RNG state is given back
    assert hub_constants.HF_HUB_OFFLINE == hub_offline_before  # offline guard restored
    return runs


def test_run_returns_all_keys_in_range_and_per_item(two_runs):
    res = two_runs[0]
    for task in ALL_TASKS:
        name = eval_name(task)
        for key in (f"{name}/acc", f"{name}/acc_stderr"):
            assert key in res.summary, key
            assert 0.0 <= res.summary[key] <= 1.0
        items = res.per_item[name]
        assert len(items) == LIMIT
        assert set(items) <= {0.0, 1.0}
        assert res.doc_ids[name] == list(range(LIMIT))
        assert res.summary[f"{name}/acc"] == pytest.approx(sum(items) / len(items))


def test_run_is_deterministic(two_runs):
    first, second = two_runs
    assert first.per_item == second.per_item
    assert first.summary == second.summary


# --------------------------------------------------------------------------- McNemar


def test_mcnemar_hand_computed():
    # discordant: policy-only at 0,1,2 (b=3), reference-only at 5 (c=1); n=4
    # two-sided exact p = P(X<=1) + P(X>=3), X~Bin(4, .5) = (1+4+4+1)/16 = 0.625
    policy = [1, 1, 1, 1, 0, 0, 1, 0]
    reference = [0, 0, 0, 1, 0, 1, 1, 0]
    out = mcnemar_paired(policy, reference)
    assert out["delta"] == pytest.approx(5 / 8 - 3 / 8)
    assert out["p_value"] == pytest.approx(0.625)
    assert out["n_discordant"] == 4
    assert (out["policy_only"], out["reference_only"]) == (3, 1)

    # 6 discordant, all for the policy: p = 2 * 0.5**6
    out = mcnemar_paired([1.0] * 6 + [0.0] * 4, [0.0] * 10)
    assert out["p_value"] == pytest.approx(2 / 64)
    assert out["delta"] == pytest.approx(0.6)

    same = mcnemar_paired([1, 0, 1], [1, 0, 1])
    assert same == {**same, "p_value": 1.0, "n_discordant": 0, "delta": 0.0}


def test_mcnemar_rejects_bad_input():
    with pytest.raises(ValueError, match="length"):
        mcnemar_paired([1, 0], [1])
    with pytest.raises(ValueError, match="0/1"):
        mcnemar_paired([0.5], [1])
    with pytest.raises(ValueError, match="no items"):
        mcnemar_paired([], [])


def test_include_paths_task_runs_offline(tiny, tmp_path, monkeypatch):
    """A caller's own overlay (a stock definition pointed at local data) resolves without lm-eval's index."""
    import yaml

    data = domain_data.write_task_data(tmp_path / "data")["facts_mc"]
    extra = tmp_path / "extra"
    extra.mkdir()
    (extra / "my_facts.yaml").write_text(yaml.safe_dump({
        "include": str(TASKS_DIR / "harness_facts_mc.yaml"),
        "task": "my_facts",
        "dataset_kwargs": {"data_files": {"test": str(data)}},
    }))
    monkeypatch.setattr(socket.socket, "connect", _no_network)
    res = run_domain_evals(tiny.model, tiny.tokenizer, ["my_facts"], cache_dir=tmp_path / "c",
                           limit=3, include_paths=[extra])
    assert set(res.summary) == {"domain_my_facts/acc", "domain_my_facts/acc_stderr"}
    assert len(res.per_item["domain_my_facts"]) == 3


def test_a_task_outside_the_harness_declares_its_metrics_with_their_direction(tmp_path):
    """A rule may name a metric of any lm-eval task (issue 17: such a rule once blocked forever, its metric
    never declared): the task's YAML is read, never its data; a stated direction is kept, an unstated one is
    lm-eval's own (perplexity: lower is better), and each filter gets its own key."""
    from evals.domain import declare_task_metrics

    path = tmp_path / "my_task.yaml"
    path.write_text("task: my_reading_task\n"
                    "metric_list:\n"
                    "  - {metric: exact_match, higher_is_better: true}\n"
                    "  - {metric: word_perplexity}\n"
                    "filter_list:\n"
                    "  - {name: strict-match, filter: []}\n"
                    "  - {name: flexible-extract, filter: []}\n")
    declared = declare_task_metrics("my_reading_task", {"my_reading_task": {"yaml_path": str(path)}})
    assert sorted(declared) == sorted(f"domain_my_reading_task/{m}_{f}" for m in ("exact_match", "word_perplexity")
                                      for f in ("strict-match", "flexible-extract"))
    assert METRICS.get("domain_my_reading_task/exact_match_strict-match").higher_is_better is True
    assert METRICS.get("domain_my_reading_task/word_perplexity_flexible-extract").higher_is_better is False
    assert declare_task_metrics("no_such_task", {}) == []
