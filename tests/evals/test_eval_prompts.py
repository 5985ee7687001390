"""Eval sets a user chooses (`eval.prompts`), their overlap with training, and AlpacaEval against a named
baseline: annotations the harness writes give, through `harness lc-winrate`, what alpaca-eval itself computes
(expected_offline.csv). The AlpacaEval files (CC BY-NC 4.0, testing only) are read in place, never copied."""
from __future__ import annotations

import gzip
import json
import math
from pathlib import Path

import pandas as pd
import pytest

from evals.eval_prompts import (
    ALPACA_EVAL_N,
    EvalPromptError,
    PromptOverlapError,
    annotation_rows,
    check_prompt_overlap,
    load_eval_prompts,
    parse_prompt_spec,
    prepare_eval_prompts,
    prompt_overlap,
    write_annotations,
)
from evals.judges import JudgeItem, position_swap
from harness.config import validate_config
from harness.data.verifiable import make_prompts
from harness.errors import ConfigError, HarnessInputError
from tests.conftest import SHARED_VALIDATION

ALPACA = SHARED_VALIDATION / "alpaca_eval"
EVAL_SET = ALPACA / "eval_set.jsonl.gz"
needs_alpaca = pytest.mark.skipif(not EVAL_SET.is_file(), reason="the AlpacaEval files are not in ../shared/validation")


def _jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def _config(tmp_path, **eval_fields):
    data = eval_fields.pop("data", {})
    return validate_config({"model": {"name": "embedded:tiny"}, "variant": "dpo", "output_dir": str(tmp_path),
                            "data": data, "eval": eval_fields})


# ---------------------------------------------------------------- builtin


def test_builtin_is_the_embedded_default_with_its_verifiable_prompts():
    got = load_eval_prompts("builtin", n=24, seed=3)
    expected = make_prompts(24, 3, split="eval")
    assert list(got.items) == expected  # the same VerifiablePrompt objects: the rule judge needs them
    assert got.prompts == [p.text for p in expected] and got.has_instructions
    assert got.baseline_outputs is None and len(got) == 24
    assert got.content_hash == load_eval_prompts("builtin", n=24, seed=3).content_hash
    assert got.content_hash != load_eval_prompts("builtin", n=24, seed=4).content_hash


# ---------------------------------------------------------------- files


def test_a_jsonl_file_is_evaluated_whole_deduplicated_by_normalised_text(tmp_path):
    rows = [{"prompt": f"Question number {i}?"} for i in range(30)]
    rows.insert(5, {"prompt": "  question NUMBER 3 "})  # the same prompt as row 4, spelt differently
    f = _jsonl(tmp_path / "p.jsonl", rows)
    got = load_eval_prompts(str(f), n=5, seed=0)  # n caps builtin and heldout only: a file is used whole
    assert got.prompts == [f"Question number {i}?" for i in range(30)]
    assert got.duplicates_dropped == 1 and got.n_available == 30
    assert got.rows[:6] == (1, 2, 3, 4, 5, 7)  # 1-based source rows, the duplicate (row 6) skipped
    assert not got.has_instructions


def test_json_parquet_and_csv_files_with_an_instruction_column(tmp_path):
    texts = ["Name a prime.", "Say hi, briefly", 'Quote "this", please']
    (tmp_path / "p.json").write_text(json.dumps([{"instruction": t, "other": 1} for t in texts]))
    pd.DataFrame({"instruction": texts}).to_parquet(tmp_path / "p.parquet")
    pd.DataFrame({"id": [1, 2, 3], "prompt": texts}).to_csv(tmp_path / "p.csv", index=False)
    for name in ("p.json", "p.parquet", "p.csv"):
        assert load_eval_prompts(str(tmp_path / name), n=None, seed=0).prompts == texts, name


def test_a_limit_takes_a_seeded_sample_in_source_order(tmp_path):
    f = _jsonl(tmp_path / "p.jsonl", [{"prompt": f"p{i}"} for i in range(100)])
    a = load_eval_prompts({"name": "file", "path": str(f), "limit": 10}, n=None, seed=1)
    assert len(a) == 10 and list(a.rows) == sorted(a.rows) and a.n_available == 100
    assert a.prompts == load_eval_prompts({"name": "file", "path": str(f), "limit": 10}, n=None, seed=1).prompts
    assert a.prompts != load_eval_prompts({"name": "file", "path": str(f), "limit": 10}, n=None, seed=2).prompts
    assert "sample of 10 of 100" in a.source


def test_rows_may_carry_instructions_for_the_rule_judge(tmp_path):
    made = make_prompts(6, 0, split="eval")
    f = _jsonl(tmp_path / "p.jsonl", [{"prompt": f"My own wording {i}", "instructions": p.to_dict()["instructions"]}
                                      for i, p in enumerate(made)])
    got = load_eval_prompts(str(f), n=None, seed=0)
    assert got.has_instructions and got.prompts[0] == "My own wording 0"
    assert [p.instructions for p in got.items] == [p.instructions for p in made]
    compliant = "- one\n- two"  # the rule judge scores by the instructions, whatever the prompt's wording
    assert got.items[0].score(compliant) == made[0].score(compliant)


@pytest.mark.parametrize("rows, needle", [
    ([{"prompt": "a"}, {"prompt": "b"}, {"question": "c"}], "row 3: missing field 'prompt' or 'instruction'"),
    ([{"prompt": "a"}, {"prompt": 7}], "row 2: field 'prompt': expected a string"),
    ([{"prompt": "a"}, {"prompt": "   "}], "row 2: field 'prompt': empty"),
    (['{"prompt": "a"}', "{broken"], "row 2: not valid JSON"),
    ([{"prompt": "a", "instructions": [["max_words", "ten"]]}], "row 1: field 'instructions[0]': max_words takes a positive"),
    ([{"prompt": "a", "instructions": [["shout", None]]}], "row 1: field 'instructions': expected [[kind, value]"),
])
def test_bad_files_name_the_file_row_and_field(tmp_path, rows, needle):
    f = _jsonl(tmp_path / "bad.jsonl", rows)
    with pytest.raises(HarnessInputError) as info:
        load_eval_prompts(str(f), n=None, seed=0)
    assert str(f) in str(info.value) and needle in str(info.value)
    assert isinstance(info.value, (EvalPromptError,)) or "not valid JSON" in needle


def test_hub_datasets_load_through_datasets_and_fail_clearly_offline(tmp_path, monkeypatch):
    # a local dataset folder is what load_dataset reads without the hub: the same code path as hf:NAME
    folder = tmp_path / "ds"
    folder.mkdir()
    _jsonl(folder / "test.jsonl", [{"prompt": "From a dataset?"}, {"prompt": "Second one"}])
    assert load_eval_prompts(f"hf:{folder}", n=None, seed=0).prompts == ["From a dataset?", "Second one"]
    assert parse_prompt_spec("hf:org/name:validation").split == "validation"
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    with pytest.raises(EvalPromptError, match="hf:no-such-org/no-such-dataset.*offline"):
        load_eval_prompts("hf:no-such-org/no-such-dataset", n=None, seed=0)


# ---------------------------------------------------------------- heldout


def test_heldout_prompts_are_deduplicated_and_capped():
    rows = [{"prompt": f"Held out {i % 40}", "chosen": "a", "rejected": "b"} for i in range(120)]  # 3 pairs each
    got = load_eval_prompts("heldout", n=24, seed=0, heldout=rows)
    assert len(got) == 24 and got.n_available == 40 and got.duplicates_dropped == 80
    assert len({p for p in got.prompts}) == 24 and list(got.rows) == sorted(got.rows)
    with pytest.raises(ConfigError, match="no held-out prompts"):
        load_eval_prompts("heldout", n=24, seed=0, heldout=[])


# ---------------------------------------------------------------- overlap with training


def test_prompt_overlap_by_normalised_text():
    train = ["Explain the sky.", "What is 2+2?", {"prompt": [{"role": "user", "content": "Name  a  COLOUR"}]}]
    evals = ["explain the SKY", "What is 2 + 2?", "name a colour!", "Something new"]
    count, examples = prompt_overlap(evals, train)
    # "2+2" and "2 + 2" differ once punctuation is gone ("2 2" vs "2  2" collapses to "2 2"): both match
    assert count == 3 and examples == ["explain the SKY", "What is 2 + 2?"]
    assert prompt_overlap(["a b"], ["ab"]) == (0, [])


def test_any_overlap_is_a_config_error_unless_allowed(tmp_path):
    f = _jsonl(tmp_path / "p.jsonl", [{"prompt": p} for p in ["Alpha?", "Beta?", "Gamma?", "Delta?"]])
    prompt_set = load_eval_prompts(str(f), n=None, seed=0)
    train = [{"prompt": "alpha", "chosen": "x", "rejected": "y"}, {"prompt": "GAMMA!!", "chosen": "x", "rejected": "y"},
             {"prompt": "delta", "chosen": "x", "rejected": "y"}]
    with pytest.raises(PromptOverlapError) as info:
        check_prompt_overlap(prompt_set, train)
    message = str(info.value)
    assert "3 of 4 eval prompts" in message and "'Alpha?'; 'Gamma?'" in message and "allow_prompt_overlap" in message
    assert isinstance(info.value, ConfigError)
    assert check_prompt_overlap(prompt_set, train, allow=True) == 3


class _Data:  # what PreferenceData offers the eval-set code: train and heldout rows
    def __init__(self, train, heldout):
        self.train, self.heldout = train, heldout


def _conversational(prompt):
    return {"prompt": [{"role": "user", "content": prompt}], "chosen": [{"role": "assistant", "content": "c"}],
            "rejected": [{"role": "assistant", "content": "r"}]}


def test_prepare_for_the_default_config_is_the_builtin_set_and_disjoint_from_builtin_training(tmp_path):
    config = _config(tmp_path)
    assert config.eval.prompts == "builtin" and config.eval.allow_prompt_overlap is False
    train = [_conversational(p.text) for p in make_prompts(48, 0, split="train")]
    got = prepare_eval_prompts(config, _Data(train, []))
    assert list(got.items) == make_prompts(config.eval.n_prompts, config.seed, split="eval")
    assert got.overlap_count == 0 and got.snapshot is not None and got.snapshot.is_file()
    assert [json.loads(line)["prompt"] for line in got.snapshot.read_text().splitlines()] == got.prompts


def test_prepare_refuses_overlap_and_a_rule_judge_without_instructions(tmp_path):
    f = _jsonl(tmp_path / "p.jsonl", [{"prompt": f"Prompt {i}"} for i in range(8)])
    data = _Data([_conversational("prompt 3."), _conversational("unrelated")], [])
    with pytest.raises(ConfigError, match="rule judge needs verifiable instructions.*8 of 8"):
        prepare_eval_prompts(_config(tmp_path, prompts=str(f)), data)
    llm = {"name": "llm", "base_url": "http://127.0.0.1:1/v1", "model": "m"}
    with pytest.raises(PromptOverlapError, match="1 of 8 eval prompts.*'Prompt 3'"):
        prepare_eval_prompts(_config(tmp_path, prompts=str(f), judge=llm), data)
    got = prepare_eval_prompts(_config(tmp_path, prompts=str(f), judge=llm, allow_prompt_overlap=True), data)
    assert got.overlap_count == 1 and got.prompts == [f"Prompt {i}" for i in range(8)]


def test_heldout_of_builtin_data_keeps_its_instructions_for_the_rule_judge(tmp_path):
    config = _config(tmp_path, prompts="heldout", n_prompts=5)
    made = make_prompts(config.data.n_prompts, config.seed, split="train")
    rows = [{"prompt": p.text, "chosen": "a", "rejected": "b"} for p in made]
    got = prepare_eval_prompts(config, _Data([_conversational(r["prompt"]) for r in rows[6:]], rows[:6]))
    assert got.has_instructions and len(got) == 5
    assert all(p.instructions == next(m for m in made if m.text == p.text).instructions for p in got.items)


# ---------------------------------------------------------------- the config


def test_the_config_checks_eval_prompts_at_load(tmp_path):
    def problems(**eval_fields):
        with pytest.raises(ConfigError) as info:
            _config(tmp_path, **eval_fields)
        return str(info.value)

    missing = tmp_path / "nope.jsonl"
    assert f"eval.prompts: {missing}: no such file" in problems(prompts=str(missing))
    assert "alpaca_eval needs the baseline's outputs" in problems(prompts="alpaca_eval")
    assert "eval.prompts: unknown field(s) for alpaca_eval: baseline" in problems(
        prompts={"name": "alpaca_eval", "baseline": "x"})
    assert "eval.prompts.baseline_outputs: field required" in problems(prompts={"name": "alpaca_eval"})
    assert "eval.prompts.limit: a positive number" in problems(prompts={"name": "file", "path": "x", "limit": 0})
    assert "rule judge checks verifiable instructions" in problems(prompts="hf:org/data")
    (tmp_path / "p.txt").write_text("hello\n")
    assert "unknown file type" in problems(prompts=str(tmp_path / "p.txt"))
    assert "eval.prompts.name: expected one of" in problems(prompts={"name": "mystery"})
    f = _jsonl(tmp_path / "ok.jsonl", [{"prompt": "fine"}])
    assert _config(tmp_path, prompts=str(f)).eval.prompts == str(f)


def test_set_on_the_command_line_reaches_the_config(tmp_path):
    from harness.config import load_config

    f = _jsonl(tmp_path / "ok.jsonl", [{"prompt": "fine"}])
    exp = Path(__file__).resolve().parents[2] / "experiments" / "tiny.yaml"
    config = load_config(exp, [f"eval.prompts={f}", f"output_dir={tmp_path}"])
    assert config.eval.prompts == str(f)
    spec = "{name: alpaca_eval, baseline_outputs: " + str(f) + "}"
    config = load_config(exp, [f"eval.prompts={spec}", "eval.judge={name: llm, base_url: http://x/v1, model: m}",
                               f"output_dir={tmp_path}"])
    assert config.eval.prompts == {"name": "alpaca_eval", "baseline_outputs": str(f)}


# ---------------------------------------------------------------- AlpacaEval against a named baseline


@pytest.fixture(scope="module")
def alpaca_set():
    if not EVAL_SET.is_file():
        pytest.skip("the AlpacaEval files are not in ../shared/validation")
    return load_eval_prompts({"name": "alpaca_eval", "baseline_outputs": str(EVAL_SET)}, n=24, seed=0)


@needs_alpaca
def test_alpaca_eval_reads_the_805_instructions_with_the_baselines_outputs(alpaca_set):
    with gzip.open(EVAL_SET, "rt", encoding="utf-8") as fh:
        rows = [json.loads(line) for line in fh]
    assert len(alpaca_set) == ALPACA_EVAL_N and alpaca_set.is_alpaca_eval_805  # n does not cut a user's set
    assert alpaca_set.prompts == [r["instruction"] for r in rows]
    assert list(alpaca_set.baseline_outputs) == [r["output"] for r in rows]
    assert alpaca_set.baseline_name == "gpt4_1106_preview"
    assert [a.text for a in alpaca_set.baseline_answers()] == [r["output"] for r in rows]
    assert not any(a.hit_limit for a in alpaca_set.baseline_answers())
    sample = load_eval_prompts({"name": "alpaca_eval", "baseline_outputs": str(EVAL_SET), "limit": 50}, n=None, seed=0)
    assert len(sample) == 50 and not sample.is_alpaca_eval_805
    by_prompt = dict(zip(alpaca_set.prompts, alpaca_set.baseline_outputs))
    assert all(by_prompt[p] == o for p, o in zip(sample.prompts, sample.baseline_outputs))  # still paired


def test_alpaca_eval_baseline_files_are_checked(tmp_path):
    f = _jsonl(tmp_path / "outputs.jsonl", [{"instruction": "a", "output": "x", "generator": "m1"},
                                            {"instruction": "b", "generator": "m1"}])
    with pytest.raises(EvalPromptError, match=r"outputs.jsonl: row 2: missing field 'output'"):
        load_eval_prompts({"name": "alpaca_eval", "baseline_outputs": str(f)}, n=None, seed=0)
    f = _jsonl(tmp_path / "mixed.jsonl", [{"instruction": "a", "output": "x", "generator": "m1"},
                                          {"instruction": "b", "output": "y", "generator": "m2"}])
    with pytest.raises(EvalPromptError, match="several models' outputs"):
        load_eval_prompts({"name": "alpaca_eval", "baseline_outputs": str(f)}, n=None, seed=0)
    got = load_eval_prompts({"name": "alpaca_eval", "baseline_outputs": str(f), "baseline_name": "mine"}, n=None, seed=0)
    assert got.baseline_name == "mine" and not got.is_alpaca_eval_805


class ReplayJudge:
    """Gives back the preferences alpaca-eval's GPT-4 annotator gave (position-swapped: the same pair shown
    the other way round gets 3 - p), standing in for a judge run against the named baseline."""

    name, fingerprint = "replay", "replay:test"

    def __init__(self, annotations: pd.DataFrame):
        self.by_pair = {(r.instruction, r.output_1, r.output_2): float(r.preference) for r in annotations.itertuples()}

    def judge(self, items):
        out = []
        for i in items:
            key = (i.prompt, i.output_1, i.output_2)
            out.append(self.by_pair[key] if key in self.by_pair else 3.0 - self.by_pair[(i.prompt, i.output_2, i.output_1)])
        return out


@needs_alpaca
@pytest.mark.parametrize("model", ["claude-2", "NullModel"])
def test_harness_lc_winrate_on_annotations_against_the_baseline_equals_alpaca_eval(model, alpaca_set, tmp_path,
                                                                                  capsys):
    from harness.cli import main

    expected = pd.read_csv(ALPACA / "expected_offline.csv").set_index("name").loc[model]
    official = pd.read_json(ALPACA / "annotations" / f"{model}.jsonl.gz", lines=True)
    policy = official["output_2"].tolist()  # the model's answers, in the eval set's order
    # judged as a cell judges: the policy against the named baseline's answers, both orders
    baseline = [a.text for a in alpaca_set.baseline_answers()]
    items = [JudgeItem(p, b, o) for p, b, o in zip(alpaca_set.prompts, baseline, policy)]
    verdicts = position_swap(ReplayJudge(official), items).verdicts
    path = write_annotations(tmp_path / "annotations.jsonl.gz",
                             annotation_rows(alpaca_set, policy, verdicts, policy_name=model))

    reconstructed = ALPACA / "reconstructed"
    code = main(["lc-winrate", str(path), "--instruction-difficulty",
                 str(reconstructed / "instruction_difficulty_reconstructed.csv"),
                 "--gamed-rows", str(reconstructed / "df_gamed_reconstructed.csv.gz"), "--n-bootstrap", "0", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and out["recipe"] == "length_controlled_v1" and out["n"] == ALPACA_EVAL_N
    assert abs(out["win_rate_pct"] - expected["win_rate"]) < 1e-6
    assert abs(out["lc_win_rate_pct"] - expected["lc_official_fn_reconstructed"]) < 0.01
    assert (out["n_wins"], out["n_draws"]) == (expected["n_wins"], expected["n_draws"])


@needs_alpaca
def test_the_cells_own_win_rate_equals_lc_winrate_on_its_annotations(alpaca_set, tmp_path):
    """What a cell records (evals.pairwise.winrate_eval) and what `harness lc-winrate` says about the annotations
    it writes are the same numbers (the identified recipe, any prompt set)."""
    from evals.lc_winrate import lc_winrate, load_annotations
    from evals.pairwise import winrate_eval

    sample = load_eval_prompts({"name": "alpaca_eval", "baseline_outputs": str(EVAL_SET), "limit": 200}, n=None, seed=0)
    official = pd.read_json(ALPACA / "annotations" / "gpt-3.5-turbo-1106_verbose.jsonl.gz", lines=True)
    policy_by_prompt = dict(zip(official["instruction"], official["output_2"]))
    policy = [policy_by_prompt[p] for p in sample.prompts]
    items = [JudgeItem(p, b, o) for p, b, o in zip(sample.prompts, sample.baseline_outputs, policy)]
    summary, verdicts = winrate_eval(items, ReplayJudge(official), n_bootstrap=0, seed=0)
    path = write_annotations(tmp_path / "a.jsonl", annotation_rows(sample, policy, verdicts, policy_name="m"))
    result = lc_winrate(load_annotations(path), n_bootstrap=0)
    assert result.win_rate_pct == pytest.approx(summary["winrate/win_rate_pct"], abs=1e-9)
    assert result.lc_identified == bool(summary["winrate/lc_identified"])
    if result.lc_identified:
        assert result.lc_win_rate_pct == pytest.approx(summary["winrate/lc_win_rate_pct"], abs=1e-9)
    else:
        assert math.isnan(result.lc_win_rate_pct) and "winrate/lc_win_rate_pct" not in summary


def test_a_run_against_a_named_baseline_writes_the_annotations_lc_winrate_reads(tmp_path, model_cache,
                                                                                tiny_reward_model, capsys):
    """eval.prompts alpaca_eval through the CLI: the policy is judged against the named baseline's answers (not
    the reference's), the page and generations.jsonl show the answer each verdict compared, and the run writes
    the judged pairs as alpaca-eval annotations on which `harness lc-winrate` gives the run's own win rates."""
    from harness.cli import main
    from tests.conftest import REPO

    rows = [{"instruction": f"Explain topic {i} in a sentence or two.", "output": "Because " + "so " * (3 + 4 * i),
             "generator": "my_baseline"} for i in range(8)]
    baseline = _jsonl(tmp_path / "baseline_outputs.jsonl", rows)
    out = tmp_path / "runs"
    code = main(["run", str(REPO / "experiments" / "tiny.yaml"), "--set", f"output_dir={out}",
                 "--set", f"cache_dir={model_cache}", "--set", "training.max_steps=1", "--set", "eval.domain_tasks=[]",
                 "--set", f"eval.prompts={{name: alpaca_eval, baseline_outputs: {baseline}}}",
                 "--set", f"eval.judge={{name: reward_model, model: {tiny_reward_model}}}", "--json"])
    payload = json.loads(capsys.readouterr().out)
    m = payload["metrics"]
    assert code in (0, 1) and m["winrate/n"] == 8
    cell_dir = next((out / "cells").iterdir())
    annotations = [json.loads(line) for line in (cell_dir / "annotations.jsonl").read_text().splitlines()]
    samples = [json.loads(line) for line in (cell_dir / "generations.jsonl").read_text().splitlines()]
    assert [a["output_1"] for a in annotations] == [r["output"] for r in rows] == [s["baseline"] for s in samples]
    # the reference model's answers stay in generations.jsonl: the length eval measures against them
    assert all(s["reference"] != s["baseline"] and s["reference_tokens"] > 0 for s in samples)
    assert [a["output_2"] for a in annotations] == [s["policy"] for s in samples]
    assert [a["preference"] for a in annotations] == [s["verdict"] for s in samples]
    assert {a["generator_1"] for a in annotations} == {"my_baseline"} == {s["baseline_name"] for s in samples}
    assert "my_baseline answer" in (cell_dir / "report.html").read_text()
    assert main(["lc-winrate", str(cell_dir / "annotations.jsonl"), "--n-bootstrap", "0", "--json"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["win_rate_pct"] == pytest.approx(m["winrate/win_rate_pct"], abs=1e-9)
    if "winrate/lc_win_rate_pct" in m:
        assert again["lc_win_rate_pct"] == pytest.approx(m["winrate/lc_win_rate_pct"], abs=1e-6)
